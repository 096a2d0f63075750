"""Detection post-processing: box conversions, batched non-maximum suppression, mapping back to the image.

Boxes are float32 ``[..., 4]``: ``xyxy`` is ``(x1, y1, x2, y2)`` (corners, x1 <= x2 and y1 <= y2 expected),
``cxcywh`` is ``(center x, center y, width, height)``. Scores are float32 ``[B, N, C]`` (``N`` boxes per image,
``C`` classes), e.g. objectness x class probability.

:class:`BatchedNMS` lowers to ONNX ``NonMaxSuppression`` (opset >= 11) and its eager forward reproduces what
ONNX Runtime's kernel does, bit for bit on x86-64: candidates need ``score > score_threshold`` (strictly
greater), they are visited by score descending with ties broken towards the lower box index, and a candidate
is dropped when its IoU with an already kept box of the same class is ``> iou_threshold`` (IoU computed in
float32 in the kernel's order; boxes with zero area, or not intersecting, never suppress). Its outputs are
exact for any batch size and box count, including no boxes and images where nothing passes the threshold.

Exporter support: the dynamo exporter (the default) and the TorchScript exporter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from onnxpipe.stages import RuntimeInput

__all__ = [
    "DETECTION_COLUMNS",
    "BatchedNMS",
    "UnLetterbox",
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "clip_boxes",
    "unletterbox_boxes",
]

#: columns of BatchedNMS's ``detections`` rows
DETECTION_COLUMNS = ("batch_index", "x1", "y1", "x2", "y2", "score", "class_id")


# -- box helpers (plain torch: exact in ONNX, any shape) ---------------------------------------------------


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)`` on float ``[..., 4]`` (``x1 = cx - 0.5 * w``, ...)."""
    _check_last4("box_cxcywh_to_xyxy", boxes)
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)`` on float ``[..., 4]`` (``cx = (x1 + x2) / 2``, ``w = x2 - x1``)."""
    _check_last4("box_xyxy_to_cxcywh", boxes)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def clip_boxes(boxes: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """Clamp xyxy boxes ``[..., 4]`` to ``[0, width] x [0, height]``.

    ``image_size``: float ``[2]`` tensor ``(height, width)`` (a graph value, so it can follow the input's shape).
    """
    _check_last4("clip_boxes", boxes)
    size = image_size.to(boxes.dtype)
    zero = torch.zeros((), dtype=boxes.dtype)
    upper = torch.stack([size[1], size[0], size[1], size[0]])
    return torch.minimum(torch.maximum(boxes, zero), upper)


def unletterbox_boxes(boxes: torch.Tensor, scale: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Map xyxy boxes ``[..., 4]`` from a :class:`onnxpipe.ops.image.Letterbox` output back to the input image.

    ``scale``: float32 ``[]`` and ``pad``: float32 ``[2]`` ``(left, top)``, as Letterbox returns them:
    ``x -> (x - pad[0]) / scale``, ``y -> (y - pad[1]) / scale``. No clipping (see :func:`clip_boxes`).
    """
    _check_last4("unletterbox_boxes", boxes)
    offset = torch.stack([pad[0], pad[1], pad[0], pad[1]]).to(boxes.dtype)
    return (boxes - offset) / scale.to(boxes.dtype)


def _check_last4(op: str, boxes: Any) -> None:
    if not isinstance(boxes, torch.Tensor) or not boxes.is_floating_point():
        got = boxes.dtype if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{op}: input 'boxes': expected a float tensor [..., 4], got {got}")
    if boxes.dim() < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{op}: input 'boxes': expected shape [..., 4], got {list(boxes.shape)}")


class UnLetterbox(torch.nn.Module):
    """Map :class:`BatchedNMS` detections back to the original image, optionally clipped to it.

    ``forward(detections [K, 7], scale [], pad [2], image_size [2])`` -> float32 ``[K, 7]``: columns 1-4
    (x1, y1, x2, y2) go through :func:`unletterbox_boxes`, then (``clip=True``) :func:`clip_boxes` with
    ``image_size = (height, width)`` of the image given to Letterbox; the other columns are unchanged.
    """

    def __init__(self, clip: bool = True) -> None:
        super().__init__()
        if not isinstance(clip, bool):
            raise ValueError(f"UnLetterbox: clip: expected a bool, got {clip!r}")
        self.clip = clip

    def forward(self, detections: torch.Tensor, scale: torch.Tensor, pad: torch.Tensor,
                image_size: torch.Tensor) -> torch.Tensor:
        if not isinstance(detections, torch.Tensor) or detections.dim() != 2 or detections.shape[-1] != 7:
            got = list(detections.shape) if isinstance(detections, torch.Tensor) else type(detections).__name__
            raise ValueError(f"UnLetterbox: input 'detections': expected shape [K, 7], got {got}")
        boxes = unletterbox_boxes(detections[:, 1:5], scale, pad)
        if self.clip:
            boxes = clip_boxes(boxes, image_size)
        return torch.cat([detections[:, :1], boxes, detections[:, 5:]], dim=1)

    def describe(self) -> str:
        return f"UnLetterbox(clip={self.clip})"


# -- batched NMS -------------------------------------------------------------------------------------------


def _exporting() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


class BatchedNMS(torch.nn.Module):
    """Per-class (or class-agnostic) non-maximum suppression over a batch, as one ``[K, 7]`` table.

    ``forward(boxes, scores)``:

    * ``boxes``: float32 ``[B, N, 4]`` xyxy; ``scores``: float32 ``[B, N, C]`` (``C >= 1``).
    * returns ``detections``: float32 ``[K, 7]``, rows ``(batch_index, x1, y1, x2, y2, score, class_id)``,
      sorted by batch index, then score descending; equal scores by class id (per-class mode), then box
      index; at most
      ``max_detections`` rows per image; ``K = 0`` when nothing passes.

    Per-class mode: every (box, class) pair with ``score > score_threshold`` is a candidate and suppression
    only happens within a class (a box may be reported for several classes). ``class_agnostic=True``: each
    box takes its best class (the lowest class index on ties) and suppression runs across classes.

    ``score_threshold`` and ``iou_threshold`` are :class:`onnxpipe.RuntimeInput` graph inputs (defaults as
    given here; names ``score_threshold`` / ``iou_threshold`` unless ``*_name`` says otherwise), so a caller
    can change them per run. An ``iou_threshold`` outside [0, 1] at run time is an error (ONNX Runtime's rule).
    """

    def __init__(
        self,
        iou_threshold: float = 0.45,
        score_threshold: float = 0.25,
        max_detections: int = 100,
        class_agnostic: bool = False,
        *,
        iou_name: str = "iou_threshold",
        score_name: str = "score_threshold",
    ) -> None:
        super().__init__()
        if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) \
                or not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"BatchedNMS: iou_threshold: expected a number in [0, 1], got {iou_threshold!r}")
        if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) \
                or not math.isfinite(score_threshold):
            raise ValueError(f"BatchedNMS: score_threshold: expected a finite number, got {score_threshold!r}")
        if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
            raise ValueError(f"BatchedNMS: max_detections: expected an int >= 1, got {max_detections!r}")
        if not isinstance(class_agnostic, bool):
            raise ValueError(f"BatchedNMS: class_agnostic: expected a bool, got {class_agnostic!r}")
        for pname, val in (("iou_name", iou_name), ("score_name", score_name)):
            if not isinstance(val, str) or not val.isidentifier():
                raise ValueError(f"BatchedNMS: {pname}: expected an identifier, got {val!r}")
        if iou_name == score_name:
            raise ValueError(f"BatchedNMS: score_name: expected a name other than iou_name, got {score_name!r}")
        self.iou_threshold = RuntimeInput(iou_name, float(iou_threshold), range=(0.0, 1.0))
        self.score_threshold = RuntimeInput(score_name, float(score_threshold))
        self.max_detections = max_detections
        self.class_agnostic = class_agnostic

    def describe(self) -> str:
        mode = "class-agnostic" if self.class_agnostic else "per-class"
        return f"BatchedNMS({mode}, max {self.max_detections})"

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        exporting = _exporting()
        _check_nms_inputs(boxes, scores, check_dims=not exporting)
        iou = self.iou_threshold.value()
        score_thr = self.score_threshold.value()
        if not exporting:
            v = float(iou)
            if not 0.0 <= v <= 1.0:  # NaN too; ONNX Runtime rejects the same values at run time
                raise ValueError(f"BatchedNMS: input {self.iou_threshold.name!r}: expected a value in [0, 1], got {v}")

        pad = self.max_detections
        b, n = boxes.shape[0], boxes.shape[1]
        if self.class_agnostic:
            per_class = scores.amax(dim=2).unsqueeze(1)  # [B, 1, N]
            best_class = scores.argmax(dim=2)  # [B, N], first maximum on ties
        else:
            per_class = scores.transpose(1, 2)  # [B, C, N]: NonMaxSuppression's layout
        kept = _kept_scores(boxes, per_class, pad, iou, score_thr, exporting)  # [B, C', N], -inf = dropped

        # Pad every class row with `pad` dropped entries: the flattened row then has at least `pad` columns
        # (TopK's k is constant) and no reshape ever meets a zero-sized axis other than the batch.
        c = kept.shape[1]
        width = n + pad
        kept = torch.cat([kept, torch.full((b, c, pad), float("-inf"), dtype=kept.dtype)], dim=2)
        top_scores, top_index = _top_k(kept.reshape(b, c * width), pad, exporting)  # [B, pad] each
        valid = top_scores > float("-inf")
        # (class, box) of each flat index by lookup: integer division by a dynamic size exports through float
        class_grid = torch.arange(c, dtype=torch.int64).unsqueeze(1).expand(c, width).reshape(c * width)
        box_grid = torch.arange(width, dtype=torch.int64).unsqueeze(0).expand(c, width).reshape(c * width)
        box_index = box_grid[top_index]  # < N for every valid entry; a padded row otherwise
        padded_boxes = torch.cat([boxes, torch.zeros((b, pad, 4), dtype=boxes.dtype)], dim=1)
        picked = torch.gather(padded_boxes, 1, box_index.unsqueeze(-1).expand(b, pad, 4))
        if self.class_agnostic:
            padded_class = torch.cat([best_class, torch.zeros((b, pad), dtype=best_class.dtype)], dim=1)
            class_id = torch.gather(padded_class, 1, box_index)
        else:
            class_id = class_grid[top_index]
        batch_index = torch.arange(b, dtype=torch.int64).unsqueeze(1).expand(b, pad)
        rows = torch.cat(
            [
                batch_index.to(torch.float32).unsqueeze(-1),
                picked,
                top_scores.unsqueeze(-1),
                class_id.to(torch.float32).unsqueeze(-1),
            ],
            dim=-1,
        )  # [B, pad, 7]
        return rows[valid]


