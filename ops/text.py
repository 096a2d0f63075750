"""Text operators: WordPiece tokenization inside the graph, and sentence-embedding pooling.

* :class:`BertTokenize` is an ONNX-native stage (strings cannot be traced by torch): a batch of strings
  ``text`` [batch] in, ``input_ids`` / ``attention_mask`` / ``token_type_ids`` [batch, sequence] int64 out,
  computed by the onnxruntime-extensions ``BertTokenizer`` op (domain ``ai.onnx.contrib``). Its eager
  reference is Hugging Face's ``BertTokenizerFast``, which it matches token for token.
* :class:`MeanPooling` and :class:`L2Normalize` are torch modules turning token embeddings into
  unit-length sentence embeddings (the sentence-transformers recipe).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from onnxpipe.stages import OnnxStage

__all__ = ["BertTokenize", "L2Normalize", "MeanPooling"]

CONTRIB_DOMAIN = "ai.onnx.contrib"
#: tokens the extensions op looks up at load time (it refuses a vocabulary without them)
SPECIAL_TOKENS = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")
#: Squeeze/Unsqueeze take their axes as an input from opset 13 on; the graph below is written that way
MIN_OPSET = 13


def _read_vocab(vocab_file: str | os.PathLike[str]) -> list[str]:
    """The vocabulary's tokens in id order, rejecting files the op and Hugging Face would read differently."""
    if not isinstance(vocab_file, (str, os.PathLike)):
        raise ValueError(f"vocab_file: expected a path to a WordPiece vocab.txt, got {type(vocab_file).__name__}")
    path = Path(vocab_file)
    if not path.is_file():
        raise ValueError(f"vocab_file: {str(path)!r} does not exist or is not a file; expected a WordPiece vocab.txt")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"vocab_file: cannot read {str(path)!r} as UTF-8 text ({e})") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    for i, token in enumerate(lines):
        # The op splits the vocabulary on line breaks and drops empty lines, so an empty line, a CR or
        # whitespace inside a token would shift every later id relative to Hugging Face: refuse, don't guess.
        if token == "" or any(c.isspace() for c in token):
            raise ValueError(
                f"vocab_file: line {i + 1} of {str(path)!r} is {token!r}; expected one token per line "
                "without whitespace or empty lines"
            )
    missing = [t for t in SPECIAL_TOKENS if t not in set(lines)]
    if missing:
        raise ValueError(f"vocab_file: {str(path)!r} lacks the special tokens {missing}; expected all of {list(SPECIAL_TOKENS)}")
    return lines


