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
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
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

# What Hugging Face's BertNormalizer + BertPreTokenizer do, prepared for the graph. The op's own character
# tables are narrower (no Unicode lowercase for Greek/Cyrillic, no Hangul decomposition, fewer punctuation
# marks...), so the graph normalizes first, the Hugging Face way, and the op only splits and looks up.
#: clean_text drops control (Cc but tab/newline/CR), format (Cf) and private-use (Co) characters and U+FFFD;
#: U+0003-U+0007 are kept here: they carry special tokens through (the text's own become U+0008 first)
CONTROL_CHARS = r"[\x{0}-\x{2}\x{8}\x{b}\x{c}\x{e}-\x{1f}\x{7f}-\x{9f}\p{Cf}\p{Co}\x{fffd}]"
#: clean_text turns every Unicode space (tab, newline and CR included) into " "
WHITESPACE = r"[\t\n\r\p{Z}]"
#: the CJK ideograph blocks that are split into single characters (BERT's tokenize_chinese_chars)
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
# Placeholders written by the character map (the control-character pass has removed any in the input):
_REMOVED = "\x01"  # a character normalization deletes (a combining mark when stripping accents)
_UNFINISHABLE = "\x02"  # a character outside the vocabulary's alphabet: its word can only be [UNK]
_SPECIAL = 3  # special token k written in the text is carried as the word chr(_SPECIAL + k) (a control)
#: candidates for the character that stands for an unfinishable word: a symbol, not in the vocabulary
_MARKERS = ("\U0001F600", "\u2603", "\u2318", "\U0001F9E9")


def _is_punct(c: str) -> bool:
    """BertPreTokenizer's punctuation: every ASCII symbol and Unicode category P*."""
    o = ord(c)
    return 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or unicodedata.category(c)[0] == "P"


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return any(a <= o <= b for a, b in CJK_RANGES)


@lru_cache(maxsize=2)
def _normalized_chars(lower_case: bool) -> tuple[tuple[str, str], ...]:
    """``(c, what BertNormalizer makes of c)`` for every assigned character the regex passes leave alone.

    With ``lower_case`` (which implies strip_accents): NFD(c) without its nonspacing marks, lower-cased,
    so a combining mark becomes "". Controls, format and private-use characters and spaces are handled by
    the regex passes; unassigned code points are left as they are.
    """
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if unicodedata.category(c) in ("Cn", "Cc", "Cf", "Co", "Zs", "Zl", "Zp"):
            continue
        if lower_case:
            folded = "".join(x for x in unicodedata.normalize("NFD", c) if unicodedata.category(x) != "Mn").lower()
        else:
            folded = c
        out.append((c, folded))
    return tuple(out)


def _re2_class(chars: set[str]) -> str:
    """The characters as the body of an RE2 class (``\\x{..}`` escapes, consecutive code points as ranges)."""
    points = sorted(ord(c) for c in chars)
    parts: list[str] = []
    i = 0
    while i < len(points):
        j = i
        while j + 1 < len(points) and points[j + 1] == points[j] + 1:
            j += 1
        a, b = points[i], points[j]
        parts.append(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}")
        i = j + 1
    return "".join(parts)


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
        raise ValueError(
            f"vocab_file: {str(path)!r} lacks the special tokens {missing}; expected all of {list(SPECIAL_TOKENS)}"
        )
    return lines


