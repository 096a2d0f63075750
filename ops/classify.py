"""Classification post-processing: probabilities, top-k with label strings, multi-label, "unknown".

Scores are float ``[B, C]`` (``C`` classes). Label strings cannot be produced by torch, so the ops that
return them split themselves (``onnxpipe_steps()``) into a torch part returning ``(score, label_id)`` and a
:class:`LabelLookup` ONNX-native stage that gathers the strings from labels embedded in the file. Thresholds
are :class:`onnxpipe.RuntimeInput` graph inputs (default name ``score_threshold``), overridable per run.

Ties in :class:`TopK` are broken towards the lower class index, both eagerly and in ONNX (TopK's rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from onnxpipe.stages import OnnxStage, RuntimeInput

__all__ = ["LabelLookup", "MultiLabel", "Sigmoid", "Softmax", "TopK"]

DEFAULT_THRESHOLD_NAME = "score_threshold"
UNKNOWN = "unknown"


def _check_scores(op: str, scores: Any, classes: int | None = None) -> None:
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        got = scores.dtype if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"{op}: input 'scores': expected a float tensor [batch, classes], got {got}")
    if scores.dim() != 2:
        raise ValueError(f"{op}: input 'scores': expected shape [batch, classes], got {list(scores.shape)}")
    c = scores.shape[-1]
    if classes is not None and isinstance(c, int) and c != classes:
        raise ValueError(
            f"{op}: input 'scores': expected {classes} classes (one per label), got shape {list(scores.shape)}"
        )


def _check_labels(op: str, labels: Any) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) == 0:
        raise ValueError(f"{op}: labels: expected a non-empty sequence of strings, got {labels!r}")
    bad = [x for x in labels if not isinstance(x, str)]
    if bad:
        raise ValueError(f"{op}: labels: expected strings, got {bad[:3]!r}")
    return list(labels)


def _threshold(op: str, threshold: float | RuntimeInput | None, name: str) -> RuntimeInput | None:
    if threshold is None:
        return None
    value = threshold.default if isinstance(threshold, RuntimeInput) else threshold
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{op}: threshold: expected a number in [0, 1], got {value!r}")
    if isinstance(threshold, RuntimeInput):
        return threshold
    return RuntimeInput(name, float(value), range=(0.0, 1.0))


class Softmax(torch.nn.Module):
    """``softmax(scores, dim)``: float logits -> probabilities, same shape (default: last axis)."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise ValueError(f"Softmax: dim: expected an int, got {dim!r}")
        self.dim = dim

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=self.dim)


