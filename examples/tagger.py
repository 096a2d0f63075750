"""Example 3: a CRF sequence tagger, token ids in, BIO tags out, Viterbi decoding inside the ONNX file.

    tokens [batch, time] int64, lengths [batch] int64
      -> model: Embedding -> Conv1d(3) -> ReLU -> Conv1d(1)  (per-token tag scores, dynamo exporter)
      -> post:  ViterbiDecode(learned CRF transitions)       (an ONNX Loop, TorchScript exporter)
      -> tags [batch, time] int64, -1 beyond each length

The data is generated (seeded): a hidden Markov chain over BIO tags ``O, B-PER, I-PER, B-LOC, I-LOC`` emits
token ids from a small vocabulary. Names are shared between B- and I- tags and some words are ambiguous between
PER and LOC, so the token alone cannot tell the tag: the emission model sees a few neighbours and the CRF
transitions (``I-X`` only after ``B-X``/``I-X``) settle the rest. Emissions and transitions are trained together
with the CRF negative log-likelihood (:func:`train`: ~20 s of one CPU); the weights are committed in
``examples/weights/tagger.pt``.

    python -m examples.tagger --train                        # retrain, overwrite the weights
    onnxpipe export examples.tagger:factory -o tagger.onnx
    python -m examples.tagger tagger.onnx                    # the demo
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onnxpipe.ops.sequence import ViterbiDecode

__all__ = [
    "TAGS",
    "CRFTagger",
    "Emitter",
    "crf_nll",
    "demo",
    "factory",
    "generate",
    "load_tagger",
    "train",
    "vector_cases",
]

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
O, B_PER, I_PER, B_LOC, I_LOC = range(len(TAGS))
PAD = 0
#: token ids: 0 padding; 1..12 ordinary words; 13..20 person names; 21..28 place names; 29..31 either
WORDS, PERSONS, PLACES, EITHER = range(1, 13), range(13, 21), range(21, 29), range(29, 32)
VOCAB = 32
WEIGHTS = Path(__file__).resolve().parent / "weights" / "tagger.pt"
#: lengths seen in training; the demo decodes longer sequences
TRAIN_LENGTHS = (1, 24)

# hidden tag chain: P(first tag) and P(next tag | tag); I-X follows only B-X or I-X
_START = np.array([0.6, 0.2, 0.0, 0.2, 0.0])
_NEXT = np.array([
    # O     B-PER  I-PER  B-LOC  I-LOC
    [0.70, 0.15, 0.00, 0.15, 0.00],  # O
    [0.30, 0.05, 0.60, 0.05, 0.00],  # B-PER
    [0.55, 0.05, 0.35, 0.05, 0.00],  # I-PER
    [0.30, 0.05, 0.00, 0.05, 0.60],  # B-LOC
    [0.55, 0.05, 0.00, 0.05, 0.35],  # I-LOC
])


def _emit(tag: int, rng: np.random.Generator) -> int:
    if tag == O:
        pool = EITHER if rng.random() < 0.05 else WORDS
    elif tag in (B_PER, I_PER):
        pool = EITHER if rng.random() < 0.4 else PERSONS
    else:
        pool = EITHER if rng.random() < 0.4 else PLACES
    return int(rng.choice(pool))


def generate(n: int, lengths: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` sequences with lengths uniform in ``lengths`` (inclusive), padded to the longest.

    Returns ``tokens`` int64 [n, T] (0-padded), ``lengths`` int64 [n], ``tags`` int64 [n, T] (-1-padded).
    """
    rng = np.random.default_rng(seed)
    lens = rng.integers(lengths[0], lengths[1] + 1, size=n).astype(np.int64)
    t_max = int(lens.max()) if n else 0
    tokens = np.full((n, t_max), PAD, dtype=np.int64)
    tags = np.full((n, t_max), -1, dtype=np.int64)
    for i, length in enumerate(lens):
        tag = int(rng.choice(len(TAGS), p=_START))
        for t in range(length):
            if t:
                tag = int(rng.choice(len(TAGS), p=_NEXT[tag]))
            tags[i, t] = tag
            tokens[i, t] = _emit(tag, rng)
    return tokens, lens, tags