def _check_nms_inputs(boxes: Any, scores: Any, *, check_dims: bool) -> None:
    for name, x, last in (("boxes", boxes, "4"), ("scores", scores, "C")):
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"BatchedNMS: input {name!r}: expected float32 [B, N, {last}], got {got}")
        if x.dim() != 3:
            raise ValueError(f"BatchedNMS: input {name!r}: expected shape [B, N, {last}], got {list(x.shape)}")
    if boxes.shape[-1] != 4:
        raise ValueError(f"BatchedNMS: input 'boxes': expected shape [B, N, 4], got {list(boxes.shape)}")
    if check_dims:
        if scores.shape[-1] < 1:
            raise ValueError(f"BatchedNMS: input 'scores': expected at least one class, got shape {list(scores.shape)}")
        if boxes.shape[:2] != scores.shape[:2]:
            raise ValueError(
                f"BatchedNMS: input 'scores': expected [B, N] = {list(boxes.shape[:2])} like 'boxes', "
                f"got shape {list(scores.shape)}"
            )


# -- the NonMaxSuppression step: ONNX op when exporting, its exact eager twin otherwise ------------------


def _kept_scores(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou: torch.Tensor,
                 score_thr: torch.Tensor, exporting: bool) -> torch.Tensor:
    """``scores`` [B, C, N] where NonMaxSuppression keeps (b, c, n), ``-inf`` elsewhere."""
    limit = torch.tensor(max_per_class, dtype=torch.int64)
    if not exporting:
        return _kept_scores_eager(boxes, scores, limit, iou, score_thr)
    if torch.jit.is_tracing():
        return _KeptScoresTS.apply(boxes, scores, limit, iou, score_thr)
    # dynamo: NonMaxSuppression's row count is data-dependent. The symbolic ops only need a symbol for it in
    # their shape metadata; `.item()` of a constant mints one, and its node is dead code removed by the
    # exporter (nothing reads it: GatherND/ScatterND take the real `selected` tensor).
    count = torch.zeros((), dtype=torch.int64).item()
    torch._check(count >= 0)
    selected = torch.onnx.ops.symbolic(
        "NonMaxSuppression", (boxes, scores, limit, iou, score_thr), dtype=torch.int64, shape=(count, 3)
    )  # [M, 3] (batch, class, box)
    values = torch.onnx.ops.symbolic("GatherND", (scores, selected), dtype=scores.dtype, shape=(count,))
    dropped = torch.full_like(scores, float("-inf"))
    return torch.onnx.ops.symbolic("ScatterND", (dropped, selected, values), dtype=scores.dtype, shape=scores.shape)