class BertTokenize(OnnxStage):
    """BERT WordPiece tokenization of a batch of strings, in the graph.

    Input ``text``: string [batch]. Outputs, in this order, int64 [batch, sequence]: ``input_ids``
    (``[CLS] tokens [SEP]`` then ``[PAD]``), ``attention_mask`` (1 on tokens, 0 on padding) and
    ``token_type_ids`` (all 0). ``sequence`` is the longest encoding in the batch, each encoding truncated
    to ``max_length`` including the two special tokens. Equal to
    ``BertTokenizerFast(vocab_file, do_lower_case=lower_case)(text, padding=True, truncation=True,
    max_length=max_length)``; ``lower_case`` also strips accents, as Hugging Face does by default.

    The ``BertTokenizer`` op reads two strings as a sentence pair, so the graph runs it once per string in
    a ``Loop``, collects the encodings in a sequence and pads them to the longest with a gather.
    """

    input_names = ("text",)
    output_names = ("input_ids", "attention_mask", "token_type_ids")
    domains = (CONTRIB_DOMAIN,)

    def __init__(self, vocab_file: str | os.PathLike[str], lower_case: bool = True, max_length: int = 512) -> None:
        if not isinstance(lower_case, (bool, np.bool_)):
            raise ValueError(f"lower_case: expected a bool, got {lower_case!r}")
        if isinstance(max_length, (bool, np.bool_)) or not isinstance(max_length, (int, np.integer)):
            raise ValueError(f"max_length: expected an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
        if max_length < 2:
            raise ValueError(f"max_length: expected an int >= 2 (room for [CLS] and [SEP]), got {max_length}")
        self.vocab_file = str(vocab_file)
        self._vocab = _read_vocab(vocab_file)
        self.lower_case = bool(lower_case)
        self.max_length = int(max_length)
        self.pad_id = self._vocab.index("[PAD]")
        self._hf: Any = None

    def describe(self) -> str:
        return f"BertTokenize(max_length={self.max_length}, lower_case={self.lower_case})"

    # -- eager reference ------------------------------------------------------------------------------------
    def _tokenizer(self) -> Any:
        if self._hf is None:
            try:
                from transformers import BertTokenizerFast
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "BertTokenize's reference needs the package 'transformers' (pip install 'onnxpipe[text]')"
                ) from e
            self._hf = BertTokenizerFast(self.vocab_file, do_lower_case=self.lower_case)
        return self._hf

    def reference(self, *inputs: np.ndarray) -> dict[str, np.ndarray]:
        (text,) = inputs
        strings = _as_strings(text)
        if not strings:
            empty = np.zeros((0, 0), dtype=np.int64)
            return {name: empty.copy() for name in self.output_names}
        enc = self._tokenizer()(
            strings, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        return {name: np.asarray(enc[name], dtype=np.int64) for name in self.output_names}

    # -- ONNX lowering --------------------------------------------------------------------------------------
    def build(self, opset: int) -> onnx.ModelProto:
        if opset < MIN_OPSET:
            raise ValueError(f"opset: BertTokenize needs opset >= {MIN_OPSET}, got {opset}")
        i64 = TensorProto.INT64

        def const(name: str, values: Sequence[int]) -> onnx.NodeProto:
            return helper.make_node(
                "Constant", [], [name], value=helper.make_tensor(name, i64, [len(values)], list(values))
            )

        def scalar(name: str, value: int) -> onnx.NodeProto:
            return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, i64, [], [value]))

        # Loop body: tokenize text[i] alone, append its ids to the sequence, emit its length.
        body = helper.make_graph(
            [
                helper.make_node("Gather", ["tok_clean", "tok_i"], ["tok_one"], axis=0),
                const("tok_axis0", [0]),
                helper.make_node("Unsqueeze", ["tok_one", "tok_axis0"], ["tok_one_1d"]),
                helper.make_node(
                    "BertTokenizer",
                    ["tok_one_1d"],
                    ["tok_ids", "tok_types_one", "tok_mask_one"],
                    domain=CONTRIB_DOMAIN,
                    vocab_file="\n".join(self._vocab),
                    do_lower_case=int(self.lower_case),
                    # Hugging Face strips accents whenever it lower-cases (strip_accents=None)
                    strip_accents=int(self.lower_case),
                    tokenize_chinese_chars=1,
                    max_length=self.max_length,
                ),
                helper.make_node("SequenceInsert", ["tok_seq_in", "tok_ids"], ["tok_seq_out"]),
                helper.make_node("Shape", ["tok_ids"], ["tok_len"]),
                helper.make_node("Identity", ["tok_cond_in"], ["tok_cond_out"]),
            ],
            "tokenize_one",
            [
                helper.make_tensor_value_info("tok_i", i64, []),
                helper.make_tensor_value_info("tok_cond_in", TensorProto.BOOL, []),
                helper.make_tensor_sequence_value_info("tok_seq_in", i64, None),
            ],
            [
                helper.make_tensor_value_info("tok_cond_out", TensorProto.BOOL, []),
                helper.make_tensor_sequence_value_info("tok_seq_out", i64, None),
                helper.make_tensor_value_info("tok_len", i64, [1]),
            ],
        )

        # Hugging Face's normalizer and pre-tokenizer use Unicode categories where the op has its own
        # narrower tables; these rewrites bring the op's input to what Hugging Face would see.
        rewrites = [
            # drop control and format characters (zero-width space, BOM, soft hyphen...) but keep \t \n \r
            (r"[\x{0}-\x{8}\x{b}\x{c}\x{e}-\x{1f}\x{7f}-\x{9f}\p{Cf}]", ""),
            # every Unicode punctuation mark and ASCII symbol is a token of its own
            (r"([\p{P}!-/:-@\[-`{-~])", r" \1 "),
        ]
        if self.lower_case:
            # accent stripping: combining marks go (the op maps precomposed letters itself)
            rewrites.append((r"\p{Mn}", ""))
        nodes = []
        initializers = []
        current = "text"
        for k, (pattern, rewrite) in enumerate(rewrites):
            initializers.append(helper.make_tensor(f"tok_pattern{k}", TensorProto.STRING, [1], [pattern.encode()]))
            initializers.append(helper.make_tensor(f"tok_rewrite{k}", TensorProto.STRING, [1], [rewrite.encode()]))
            out = f"tok_text{k}"
            nodes.append(
                helper.make_node(
                    "StringRegexReplace",
                    [current, f"tok_pattern{k}", f"tok_rewrite{k}"],
                    [out],
                    domain=CONTRIB_DOMAIN,
                    global_replace=1,
                )
            )
            current = out
        nodes += [
            helper.make_node("Identity", [current], ["tok_clean"]),
            helper.make_node("Shape", ["text"], ["tok_batch_1d"]),
            const("tok_axes0", [0]),
            const("tok_axes1", [1]),
            const("tok_zero_1d", [0]),
            const("tok_minus1_1d", [-1]),
            scalar("tok_zero", 0),
            scalar("tok_one_i64", 1),
            scalar("tok_pad", self.pad_id),
            helper.make_node("Squeeze", ["tok_batch_1d", "tok_axes0"], ["tok_batch"]),
            # seeded with an empty tensor so ConcatFromSequence has an input even for an empty batch
            const("tok_none", []),
            helper.make_node("SequenceConstruct", ["tok_none"], ["tok_seq0"]),
            helper.make_node("Loop", ["tok_batch", "", "tok_seq0"], ["tok_seq", "tok_lens_2d"], body=body),
            helper.make_node("Reshape", ["tok_lens_2d", "tok_minus1_1d"], ["tok_lens"]),  # [B]
            # longest encoding; the extra 0 keeps an empty batch well defined ([0, 0] outputs)
            helper.make_node("Concat", ["tok_lens", "tok_zero_1d"], ["tok_lens0"], axis=0),
            helper.make_node("ReduceMax", ["tok_lens0"], ["tok_maxlen"], keepdims=0),
            # all ids back to back, and where each row starts in it
            helper.make_node("ConcatFromSequence", ["tok_seq"], ["tok_flat"], axis=0),
            helper.make_node("CumSum", ["tok_lens", "tok_zero"], ["tok_starts"], exclusive=1),
            helper.make_node("Range", ["tok_zero", "tok_maxlen", "tok_one_i64"], ["tok_pos"]),  # [L]
            helper.make_node("Unsqueeze", ["tok_pos", "tok_axes0"], ["tok_pos_row"]),  # [1, L]
            helper.make_node("Unsqueeze", ["tok_lens", "tok_axes1"], ["tok_lens_col"]),  # [B, 1]
            helper.make_node("Unsqueeze", ["tok_starts", "tok_axes1"], ["tok_starts_col"]),  # [B, 1]
            helper.make_node("Less", ["tok_pos_row", "tok_lens_col"], ["tok_valid"]),  # [B, L]
            helper.make_node("Add", ["tok_starts_col", "tok_pos_row"], ["tok_index_raw"]),
            # padding positions point past their row; clamp them into the buffer (their value is replaced)
            helper.make_node("Shape", ["tok_flat"], ["tok_total_1d"]),
            helper.make_node("Sub", ["tok_total_1d", "tok_one_i64"], ["tok_last_1d"]),
            helper.make_node("Squeeze", ["tok_last_1d", "tok_axes0"], ["tok_last"]),
            helper.make_node("Max", ["tok_last", "tok_zero"], ["tok_last0"]),
            helper.make_node("Min", ["tok_index_raw", "tok_last0"], ["tok_index"]),
            helper.make_node("Gather", ["tok_flat", "tok_index"], ["tok_gathered"], axis=0),
            helper.make_node("Where", ["tok_valid", "tok_gathered", "tok_pad"], ["input_ids"]),
            helper.make_node("Cast", ["tok_valid"], ["attention_mask"], to=i64),
            # single sentences only: segment 0 everywhere, padding included (as Hugging Face)
            helper.make_node("Mul", ["attention_mask", "tok_zero"], ["token_type_ids"]),
        ]
        graph = helper.make_graph(
            nodes,
            "bert_tokenize",
            [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
            [helper.make_tensor_value_info(n, i64, ["batch", "sequence"]) for n in self.output_names],
            initializer=initializers,
        )
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(CONTRIB_DOMAIN, 1)],
            producer_name="onnxpipe",
        )


