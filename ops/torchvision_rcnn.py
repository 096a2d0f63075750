"""torchvision detectors built on ``GeneralizedRCNNTransform`` (Faster R-CNN, RetinaNet) as exportable modules.

Each wrapper's eager forward is the torchvision model itself (thresholds taken from the run-time inputs), laid
out as the ``[K, 7]`` detection table; its exported forward is the same computation in batched tensor ops with
every data-dependent size dynamic:

* transform: normalize; resize to ``floor(side * min(min_size / short, max_size / long))``, the scale and the
  product in float64 as torchvision computes them in Python; bilinear; zero padding to ``size_divisible``;
* anchors from the padded size and every feature map's size (``AnchorGenerator``'s integer strides);
* Faster R-CNN: RPN top-``pre_nms_top_n`` per level, decode, clip, remove small, score ``>= score_thresh``,
  NMS per level (``NonMaxSuppression``, one class per level), the best ``post_nms_top_n`` proposals per image
  (padded, invalid ones masked); ``MultiScaleRoIAlign`` as ONNX ``RoiAlign`` per level with torchvision's
  level mapper and inferred scales; box head and predictor; per-class decode, clip, score ``> score_thresh``,
  remove small, :class:`onnxpipe.ops.detect.BatchedNMS`, ``detections_per_img``;
* RetinaNet: per level the ``topk_candidates`` best (anchor, class) scores, decode, clip, then
  :class:`~onnxpipe.ops.detect.BatchedNMS` (score ``> score_thresh``, per class), ``detections_per_img``;
* boxes scaled back to the input image by the float32 ratios torchvision uses.

Run-time inputs ``score_threshold`` (``score_thresh`` of the box head, in [0, 1]) and ``iou_threshold``
(``nms_thresh``). The RPN's own thresholds stay constants of the file.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F

from onnxpipe.errors import ExportError
from onnxpipe.ops.detect import BatchedNMS, _kept_scores, _top_k
from onnxpipe.ops.torchvision_detection import _Detector, _exporting

__all__ = ["TorchvisionFasterRCNN", "TorchvisionRetinaNet"]

_FLOAT_LOWEST = float(torch.finfo(torch.float32).min)


def _table(results: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    rows = [torch.cat([torch.full((len(r["scores"]), 1), float(b)), r["boxes"], r["scores"][:, None],
                       r["labels"][:, None].to(torch.float32)], dim=1) for b, r in enumerate(results)]
    return torch.cat(rows, dim=0) if rows else torch.zeros(0, 7)


class _GeneralizedRCNN(_Detector):
    """Shared by the wrappers: torchvision's transform, anchors and the table in input-image pixels."""

    onnxpipe_detection_outputs: dict[str, int | None]
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: Any, anchor_generator: Any, nms: BatchedNMS) -> None:
        super().__init__()
        t = model.transform
        if t.fixed_size is not None:
            raise ExportError(f"torchvision {type(model).__name__}: a fixed_size transform is not supported")
        self.model = model.eval()
        self.min_size = float(t.min_size[-1])  # eval uses the last of the training choices
        self.max_size = float(t.max_size)
        self.divisible = int(t.size_divisible)
        self.register_buffer("mean", torch.tensor(t.image_mean, dtype=torch.float32)[:, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(t.image_std, dtype=torch.float32)[:, None, None], persistent=False)
        for i, base in enumerate(anchor_generator.cell_anchors):
            self.register_buffer(f"cell_anchors_{i}", base.to(torch.float32), persistent=False)
        self.levels = len(anchor_generator.cell_anchors)
        self.nms = nms
        self.nms.score_threshold.range = (0.0, 1.0)  # scores are probabilities
        self.onnxpipe_detection_outputs = {"detections": nms.max_detections}


    def _thresholds(self) -> tuple[Any, tuple[str, str]]:
        """The object holding ``score_thresh`` / ``nms_thresh`` and their attribute names."""
        return self.model, ("score_thresh", "nms_thresh")

    def _torchvision(self, images: torch.Tensor) -> torch.Tensor:
        holder, (score_attr, iou_attr) = self._thresholds()
        saved = getattr(holder, score_attr), getattr(holder, iou_attr)
        setattr(holder, score_attr, float(self.nms.score_threshold.value()))
        setattr(holder, iou_attr, float(self.nms.iou_threshold.value()))
        try:
            with torch.no_grad():
                return _table(self.model(list(images)))
        finally:
            setattr(holder, score_attr, saved[0])
            setattr(holder, iou_attr, saved[1])

    def _graph(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- transform ----------------------------------------------------------------------------------------

    def _resized_size(self, images: torch.Tensor) -> torch.Tensor:
        """int64 ``[2]``: torchvision's ``floor(side * scale)``, in float64 as its Python arithmetic."""
        h = torch.full((), images.shape[2], dtype=torch.float64)
        w = torch.full((), images.shape[3], dtype=torch.float64)
        # tensor / tensor: torch's `float / tensor` is a reciprocal and a product, one rounding more than Python's
        # division (320 / 77 would differ in the last bit, and 77 rows would become 320, not torchvision's 319)
        lo = torch.full((), self.min_size, dtype=torch.float64)
        hi = torch.full((), self.max_size, dtype=torch.float64)
        scale = torch.minimum(lo / torch.minimum(h, w), hi / torch.maximum(h, w))
        return torch.floor(torch.stack([h, w]) * scale).to(torch.int64)

    def _transform(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch [N, 3, PH, PW], resized (h', w') int64 [2])``: normalized, resized, zero-padded."""
        size = self._resized_size(images)
        d = self.divisible
        padded = (size + (d - 1)) // d * d
        if _exporting():
            # data-dependent sizes: unbacked symbols, with the bounds the shape checks of later ops need
            oh, ow, ph, pw = (cast(int, v.item()) for v in (size[0], size[1], padded[0], padded[1]))
            for v in (oh, ow):
                torch._check(v >= 1)
            for v in (ph, pw):
                torch._check(v >= d)
        else:
            oh, ow, ph, pw = (int(v) for v in (size[0], size[1], padded[0], padded[1]))
        x = F.interpolate((images - self.mean) / self.std, size=(oh, ow), mode="bilinear", align_corners=False)
        return F.pad(x, (0, pw - ow, 0, ph - oh)), size

    def _anchors(self, padded: torch.Tensor, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level ``[H * W * A, 4]``: ``AnchorGenerator`` for the padded batch (strides ``size // grid``)."""
        out = []
        for i, f in enumerate(features):
            gh, gw = f.shape[-2], f.shape[-1]
            sy, sx = padded.shape[-2] // gh, padded.shape[-1] // gw
            shift_x = torch.arange(0, gw, dtype=torch.int64) * sx
            shift_y = torch.arange(0, gh, dtype=torch.int64) * sy
            yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
            xx, yy = xx.reshape(-1), yy.reshape(-1)
            shifts = torch.stack((xx, yy, xx, yy), dim=1).to(torch.float32)
            base = getattr(self, f"cell_anchors_{i}")
            out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return out

    @staticmethod
    def _clip(boxes: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """``clip_boxes_to_image`` to the resized ``(h', w')``."""
        hw = size.to(boxes.dtype)
        zero = torch.zeros((), dtype=boxes.dtype)
        upper = torch.stack([hw[1], hw[0], hw[1], hw[0]])
        return torch.minimum(torch.maximum(boxes, zero), upper)

    @staticmethod
    def _not_small(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
        return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)

    @staticmethod
    def _to_input(det: torch.Tensor, images: torch.Tensor, size: torch.Tensor, label_offset: int) -> torch.Tensor:
        """Detections from resized to input pixels (``resize_boxes``' float32 ratios), labels shifted."""
        h = torch.full((), images.shape[2], dtype=torch.float32)
        w = torch.full((), images.shape[3], dtype=torch.float32)
        hw = size.to(torch.float32)
        rw, rh = w / hw[1], h / hw[0]
        return torch.stack([det[:, 0], det[:, 1] * rw, det[:, 2] * rh, det[:, 3] * rw, det[:, 4] * rh, det[:, 5],
                            det[:, 6] + label_offset], dim=1)

    @staticmethod
    def _one_hot_scores(scores: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
        """``[B, N]`` scores of class ``labels [B, N]`` -> ``[B, N, classes]``, 0 for the other classes."""
        grid = torch.arange(classes, dtype=labels.dtype)
        return torch.where(labels.unsqueeze(-1) == grid, scores.unsqueeze(-1), torch.zeros((), dtype=scores.dtype))


def _pad_rows(x: torch.Tensor, rows: int, value: float) -> torch.Tensor:
    """``x [B, M, ...]`` with ``rows`` more rows of ``value`` along dim 1 (a constant top-k then always fits)."""
    pad = torch.full((x.shape[0], rows, *x.shape[2:]), value, dtype=x.dtype)
    return torch.cat([x, pad], dim=1)


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B, M, D]`` rows ``index [B, K]`` -> ``[B, K, D]``."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(index.shape[0], index.shape[1], x.shape[-1]))


class TorchvisionFasterRCNN(_GeneralizedRCNN):
    """A torchvision ``FasterRCNN`` in eval mode: float32 ``images [N, 3, H, W]`` in [0, 1] -> ``{"detections"}``."""

    def __init__(self, model: Any) -> None:
        heads = model.roi_heads
        if heads.has_mask() or heads.keypoint_roi_pool is not None:
            raise ExportError(f"torchvision {type(model).__name__}: mask and keypoint heads are not supported")
        nms = BatchedNMS(iou_threshold=float(heads.nms_thresh), score_threshold=float(heads.score_thresh),
                         max_detections=int(heads.detections_per_img))
        super().__init__(model, model.rpn.anchor_generator, nms)
        rpn = model.rpn
        self.pre_nms = int(rpn._pre_nms_top_n["testing"])
        self.post_nms = min(int(rpn._post_nms_top_n["testing"]), self.pre_nms * self.levels)
        self.rpn_iou = float(rpn.nms_thresh)
        self.rpn_score = float(rpn.score_thresh)
        self.rpn_min_size = float(rpn.min_size)
        self._freeze_pooler_scales()

    def _thresholds(self) -> tuple[Any, tuple[str, str]]:
        return self.model.roi_heads, ("score_thresh", "nms_thresh")

    @torch.no_grad()
    def _freeze_pooler_scales(self) -> None:
        """``MultiScaleRoIAlign`` infers its scales at its first call and keeps them: fix them now (from a
        ``min_size`` square image, unless the model already ran) so the eager model and the file share them."""
        pool = self.model.roi_heads.box_roi_pool
        if pool.scales is None or pool.map_levels is None:
            from torchvision.ops.poolers import _filter_input, _setup_scales

            s = int(self.min_size)
            x = torch.zeros(1, 3, (s + self.divisible - 1) // self.divisible * self.divisible,
                            (s + self.divisible - 1) // self.divisible * self.divisible)
            feats = _filter_input(self.model.backbone(x), pool.featmap_names)
            pool.scales, pool.map_levels = _setup_scales(feats, [(s, s)], pool.canonical_scale, pool.canonical_level)
        self.roi_scales = [float(v) for v in pool.scales]
        mapper = pool.map_levels
        self.k_min, self.k_max = int(mapper.k_min), int(mapper.k_max)
        self.s0, self.lvl0, self.eps = float(mapper.s0), float(mapper.lvl0), float(mapper.eps)

    def _graph(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        x, size = self._transform(images)
        features = m.backbone(x)
        proposals, valid = self._proposals(x, list(features.values()), size)
        heads = m.roi_heads
        from torchvision.ops.poolers import _filter_input

        pooled = self._roi_align(_filter_input(features, heads.box_roi_pool.featmap_names), proposals)
        logits, regression = heads.box_predictor(heads.box_head(pooled))
        n, p, c = proposals.shape[0], proposals.shape[1], logits.shape[-1]
        boxes = heads.box_coder.decode_single(regression, proposals.reshape(-1, 4)).reshape(n, p, c, 4)
        boxes = self._clip(boxes, size)[:, :, 1:]  # class 0 is the background
        scores = F.softmax(logits, -1).reshape(n, p, c)[:, :, 1:]
        keep = valid.unsqueeze(-1) & self._not_small(boxes, 1e-2)
        scores = torch.where(keep, scores, torch.full((), -1.0))  # never above a threshold in [0, 1]
        labels = torch.arange(c - 1, dtype=torch.int64).expand(n, p, c - 1)
        det = self.nms(boxes.reshape(n, p * (c - 1), 4),
                       self._one_hot_scores(scores.reshape(n, -1), labels.reshape(n, -1), c - 1))
        return self._to_input(det, images, size, 1)

    def _proposals(self, x: torch.Tensor, features: list[torch.Tensor],
                   size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RPN: ``(proposals [N, P, 4], valid [N, P])``, the best first; invalid rows pad to ``P``."""
        from torchvision.models.detection.rpn import permute_and_flatten

        rpn = self.model.rpn
        objectness, deltas = rpn.head(features)
        anchors = self._anchors(x, features)
        n = x.shape[0]
        boxes, scores, levels = [], [], []
        for lvl, (obj, dlt, anc) in enumerate(zip(objectness, deltas, anchors)):
            a, h, w = obj.shape[1], obj.shape[2], obj.shape[3]
            obj = permute_and_flatten(obj, n, a, 1, h, w).reshape(n, -1)
            dlt = permute_and_flatten(dlt, n, a, 4, h, w)
            top, idx = _top_k(_pad_rows(obj, self.pre_nms, float("-inf")), self.pre_nms, _exporting())
            anc = _pad_rows(anc.unsqueeze(0), self.pre_nms, 0.0).expand(n, -1, 4)
            picked = rpn.box_coder.decode_single(_gather_rows(_pad_rows(dlt, self.pre_nms, 0.0), idx).reshape(-1, 4),
                                                 _gather_rows(anc, idx).reshape(-1, 4))
            boxes.append(picked.reshape(n, self.pre_nms, 4))
            scores.append(top)
            levels.append(torch.full((n, self.pre_nms), lvl, dtype=torch.int64))
        box = self._clip(torch.cat(boxes, dim=1), size)
        logit = torch.cat(scores, dim=1)
        prob = torch.sigmoid(logit)
        ok = (logit > float("-inf")) & self._not_small(box, self.rpn_min_size) & (prob >= self.rpn_score)
        level = torch.cat(levels, dim=1)
        per_level = torch.stack([torch.where(ok & (level == lvl), prob, float("-inf"))
                                 for lvl in range(self.levels)], dim=1)  # [N, L, M]: NonMaxSuppression's classes
        kept = _kept_scores(box, per_level, self.post_nms, torch.tensor(self.rpn_iou, dtype=torch.float32),
                            torch.tensor(_FLOAT_LOWEST, dtype=torch.float32), _exporting()).amax(dim=1)
        best, order = _top_k(kept, self.post_nms, _exporting())
        return _gather_rows(box, order), best > float("-inf")

    def _roi_align(self, features: list[torch.Tensor], proposals: torch.Tensor) -> torch.Tensor:
        """``MultiScaleRoIAlign``: every proposal pooled from its level (zeros where no level matches)."""
        pool = self.model.roi_heads.box_roi_pool
        n, p = proposals.shape[0], proposals.shape[1]
        rois = proposals.reshape(-1, 4)
        batch = torch.arange(n, dtype=torch.int64).unsqueeze(1).expand(n, p).reshape(-1)
        area = (rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])
        target = torch.floor(self.lvl0 + torch.log2(torch.sqrt(area) / self.s0) + torch.tensor(self.eps))
        level = torch.clamp(target, min=self.k_min, max=self.k_max).to(torch.int64) - self.k_min
        out_h, out_w = (int(v) for v in pool.output_size)
        result = None
        for lvl, (feat, scale) in enumerate(zip(features, self.roi_scales)):
            # the scale is a power of two: scaling the boxes first is exact, and RoiAlign's attribute stays 1
            pooled = _roi_align(feat, rois * scale, batch, out_h, out_w, int(pool.sampling_ratio))
            if result is None:
                result = torch.zeros_like(pooled)
            result = torch.where((level == lvl).reshape(-1, 1, 1, 1), pooled, result)
        if result is None:
            raise ExportError("torchvision FasterRCNN: MultiScaleRoIAlign found none of its feature maps")
        return result


def _roi_align(feat: torch.Tensor, rois: torch.Tensor, batch: torch.Tensor, out_h: int, out_w: int,
               sampling_ratio: int) -> torch.Tensor:
    """torchvision ``roi_align(aligned=False, spatial_scale=1)``; ONNX ``RoiAlign`` (output_half_pixel)."""
    if not _exporting():
        from torchvision.ops import roi_align

        return roi_align(feat, torch.cat([batch.to(rois.dtype).unsqueeze(1), rois], dim=1), (out_h, out_w),
                         spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=False)
    return torch.onnx.ops.symbolic(
        "RoiAlign", (feat, rois, batch),
        {"coordinate_transformation_mode": "output_half_pixel", "mode": "avg", "output_height": out_h,
         "output_width": out_w, "sampling_ratio": sampling_ratio, "spatial_scale": 1.0},
        dtype=feat.dtype, shape=(rois.shape[0], feat.shape[1], out_h, out_w),
    )


class TorchvisionRetinaNet(_GeneralizedRCNN):
    """A torchvision ``RetinaNet`` in eval mode: float32 ``images [N, 3, H, W]`` in [0, 1] -> ``{"detections"}``."""

    def __init__(self, model: Any) -> None:
        nms = BatchedNMS(iou_threshold=float(model.nms_thresh), score_threshold=float(model.score_thresh),
                         max_detections=int(model.detections_per_img))
        super().__init__(model, model.anchor_generator, nms)
        self.topk = int(model.topk_candidates)

    def _graph(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        x, size = self._transform(images)
        features = list(m.backbone(x).values())
        anchors = self._anchors(x, features)
        n = x.shape[0]
        boxes, scores, labels = [], [], []
        for feat, anc in zip(features, anchors):
            # the heads run per feature map (their GroupNorm too): one level at a time is the same computation
            logits = m.head.classification_head([feat])  # [N, HWA, C]
            regression = m.head.regression_head([feat])  # [N, HWA, 4]
            c = logits.shape[-1]
            prob = torch.sigmoid(logits).reshape(n, -1)
            # the best `topk` of all scores hold the best `topk` of those above any threshold: BatchedNMS then
            # applies the run-time threshold, as torchvision's filter-then-top-k does
            top, idx = _top_k(_pad_rows(prob, self.topk, -1.0), self.topk, _exporting())
            anchor_idx = torch.div(idx, c, rounding_mode="floor")
            rows = self.topk // c + 1
            regression = _pad_rows(regression, rows, 0.0)
            anc = _pad_rows(anc.unsqueeze(0), rows, 0.0).expand(n, -1, 4)
            decoded = m.box_coder.decode_single(_gather_rows(regression, anchor_idx).reshape(-1, 4),
                                                _gather_rows(anc, anchor_idx).reshape(-1, 4))
            boxes.append(decoded.reshape(n, self.topk, 4))
            scores.append(top)
            labels.append(idx - anchor_idx * c)
        box = self._clip(torch.cat(boxes, dim=1), size)
        classes = int(m.head.classification_head.num_classes)
        det = self.nms(box, self._one_hot_scores(torch.cat(scores, dim=1), torch.cat(labels, dim=1), classes))
        return self._to_input(det, images, size, 0)