def _kept_scores_eager(boxes: torch.Tensor, scores: torch.Tensor, limit: torch.Tensor, iou: torch.Tensor,
                       score_thr: torch.Tensor) -> torch.Tensor:
    keep = nms_keep_mask(boxes.detach().cpu().numpy(), scores.detach().cpu().numpy(), int(limit),
                         np.float32(iou), np.float32(score_thr))
    return torch.where(torch.from_numpy(keep), scores, torch.tensor(float("-inf"), dtype=scores.dtype))


def nms_keep_mask(boxes: np.ndarray, scores: np.ndarray, max_per_class: int, iou_threshold: np.float32,
                  score_threshold: np.float32) -> np.ndarray:
    """ONNX Runtime's NonMaxSuppression (center_point_box=0) as a bool mask ``[B, C, N]`` of the kept boxes.

    ``boxes`` float32 ``[B, N, 4]``, ``scores`` float32 ``[B, C, N]``. Mirrors the kernel step by step:
    candidates ``score > score_threshold``; visit by score descending, ties to the lower index; keep a
    candidate unless a kept box has IoU ``> iou_threshold`` with it; stop after ``max_per_class`` per class.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    thr = np.float32(iou_threshold)
    keep = np.zeros(scores.shape, dtype=bool)
    for b in range(scores.shape[0]):
        # corners in either order, as the kernel's MaxMin; the kernel reads [y1, x1, y2, x2]: its "x" pair
        # is our (y1, y2). Products are commutative, so only the operands' pairing matters, not their order.
        bx = boxes[b]
        lo0, hi0 = np.minimum(bx[:, 0], bx[:, 2]), np.maximum(bx[:, 0], bx[:, 2])
        lo1, hi1 = np.minimum(bx[:, 1], bx[:, 3]), np.maximum(bx[:, 1], bx[:, 3])
        area = (hi1 - lo1) * (hi0 - lo0)
        for c in range(scores.shape[1]):
            s = scores[b, c]
            cand = np.flatnonzero(s > np.float32(score_threshold))
            alive = cand[np.argsort(-s[cand], kind="stable")]
            kept = 0
            while alive.size and kept < max_per_class:
                i, rest = alive[0], alive[1:]
                keep[b, c, i] = True
                kept += 1
                alive = rest[~_suppressed(i, rest, lo0, hi0, lo1, hi1, area, thr)]
    return keep


def _suppressed(i: int, rest: np.ndarray, lo0: np.ndarray, hi0: np.ndarray, lo1: np.ndarray, hi1: np.ndarray,
                area: np.ndarray, thr: np.float32) -> np.ndarray:
    """The kernel's SuppressByIOU(candidate=rest, selected=i), vectorised, in float32."""
    ix_lo, ix_hi = np.maximum(lo1[rest], lo1[i]), np.minimum(hi1[rest], hi1[i])
    iy_lo, iy_hi = np.maximum(lo0[rest], lo0[i]), np.minimum(hi0[rest], hi0[i])
    inter = (ix_hi - ix_lo) * (iy_hi - iy_lo)
    a1, a2 = area[rest], area[i]
    union = a1 + a2 - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        over = inter / union > thr
    return (ix_hi > ix_lo) & (iy_hi > iy_lo) & (inter > 0) & (a1 > 0) & (a2 > 0) & (union > 0) & over