def _as_strings(text: Any) -> list[str]:
    arr = np.asarray(text)
    if arr.ndim != 1:
        raise ValueError(f"input 'text': expected a 1-D array of strings [batch], got shape {list(arr.shape)}")
    if arr.size and arr.dtype.kind not in "USO":
        raise ValueError(f"input 'text': expected strings, got dtype {arr.dtype}")
    out = []
    for i, s in enumerate(arr.tolist()):
        if isinstance(s, bytes):
            try:
                s = s.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"input 'text': element {i} is not valid UTF-8 ({e})") from e
        if not isinstance(s, str):
            raise ValueError(f"input 'text': element {i} is {type(s).__name__}, expected str")
        out.append(s)
    return out


class MeanPooling(torch.nn.Module):
    """Average of the token embeddings over the attention mask (padding excluded).

    ``token_embeddings`` float [batch, sequence, hidden], ``attention_mask`` int/bool [batch, sequence]
    -> float [batch, hidden]. A row with no tokens gives zeros (the denominator is clamped, as in
    sentence-transformers).
    """

    def forward(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
        summed = (token_embeddings * mask).sum(dim=1)
        count = mask.sum(dim=1).clamp(min=1e-9)
        return summed / count


class L2Normalize(torch.nn.Module):
    """Scale each row to unit Euclidean length: float [..., dim] -> same shape (``eps`` guards zero rows)."""

    def __init__(self, eps: float = 1e-12) -> None:
        super().__init__()
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"eps: expected a positive float, got {eps!r}")
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, p=2.0, dim=-1, eps=self.eps)

