"""The accuracy gate: a candidate's final pipeline outputs (after post-processing) against the fp32 file's.

Default metric by output, pooled over every validation case:

| output                                         | metric                | default   |
|------------------------------------------------|-----------------------|-----------|
| float tensor                                   | ``cosine``: minimum cosine similarity per row (batch element) | >= 0.99 |
| integer / string / bool tensor (labels, ids, tags) | ``agreement``: fraction of equal elements | >= 0.99 |
| detection table (manifest metadata names the layout ``batch_index,x1,y1,x2,y2,score,class_id``) | ``recall`` and ``precision`` of matched detections (same image, same class, IoU >= 0.5) | >= 0.98 |

A user metric is a callable ``(reference, candidate) -> float`` over lists of output dicts (one per case),
gated by ``Gate(custom={"name": (fn, minimum)})``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxpipe.errors import OptimizeError
from onnxpipe_runtime.format import Manifest

Outputs = Mapping[str, np.ndarray]
UserMetric = Callable[[Sequence[Outputs], Sequence[Outputs]], float]

DEFAULT_MINIMUM = {"cosine": 0.99, "agreement": 0.99, "recall": 0.98, "precision": 0.98}
_DETECTION_COLUMNS = ("batch_index", "x1", "y1", "x2", "y2", "score", "class_id")


@dataclass
class Gate:
    """Minimum value of each metric (a metric that does not apply to the pipeline's outputs is ignored)."""

    minimum: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MINIMUM))
    custom: dict[str, tuple[UserMetric, float]] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{k}>={v:g}" for k, v in self.minimum.items()]
        parts += [f"{k}>={v:g}" for k, (_, v) in self.custom.items()]
        return ",".join(parts)


_TERM = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*>=\s*([0-9.eE+-]+)\s*$")


def parse_gate(text: str | Gate | None) -> Gate:
    """``"cosine>=0.99,agreement>=0.995"`` -> a :class:`Gate` (unnamed metrics keep their defaults)."""
    if text is None:
        return Gate()
    if isinstance(text, Gate):
        return text
    if not isinstance(text, str) or not text.strip():
        raise OptimizeError(f"gate: expected terms like 'cosine>=0.99' separated by commas, got {text!r}")
    gate = Gate()
    for term in text.split(","):
        m = _TERM.match(term)
        if m is None:
            raise OptimizeError(f"gate: cannot read {term.strip()!r}; expected METRIC>=VALUE with METRIC one of "
                                f"{sorted(DEFAULT_MINIMUM)}, e.g. 'cosine>=0.99'")
        name, value = m.group(1), float(m.group(2))
        if name not in DEFAULT_MINIMUM:
            raise OptimizeError(f"gate: unknown metric {name!r}; expected one of {sorted(DEFAULT_MINIMUM)}")
        if not 0.0 <= value <= 1.0:
            raise OptimizeError(f"gate: {name}>={value:g} is out of range; every metric lies in [0, 1]")
        gate.minimum[name] = value
    return gate


def detection_outputs(manifest: Manifest) -> set[str]:
    """Outputs the manifest describes as detection tables (metadata ``{output: "batch_index,x1,...,class_id"}``)."""
    meta = manifest.metadata
    names = {o.name for o in manifest.outputs}
    found = set()
    for key, value in meta.items():
        cols = tuple(c.strip() for c in str(value).split(","))
        if key in names and cols == _DETECTION_COLUMNS:
            found.add(key)
    return found


def _cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    if ref.shape != got.shape:
        return np.zeros(1)
    if ref.size == 0:
        return np.ones(0)
    a = ref.reshape(ref.shape[0], -1).astype(np.float64) if ref.ndim >= 2 else ref.reshape(1, -1).astype(np.float64)
    b = got.reshape(a.shape).astype(np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    bad_nan = np.any(nan_a != nan_b, axis=1)
    a, b = np.where(nan_a, 0.0, a), np.where(nan_b, 0.0, b)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(a * b, axis=1) / (na * nb)
    both_zero = (na == 0) & (nb == 0)
    cos = np.where(both_zero, 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    return np.where(bad_nan, 0.0, np.clip(cos, -1.0, 1.0))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _match_detections(ref: np.ndarray, got: np.ndarray) -> int:
    """Greedy one-to-one matches (highest score first): same image, same class, IoU >= 0.5."""
    used = np.zeros(len(got), dtype=bool)
    matched = 0
    for r in ref[np.argsort(-ref[:, 5], kind="stable")] if len(ref) else []:
        best, best_iou = -1, 0.5
        for j, g in enumerate(got):
            if used[j] or g[0] != r[0] or g[6] != r[6]:
                continue
            iou = _iou(r[1:5], g[1:5])
            if iou >= best_iou:
                best, best_iou = j, iou
        if best >= 0:
            used[best] = True
            matched += 1
    return matched


def evaluate(reference: Sequence[Outputs], candidate: Sequence[Outputs], manifest: Manifest,
             gate: Gate) -> dict[str, float]:
    """Every applicable metric of ``candidate`` against ``reference`` (lists of output dicts, one per case)."""
    detections = detection_outputs(manifest)
    cos: list[float] = []
    equal = total = 0
    n_ref = n_got = n_match = 0
    for ref, got in zip(reference, candidate):
        for name, r in ref.items():
            g = np.asarray(got[name])
            r = np.asarray(r)
            if name in detections:
                if g.ndim != 2 or g.shape[1:] != (7,):
                    n_ref += len(r)
                    continue
                n_ref += len(r)
                n_got += len(g)
                n_match += _match_detections(r, g)
            elif r.dtype.kind == "f":
                c = _cosines(r, g)
                if c.size:
                    cos.append(float(c.min()))
            else:
                total += r.size
                equal += int(np.sum(r == g)) if r.shape == g.shape else 0
    result: dict[str, float] = {}
    if cos:
        result["cosine"] = min(cos)
    if total:
        result["agreement"] = equal / total
    if detections:
        result["recall"] = n_match / n_ref if n_ref else 1.0
        result["precision"] = n_match / n_got if n_got else 1.0
    for name, (fn, _) in gate.custom.items():
        value = float(fn(reference, candidate))
        if not math.isfinite(value):
            raise OptimizeError(f"gate: the metric {name!r} returned {value}; expected a finite number")
        result[name] = value
    return result


def passes(metrics: Mapping[str, float], gate: Gate) -> bool:
    mins = dict(gate.minimum) | {k: v for k, (_, v) in gate.custom.items()}
    return all(metrics[k] >= v for k, v in mins.items() if k in metrics)


def margin(metrics: Mapping[str, float], gate: Gate) -> float:
    """How far the worst metric is above its minimum (negative: below). Ranks candidates and harmful nodes."""
    mins = dict(gate.minimum) | {k: v for k, (_, v) in gate.custom.items()}
    gaps = [metrics[k] - v for k, v in mins.items() if k in metrics]
    return min(gaps) if gaps else 0.0