class _KeptScoresTS(torch.autograd.Function):
    """TorchScript exporter path: the same three ONNX nodes, emitted by ``symbolic``."""

    @staticmethod
    def forward(ctx: Any, boxes: torch.Tensor, scores: torch.Tensor, limit: torch.Tensor, iou: torch.Tensor,
                score_thr: torch.Tensor) -> torch.Tensor:
        return _kept_scores_eager(boxes, scores, limit, iou, score_thr)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, limit: Any, iou: Any, score_thr: Any) -> Any:
        selected = g.op("NonMaxSuppression", boxes, scores, limit, iou, score_thr)
        values = g.op("GatherND", scores, selected)
        minus_inf = g.op("Constant", value_t=torch.tensor([float("-inf")], dtype=torch.float32))
        dropped = g.op("Expand", minus_inf, g.op("Shape", scores))
        return g.op("ScatterND", dropped, selected, values)


# -- top-k with ONNX TopK's tie rule (equal values: lower index first) -------------------------------------


def _top_k(x: torch.Tensor, k: int, exporting: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest ``k`` along dim 1, sorted descending, ties to the lower index (ONNX TopK's documented rule)."""
    if not exporting:
        values, index = torch.sort(x, dim=1, descending=True, stable=True)
        return values[:, :k], index[:, :k]
    k_t = torch.tensor([k], dtype=torch.int64)
    if torch.jit.is_tracing():
        return _TopKTS.apply(x, k_t)
    values, index = torch.onnx.ops.symbolic_multi_out(
        "TopK", (x, k_t), {"axis": 1, "largest": 1, "sorted": 1},
        dtypes=(x.dtype, torch.int64), shapes=((x.shape[0], k), (x.shape[0], k)),
    )
    return values, index


class _TopKTS(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, index = torch.sort(x, dim=1, descending=True, stable=True)
        kk = int(k[0])
        return values[:, :kk], index[:, :kk]

    @staticmethod
    def symbolic(g: Any, x: Any, k: Any) -> Any:
        return g.op("TopK", x, k, axis_i=1, largest_i=1, sorted_i=1, outputs=2)