class Emitter(torch.nn.Module):
    """Per-token tag scores: ``tokens`` int64 [B, T] -> ``emissions`` float32 [B, T, K].

    A width-3 convolution sees one token either side (deliberately little: the CRF transitions carry the longer
    context); positions past a sequence's end see padding, which the decoder ignores.
    Returns ``{"emissions", "lengths"}`` so the lengths reach the decoder in ``post``.
    """

    def __init__(self, vocab: int = VOCAB, dim: int = 24, hidden: int = 48, num_tags: int = len(TAGS)) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim, padding_idx=PAD)
        self.conv1 = torch.nn.Conv1d(dim, hidden, kernel_size=3, padding=1)
        self.conv2 = torch.nn.Conv1d(hidden, num_tags, kernel_size=1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.embed(tokens).transpose(1, 2)  # [B, dim, T]
        x = self.conv2(torch.relu(self.conv1(x)))
        return {"emissions": x.transpose(1, 2), "lengths": lengths}


class CRFTagger(torch.nn.Module):
    """What is trained: the emitter and the CRF scores (transitions [K, K], start [K], end [K])."""

    def __init__(self) -> None:
        super().__init__()
        k = len(TAGS)
        self.emitter = Emitter()
        self.transitions = torch.nn.Parameter(torch.zeros(k, k))
        self.start = torch.nn.Parameter(torch.zeros(k))
        self.end = torch.nn.Parameter(torch.zeros(k))

    def decoder(self) -> ViterbiDecode:
        return ViterbiDecode(self.transitions, self.start, self.end)


def crf_nll(emissions: torch.Tensor, lengths: torch.Tensor, tags: torch.Tensor, transitions: torch.Tensor,
            start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the gold ``tags`` under the linear-chain CRF (sequences of length >= 1)."""
    b, t_len, _ = emissions.shape
    rows = torch.arange(b)
    mask = torch.arange(t_len).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
    y = tags.clamp(min=0)
    gold = start[y[:, 0]] + emissions[rows, 0, y[:, 0]]
    alpha = start.unsqueeze(0) + emissions[:, 0]
    for t in range(1, t_len):
        step = transitions[y[:, t - 1], y[:, t]] + emissions[rows, t, y[:, t]]
        gold = gold + torch.where(mask[:, t], step, torch.zeros_like(step))
        nxt = torch.logsumexp(alpha.unsqueeze(2) + transitions.unsqueeze(0), dim=1) + emissions[:, t]
        alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
    gold = gold + end[y[rows, lengths - 1]]
    log_z = torch.logsumexp(alpha + end.unsqueeze(0), dim=1)
    return (log_z - gold).mean()


def train(path: Path = WEIGHTS, steps: int = 400, batch: int = 64, seed: int = 0) -> dict[str, float]:
    """Train emitter and CRF jointly on generated sequences and save the state_dict to ``path``."""
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same floating-point reductions on every machine
    try:
        model = CRFTagger()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        t0 = time.perf_counter()
        for step in range(steps):
            tokens, lengths, tags = (torch.from_numpy(a) for a in generate(batch, TRAIN_LENGTHS, seed=1000 + step))
            emissions = model.emitter(tokens, lengths)["emissions"]
            loss = crf_nll(emissions, lengths, tags, model.transitions, model.start, model.end)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 100 == 0 or step == steps - 1:
                print(f"step {step:4d}  crf nll {loss.item():.4f}")
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)
    tokens, lengths, tags = generate(500, TRAIN_LENGTHS, seed=1)
    acc = _accuracy(_eager_tags(model.emitter, model.decoder(), tokens, lengths), tags, lengths)
    print(f"trained in {seconds:.1f} s; validation tag accuracy {acc:.2%}; wrote {path}")
    return {"seconds": seconds, "accuracy": acc, "loss": float(loss.detach())}


def load_tagger(path: Path = WEIGHTS) -> tuple[Emitter, ViterbiDecode]:
    """The committed weights as the two pipeline stages (eval mode)."""
    if not path.is_file():
        raise FileNotFoundError(f"tagger weights {str(path)!r} are missing: run python -m examples.tagger --train")
    model = CRFTagger()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.emitter.eval(), model.decoder().eval()


def factory() -> dict[str, Any]:
    """export_pipeline arguments (all but ``path``)."""
    emitter, decoder = load_tagger()
    tokens, _, _ = generate(3, (12, 12), seed=7)
    # The exporter's generated variants halve `time` but keep the lengths' values, so the example's lengths
    # stay <= time // 2; full-length rows, length 1 and time 1 come through verify_inputs.
    lengths = np.array([6, 1, 4], dtype=np.int64)
    tokens[np.arange(12)[None, :] >= lengths[:, None]] = PAD
    verify_inputs = []
    for n, span, seed in [(5, (1, 40), 11), (1, (1, 1), 12), (4, (1, 3), 13)]:
        tok, lens, _ = generate(n, span, seed)
        verify_inputs.append({"tokens": tok, "lengths": lens})
    full, full_len, _ = generate(2, (9, 9), seed=14)  # every row at full length
    verify_inputs.append({"tokens": full, "lengths": full_len})
    return {
        "pre": None,
        "model": emitter,
        "post": decoder,
        "example_inputs": {"tokens": torch.from_numpy(tokens), "lengths": torch.from_numpy(lengths)},
        "dynamic_axes": {
            "tokens": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "tags": {0: "batch", 1: "time"},
        },
        "output_names": ["tags"],
        "metadata": {"name": "tagger", "tags": ",".join(TAGS)},
        "verify_inputs": verify_inputs,
    }


def vector_cases() -> list[tuple[str, dict[str, np.ndarray]]]:
    """Golden-vector cases: one sequence; a batch of mixed lengths with 1 and T; time 1 with an empty row."""
    one, one_len, _ = generate(1, (10, 10), seed=21)
    rows = [generate(1, (n, n), seed=22 + n) for n in (13, 1, 7, 4)]
    mixed = np.full((len(rows), 13), PAD, dtype=np.int64)
    for i, (tok, _, _) in enumerate(rows):
        mixed[i, : tok.shape[1]] = tok[0]
    mixed_len = np.array([lens[0] for _, lens, _ in rows], dtype=np.int64)
    return [
        ("batch1", {"tokens": one, "lengths": one_len}),
        ("mixed_lengths", {"tokens": mixed, "lengths": mixed_len}),
        ("time1_empty_row", {"tokens": np.array([[13], [PAD]], dtype=np.int64),
                             "lengths": np.array([1, 0], dtype=np.int64)}),
    ]


def _eager_tags(emitter: Emitter, decoder: ViterbiDecode, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = emitter(torch.from_numpy(tokens), torch.from_numpy(lengths))
        return decoder(out["emissions"], out["lengths"]).numpy()


def _accuracy(pred: np.ndarray, gold: np.ndarray, lengths: np.ndarray) -> float:
    mask = np.arange(gold.shape[1])[None, :] < lengths[:, None]
    return float((pred == gold)[mask].mean())


def _invalid_steps(tags: np.ndarray, lengths: np.ndarray) -> int:
    allowed_before = {I_PER: (B_PER, I_PER), I_LOC: (B_LOC, I_LOC)}
    bad = 0
    for row, n in zip(tags, lengths):
        for t in range(int(n)):
            if row[t] in allowed_before and (t == 0 or row[t - 1] not in allowed_before[row[t]]):
                bad += 1
    return bad


def demo(path: Path) -> None:
    """Tag held-out sequences longer than any seen in training with the exported file and with eager PyTorch."""
    from onnxpipe_runtime import Pipeline

    emitter, decoder = load_tagger()
    tokens, lengths, gold = generate(200, (1, 60), seed=99)
    with Pipeline.load(path) as pipe:
        got = pipe.run({"tokens": tokens, "lengths": lengths})["tags"]
    want = _eager_tags(emitter, decoder, tokens, lengths)
    with torch.no_grad():
        emissions = emitter(torch.from_numpy(tokens), torch.from_numpy(lengths))["emissions"].numpy()
    no_crf = np.where(gold >= 0, emissions.argmax(-1), -1)
    longer = lengths > TRAIN_LENGTHS[1]
    valid = np.arange(gold.shape[1])[None, :] < lengths[:, None]
    print(f"CRF tagger: {Path(path).name}; {len(lengths)} held-out sequences, "
          f"lengths {lengths.min()}..{lengths.max()} (training: {TRAIN_LENGTHS[0]}..{TRAIN_LENGTHS[1]}), "
          f"{int(valid.sum())} tokens")
    print(f"tag accuracy  exported {_accuracy(got, gold, lengths):.2%}   "
          f"eager {_accuracy(want, gold, lengths):.2%}   "
          f"(emissions alone, no transitions: {_accuracy(no_crf, gold, lengths):.2%})")
    print(f"  on the {int(longer.sum())} sequences longer than {TRAIN_LENGTHS[1]}: exported "
          f"{_accuracy(got[longer], gold[longer], lengths[longer]):.2%}")
    print(f"invalid BIO steps (I-X not after B-X/I-X): exported {_invalid_steps(got, lengths)}, "
          f"emissions alone {_invalid_steps(no_crf, lengths)}")
    same = np.array_equal(got, want)
    print(f"exported == eager on every tag and padding value: {same} "
          f"({int((got != want).sum())} of {got.size} differ)")
    i = int(np.argmax(lengths <= 14))
    n = int(lengths[i])
    print(f"sequence {i} (length {n}):")
    print("  tokens   " + " ".join(f"{t:>5}" for t in tokens[i, :n]))
    print("  gold     " + " ".join(f"{TAGS[t]:>5}" for t in gold[i, :n]))
    print("  exported " + " ".join(f"{TAGS[t]:>5}" for t in got[i, :n]))


def _main(argv: list[str]) -> int:
    if argv == ["--train"]:
        train()
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m examples.tagger --train | python -m examples.tagger EXPORTED.onnx   (export it "
              "with: onnxpipe export examples.tagger:factory -o EXPORTED.onnx)", file=sys.stderr)
        return 2
    demo(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