class Sigmoid(torch.nn.Module):
    """Element-wise ``sigmoid``: independent per-class probabilities (multi-label), same shape."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


class LabelLookup(OnnxStage):
    """ONNX-native: ``label_id`` int64 (any shape) -> ``label`` strings (same shape) from embedded labels.

    Inputs ``(score, label_id)`` positionally; outputs ``{"score", "label_id", "label"}`` (score and ids passed
    through). An id of -1 becomes ``unknown_label``. ``shape`` documents the outputs' dims in the file
    (ints fixed, strings named dynamic dims).
    """

    input_names = ("lookup_score", "lookup_label_id")
    output_names = ("score", "label_id", "label")

    def __init__(self, labels: Sequence[str], unknown_label: str = UNKNOWN,
                 shape: Sequence[int | str] = ("batch", "k")) -> None:
        checked = _check_labels("LabelLookup", labels)
        if checked is None:
            raise ValueError("LabelLookup: labels: expected a non-empty sequence of strings, got None")
        if not isinstance(unknown_label, str):
            raise ValueError(f"LabelLookup: unknown_label: expected a string, got {unknown_label!r}")
        self.onnxpipe_labels = checked
        self.unknown_label = unknown_label
        self.shape = list(shape)
        self._table = np.array(checked + [unknown_label], dtype=object)

    def build(self, opset: int) -> onnx.ModelProto:
        n = len(self.onnxpipe_labels or ())
        table = helper.make_tensor("labels", TensorProto.STRING, [n + 1], [s.encode() for s in self._table])
        unknown_index = helper.make_tensor("unknown_index", TensorProto.INT64, [], [n])
        zero = helper.make_tensor("zero", TensorProto.INT64, [], [0])
        nodes = [
            helper.make_node("Less", ["lookup_label_id", "zero"], ["is_unknown"]),
            # id -1 -> the extra last entry (unknown_label); never rely on Gather's negative wrap-around
            helper.make_node("Where", ["is_unknown", "unknown_index", "lookup_label_id"], ["index"]),
            helper.make_node("Gather", ["labels", "index"], ["label"], axis=0),
            helper.make_node("Identity", ["lookup_score"], ["score"]),
            helper.make_node("Identity", ["lookup_label_id"], ["label_id"]),
        ]

        def vi(name: str, elem: int) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(name, elem, self.shape)

        graph = helper.make_graph(
            nodes, "label_lookup",
            [vi("lookup_score", TensorProto.FLOAT), vi("lookup_label_id", TensorProto.INT64)],
            [vi("score", TensorProto.FLOAT), vi("label_id", TensorProto.INT64), vi("label", TensorProto.STRING)],
            initializer=[table, unknown_index, zero],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    def reference(self, score: np.ndarray, label_id: np.ndarray) -> dict[str, np.ndarray]:
        ids = np.asarray(label_id, dtype=np.int64)
        index = np.where(ids < 0, len(self._table) - 1, ids)
        return {"score": np.asarray(score), "label_id": ids, "label": self._table[index]}

    def describe(self) -> str:
        return f"LabelLookup({len(self.onnxpipe_labels or ())} labels)"


class _TopKIds(torch.nn.Module):
    """The torch part of TopK: ``scores [B, C] -> (score [B, k], label_id [B, k])``."""

    def __init__(self, k: int, classes: int | None, threshold: RuntimeInput | None) -> None:
        super().__init__()
        self.k = k
        self.classes = classes
        if threshold is not None:
            self.score_threshold = threshold

    def forward(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_scores("TopK", scores, self.classes)
        c = scores.shape[-1]
        if isinstance(c, int) and c < self.k:
            raise ValueError(
                f"TopK: input 'scores': expected at least k={self.k} classes, got shape {list(scores.shape)}"
            )
        if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
            score, ids = torch.topk(scores, self.k, dim=-1, largest=True, sorted=True)
        else:
            # torch.topk breaks ties arbitrarily; a stable sort gives ONNX TopK's rule (lower index first)
            score, ids = torch.sort(scores, dim=-1, descending=True, stable=True)
            score, ids = score[:, : self.k], ids[:, : self.k]
        ri = getattr(self, "score_threshold", None)
        if ri is not None:
            ids = torch.where(score < ri.value(), torch.full_like(ids, -1), ids)
        return score, ids

    def describe(self) -> str:
        return f"TopK({self.k})"


def _as_dict(score: torch.Tensor, label_id: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"score": score, "label_id": label_id}


class _IdsThenLabels(torch.nn.Module):
    """A torch part ``ids`` (scores -> (score, label_id)) followed, when labels are given, by the ONNX-native
    ``lookup`` that adds the label strings; the exporter exports the two parts separately."""

    ids: torch.nn.Module
    lookup: LabelLookup | None

    def onnxpipe_steps(self) -> list[Any]:
        return [self.ids, self.lookup] if self.lookup is not None else [self.ids, _as_dict]

    def forward(self, scores: torch.Tensor) -> dict[str, Any]:
        score, ids = self.ids(scores)
        if self.lookup is None:
            return _as_dict(score, ids)
        return self.lookup(score, ids)


class TopK(_IdsThenLabels):
    """The ``k`` best classes per row: ``scores`` float [B, C] -> dict

    * ``score``: float [B, k], descending (ties: lower class index first);
    * ``label_id``: int64 [B, k], class indices; -1 where ``score < score_threshold`` (when one is given);
    * ``label``: string [B, k] (only with ``labels``): ``labels[label_id]``, ``unknown_label`` for -1.

    ``score_threshold`` (a number in [0, 1], or a :class:`RuntimeInput`) becomes the run-time input
    ``threshold_name``. ``labels`` are embedded in the file (manifest ``labels``); ``len(labels)`` must equal C.
    Run with C < k is an error.
    """

    def __init__(self, k: int, labels: Sequence[str] | None = None, *,
                 score_threshold: float | RuntimeInput | None = None,
                 threshold_name: str = DEFAULT_THRESHOLD_NAME, unknown_label: str = UNKNOWN) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"TopK: k: expected an int >= 1, got {k!r}")
        self.labels = _check_labels("TopK", labels)
        if self.labels is not None and k > len(self.labels):
            raise ValueError(f"TopK: k: expected at most the number of labels ({len(self.labels)}), got {k}")
        self.k = k
        threshold = _threshold("TopK", score_threshold, threshold_name)
        self.ids = _TopKIds(k, len(self.labels) if self.labels else None, threshold)
        self.lookup = LabelLookup(self.labels, unknown_label, ("batch", k)) if self.labels else None
        if self.labels is not None:
            self.onnxpipe_labels = self.labels


    def describe(self) -> str:
        return f"TopK({self.k}{', labels' if self.labels else ''})"


class _MultiLabelIds(torch.nn.Module):
    def __init__(self, threshold: RuntimeInput, classes: int | None) -> None:
        super().__init__()
        self.score_threshold = threshold
        self.classes = classes

    def forward(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_scores("MultiLabel", scores, self.classes)
        classes = torch.arange(scores.shape[-1], dtype=torch.int64).expand(scores.shape)
        ids = torch.where(scores >= self.score_threshold.value(), classes, torch.full_like(classes, -1))
        return scores, ids

    def describe(self) -> str:
        return "MultiLabel"


class MultiLabel(_IdsThenLabels):
    """Multi-label selection: probabilities ``scores`` float [B, C] (e.g. after Sigmoid) -> dict

    * ``score``: float [B, C], the input unchanged;
    * ``label_id``: int64 [B, C]: ``c`` where ``score[b, c] >= score_threshold``, else -1;
    * ``label``: string [B, C] (only with ``labels``): ``labels[c]`` where selected, ``""`` elsewhere.

    ``threshold`` (default 0.5, in [0, 1]) is the run-time input ``threshold_name``.
    """

    def __init__(self, threshold: float | RuntimeInput = 0.5, labels: Sequence[str] | None = None, *,
                 threshold_name: str = DEFAULT_THRESHOLD_NAME) -> None:
        super().__init__()
        self.labels = _check_labels("MultiLabel", labels)
        ri = _threshold("MultiLabel", threshold, threshold_name)
        if ri is None:
            raise ValueError("MultiLabel: threshold: expected a number in [0, 1], got None")
        self.ids = _MultiLabelIds(ri, len(self.labels) if self.labels else None)
        self.lookup = LabelLookup(self.labels, "", ("batch", len(self.labels))) if self.labels else None
        if self.labels is not None:
            self.onnxpipe_labels = self.labels


    def describe(self) -> str:
        return f"MultiLabel({'labels' if self.labels else 'ids'})"