def _alphabet(vocab: list[str], where: str) -> tuple[frozenset[str], frozenset[str], str]:
    """Characters a word may start with / continue with, and the character that stands for [UNK].

    WordPiece can finish a word exactly when each character is a token (first) or a ``##`` token (later),
    provided no longer token contains a character outside those sets; refuse a vocabulary where that fails,
    since the graph could not then reproduce Hugging Face's choice of [UNK].
    """
    words = [t for t in vocab if not (t.startswith("[") and t.endswith("]") and len(t) > 2)]
    first = frozenset(t for t in words if len(t) == 1)
    cont = frozenset(t[2:] for t in words if len(t) == 3 and t.startswith("##"))
    for t in words:
        body = t[2:] if t.startswith("##") and len(t) > 2 else t
        head_ok = t.startswith("##") or body[0] in first
        if not head_ok or any(c not in cont for c in body[1:]):
            raise ValueError(
                f"vocab_file: token {t!r} in {where!r} uses a character that is not a token of its own "
                "('c' and '##c'); expected a WordPiece vocabulary with every character of every token"
            )
    marker = next((m for m in _MARKERS if m not in first and m not in cont), None)
    if marker is None:
        raise ValueError(f"vocab_file: {where!r} contains every marker candidate {list(_MARKERS)}")
    return first, cont, marker


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
        self.sep_id = self._vocab.index("[SEP]")
        self._first, self._cont, self._marker = _alphabet(self._vocab, str(vocab_file))
        self._hf: Any = None
        self._map: str | None = None

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
    def _char_map(self) -> str:
        if self._map is None:
            self._map = self._make_char_map()
        return self._map

    def _make_char_map(self) -> str:
        """StringMapping's table: each character -> its normalized form, pre-split and classified.

        Punctuation and CJK ideographs get spaces around them (they are words of their own), characters
        outside the vocabulary's alphabet become ``_UNFINISHABLE``, deleted ones ``_REMOVED`` (the op's map
        cannot map to an empty string). Characters that stay as they are have no entry.
        """
        def classify(ch: str) -> str:
            # a character allowed at one end of a word only stays, for the regex of build()
            kept = ch if ch in self._first or ch in self._cont else _UNFINISHABLE
            return f" {kept} " if _is_punct(ch) or _is_cjk(ch) else kept

        lines = []
        for c, folded in _normalized_chars(self.lower_case):
            mapped = "".join(classify(ch) for ch in folded) if folded else _REMOVED
            if mapped != c:
                lines.append(f"{c}\t{mapped}")
        return "\n".join(lines)

    def build(self, opset: int) -> onnx.ModelProto:
        if opset < MIN_OPSET:
            raise ValueError(f"opset: BertTokenize needs opset >= {MIN_OPSET}, got {opset}")
        i64 = TensorProto.INT64
        g = _GraphBuilder()
        g.strings["tok_empty_1d"] = ("",)
        g.strings["tok_char"] = ("(.)",)  # the split op wants a capture group
        g.strings["tok_nothing"] = ("",)
        g.nodes += [
            g.const("tok_axes0", [0]),
            g.const("tok_axes1", [1]),
            g.const("tok_zero_1d", [0]),
            g.const("tok_one_1d", [1]),
            g.const("tok_minus1_1d", [-1]),
            g.const("tok_big_1d", [2**62]),
            g.scalar("tok_zero", 0),
            g.scalar("tok_one", 1),
            g.scalar("tok_pad", self.pad_id),
            # one extra empty row: StringJoin crashes on an empty batch; the Loop below skips that row
            helper.make_node("Concat", ["text", "tok_empty_1d"], ["tok_text1"], axis=0),
        ]
        # Hugging Face matches its special tokens ("[MASK]", ...) in the raw text, before normalizing: mark
        # them with U+0003 (freed first: any in the text become U+0004, a control removed below like it)
        last = _SPECIAL + len(SPECIAL_TOKENS) - 1
        text = g.regex("tok_text1", f"[\\x{{{_SPECIAL:x}}}-\\x{{{last:x}}}]", "\x08")
        for k, token in enumerate(SPECIAL_TOKENS):
            text = g.regex(text, "".join(f"\\x{{{ord(c):x}}}" for c in token), f" {chr(_SPECIAL + k)} ")
        text = g.regex(text, CONTROL_CHARS, "")  # clean_text: controls and format characters go
        text = g.regex(text, WHITESPACE, " ")  # clean_text: every Unicode space becomes " "
        # normalize character by character: split, map, join back row by row
        g.nodes += [
            helper.make_node(
                "StringRegexSplitWithOffsets", [text, "tok_char", "tok_char"],
                ["tok_chars", "tok_char_begin", "tok_char_end", "tok_rows"], domain=CONTRIB_DOMAIN,
            ),
            helper.make_node(
                "StringMapping", ["tok_chars"], ["tok_mapped"], domain=CONTRIB_DOMAIN, map=self._char_map()
            ),
            helper.make_node("Slice", ["tok_rows", "tok_one_1d", "tok_big_1d"], ["tok_row_ends"]),
            helper.make_node("Slice", ["tok_rows", "tok_zero_1d", "tok_minus1_1d"], ["tok_row_starts"]),
            helper.make_node("Sub", ["tok_row_ends", "tok_row_starts"], ["tok_row_lens"]),
            helper.make_node("ReduceMax", ["tok_row_lens"], ["tok_row_max"], keepdims=0),
            helper.make_node("Range", ["tok_zero", "tok_row_max", "tok_one"], ["tok_cpos"]),
            helper.make_node("Unsqueeze", ["tok_cpos", "tok_axes0"], ["tok_cpos_row"]),
            helper.make_node("Unsqueeze", ["tok_row_lens", "tok_axes1"], ["tok_row_lens_col"]),
            helper.make_node("Unsqueeze", ["tok_row_starts", "tok_axes1"], ["tok_row_starts_col"]),
            helper.make_node("Less", ["tok_cpos_row", "tok_row_lens_col"], ["tok_cvalid"]),
            helper.make_node("Cast", ["tok_cvalid"], ["tok_cvalid_i"], to=i64),
            helper.make_node("Add", ["tok_row_starts_col", "tok_cpos_row"], ["tok_cidx_raw"]),
            # positions past a row's end read the appended "" at index N
            helper.make_node("Shape", ["tok_mapped"], ["tok_nchars_1d"]),
            helper.make_node("Squeeze", ["tok_nchars_1d", "tok_axes0"], ["tok_nchars"]),
            helper.make_node("Sub", ["tok_cidx_raw", "tok_nchars"], ["tok_cidx_off"]),
            helper.make_node("Mul", ["tok_cidx_off", "tok_cvalid_i"], ["tok_cidx_masked"]),
            helper.make_node("Add", ["tok_cidx_masked", "tok_nchars"], ["tok_cidx"]),
            helper.make_node("Concat", ["tok_mapped", "tok_empty_1d"], ["tok_mapped_pad"], axis=0),
            helper.make_node("Gather", ["tok_mapped_pad", "tok_cidx"], ["tok_grid"], axis=0),
            helper.make_node(
                "StringJoin", ["tok_grid", "tok_nothing", "tok_one"], ["tok_joined"], domain=CONTRIB_DOMAIN
            ),
        ]
        text = "tok_joined"
        if self.lower_case:
            text = g.regex(text, "\\x{1}", "")
        # WordPiece makes a whole word [UNK] when it cannot finish it; the op keeps the pieces it found and
        # appends [UNK]. So a word with a character outside the alphabet becomes one marker -> [UNK] alone.
        text = g.regex(text, "(^| )[^ ]*\\x{2}[^ ]*", "\\1" + self._marker)
        # special tokens become marker + number: words the op finds in its vocabulary's extra entries
        for k in range(len(SPECIAL_TOKENS)):
            text = g.regex(text, f"\\x{{{_SPECIAL + k:x}}}", f"{self._marker}{k}")
        only_first, only_cont = self._first - self._cont, self._cont - self._first
        if only_first or only_cont:  # characters allowed at one end of a word only
            cls_first = _re2_class(set(only_cont)) or "\\x{2}"
            cls_later = _re2_class(set(only_first)) or "\\x{2}"
            text = g.regex(text, f"(^| )(?:[{cls_first}]|[^ ]+[{cls_later}])[^ ]*", "\\1" + self._marker)
        g.nodes.append(helper.make_node("Identity", [text], ["tok_clean"]))

        # Loop body: one string -> its ids (the op would read two strings as a sentence pair).
        body = helper.make_graph(
            [
                helper.make_node("Gather", ["tok_clean", "tok_i"], ["tok_one_str"], axis=0),
                g.const("tok_body_axis0", [0]),
                helper.make_node("Unsqueeze", ["tok_one_str", "tok_body_axis0"], ["tok_one_str_1d"]),
                helper.make_node(
                    "BertTokenizer",
                    ["tok_one_str_1d"],
                    ["tok_ids_raw", "tok_types_one", "tok_mask_one"],
                    domain=CONTRIB_DOMAIN,
                    vocab_file="\n".join(self._vocab + [f"{self._marker}{k}" for k in range(len(SPECIAL_TOKENS))]),
                    # normalization is done above; the op only splits on spaces/punctuation and looks up
                    do_lower_case=0,
                    strip_accents=0,
                    tokenize_chinese_chars=1,
                ),
                # the extra entries (ids from len(vocab) on) -> the special tokens' ids
                g.scalar("tok_body_vocab", len(self._vocab)),
                g.scalar("tok_body_zero", 0),
                g.const("tok_body_special", [self._vocab.index(t) for t in SPECIAL_TOKENS]),
                helper.make_node("Sub", ["tok_ids_raw", "tok_body_vocab"], ["tok_extra_raw"]),
                helper.make_node("Max", ["tok_extra_raw", "tok_body_zero"], ["tok_extra"]),
                helper.make_node("Gather", ["tok_body_special", "tok_extra"], ["tok_special_ids"], axis=0),
                helper.make_node("GreaterOrEqual", ["tok_ids_raw", "tok_body_vocab"], ["tok_is_special"]),
                helper.make_node("Where", ["tok_is_special", "tok_special_ids", "tok_ids_raw"], ["tok_ids_full"]),
                # truncate here, not with the op's max_length: the op ignores max_length <= 2
                helper.make_node("Shape", ["tok_ids_full"], ["tok_full_len"]),
                g.const("tok_body_max", [self.max_length]),
                g.const("tok_body_start", [0]),
                g.const("tok_body_one", [1]),
                g.const("tok_body_sep", [self.sep_id]),
                helper.make_node("Min", ["tok_full_len", "tok_body_max"], ["tok_keep_len"]),
                helper.make_node("Sub", ["tok_keep_len", "tok_body_one"], ["tok_head_len"]),
                helper.make_node("Slice", ["tok_ids_full", "tok_body_start", "tok_head_len"], ["tok_head"]),
                helper.make_node("Concat", ["tok_head", "tok_body_sep"], ["tok_ids"], axis=0),
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
        g.nodes += [
            helper.make_node("Shape", ["text"], ["tok_batch_1d"]),
            helper.make_node("Squeeze", ["tok_batch_1d", "tok_axes0"], ["tok_batch"]),
            # seeded with an empty tensor so ConcatFromSequence has an input even for an empty batch
            g.const("tok_none", []),
            helper.make_node("SequenceConstruct", ["tok_none"], ["tok_seq0"]),
            helper.make_node("Loop", ["tok_batch", "", "tok_seq0"], ["tok_seq", "tok_lens_2d"], body=body),
            helper.make_node("Reshape", ["tok_lens_2d", "tok_minus1_1d"], ["tok_lens"]),  # [B]
            # longest encoding; the extra 0 keeps an empty batch well defined ([0, 0] outputs)
            helper.make_node("Concat", ["tok_lens", "tok_zero_1d"], ["tok_lens0"], axis=0),
            helper.make_node("ReduceMax", ["tok_lens0"], ["tok_maxlen"], keepdims=0),
            # all ids back to back, and where each row starts in it
            helper.make_node("ConcatFromSequence", ["tok_seq"], ["tok_flat"], axis=0),
            helper.make_node("CumSum", ["tok_lens", "tok_zero"], ["tok_starts"], exclusive=1),
            helper.make_node("Range", ["tok_zero", "tok_maxlen", "tok_one"], ["tok_pos"]),  # [L]
            helper.make_node("Unsqueeze", ["tok_pos", "tok_axes0"], ["tok_pos_row"]),  # [1, L]
            helper.make_node("Unsqueeze", ["tok_lens", "tok_axes1"], ["tok_lens_col"]),  # [B, 1]
            helper.make_node("Unsqueeze", ["tok_starts", "tok_axes1"], ["tok_starts_col"]),  # [B, 1]
            helper.make_node("Less", ["tok_pos_row", "tok_lens_col"], ["tok_valid"]),  # [B, L]
            helper.make_node("Add", ["tok_starts_col", "tok_pos_row"], ["tok_index_raw"]),
            # padding positions point past their row; clamp them into the buffer (their value is replaced)
            helper.make_node("Shape", ["tok_flat"], ["tok_total_1d"]),
            helper.make_node("Sub", ["tok_total_1d", "tok_one"], ["tok_last_1d"]),
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
            g.string_nodes() + g.nodes,
            "bert_tokenize",
            [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
            [helper.make_tensor_value_info(n, i64, ["batch", "sequence"]) for n in self.output_names],
        )
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(CONTRIB_DOMAIN, 1)],
            producer_name="onnxpipe",
        )


class _GraphBuilder:
    """A node list whose string constants (regex patterns, separators) become Constant nodes up front."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.strings: dict[str, tuple[str, ...]] = {}  # name -> values; 1-D when the name ends in "_1d"

    def regex(self, value: str, pattern: str, rewrite: str) -> str:
        k = sum(1 for n in self.nodes if n.op_type == "StringRegexReplace")
        pat, rew, out = f"tok_pattern{k}", f"tok_rewrite{k}", f"tok_text{k + 2}"
        self.strings[pat] = (pattern,)
        self.strings[rew] = (rewrite,)
        self.nodes.append(
            helper.make_node("StringRegexReplace", [value, pat, rew], [out], domain=CONTRIB_DOMAIN, global_replace=1)
        )
        return out

    def string_nodes(self) -> list[onnx.NodeProto]:
        nodes = []
        for name, values in self.strings.items():
            # "tok_empty_1d" is concatenated to string vectors; patterns and separators are scalars
            dims = [len(values)] if name.endswith("_1d") else []
            tensor = helper.make_tensor(name, TensorProto.STRING, dims, [v.encode() for v in values])
            nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        return nodes

    @staticmethod
    def const(name: str, values: Sequence[int]) -> onnx.NodeProto:
        tensor = helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))
        return helper.make_node("Constant", [], [name], value=tensor)

    @staticmethod
    def scalar(name: str, value: int) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [], [value]))


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

