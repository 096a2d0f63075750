"""torchvision detection models as the ``model`` stage: images -> the ``[K, 7]`` detection table.

``export_pipeline(pre=SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.transforms(), model=ssdlite, ...)`` works as
written: the exporter hands a torchvision detector to :func:`translate_model`, which wraps it in a module whose

* eager forward runs the torchvision model itself (its own transform and post-processing, thresholds set from
  the run-time inputs) and lays its list of dicts out as the table, so verification compares the file with
  torchvision;
* exported forward is the same computation in batched tensor ops: normalize, resize to the model's fixed size,
  backbone and heads, box decoding against the anchors (constant for a fixed size), softmax, the per-class
  top-k candidates, :class:`onnxpipe.ops.detect.BatchedNMS` (one ``NonMaxSuppression``), the boxes scaled back
  to the input image.

Output ``detections`` float32 ``[K, 7]``: ``(batch_index, x1, y1, x2, y2, score, label)`` as in
``ops/detect.py``, ``label`` the torchvision class index; sorted by image, then score descending. Run-time
inputs ``score_threshold`` (the model's ``score_thresh``, in [0, 1]) and ``iou_threshold`` (``nms_thresh``).

Supported: SSD models (``ssd300_vgg16``, ``ssdlite320_mobilenet_v3_large``); Faster R-CNN and RetinaNet
(``fasterrcnn_mobilenet_v3_large_320_fpn``, ``retinanet_resnet50_fpn_v2``, ...: :mod:`onnxpipe.ops.torchvision_rcnn`,
whose resize follows the input's size); segmentation models. Others raise ``ExportError``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from onnxpipe.errors import ExportError
from onnxpipe.ops.detect import BatchedNMS

__all__ = ["SUPPORTED_MODELS", "TorchvisionSSD", "TorchvisionSegmentation", "translate_model"]

SUPPORTED_MODELS = ("SSD (ssd300_vgg16, ssdlite320_mobilenet_v3_large)",
                    "FasterRCNN (fasterrcnn_mobilenet_v3_large_320_fpn, fasterrcnn_mobilenet_v3_large_fpn, "
                    "fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2)",
                    "RetinaNet (retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2)",
                    "segmentation: LRASPP, FCN, DeepLabV3 (per-pixel labels)")


def _exporting() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


class _Detector(torch.nn.Module):
    """A torchvision detector as a model stage: eager, torchvision itself (``_torchvision``); exported, the same
    steps in batched tensor ops (``_graph``); both give the ``[K, 7]`` detection table."""

    model: Any

    def describe(self) -> str:
        return f"torchvision {type(self.model).__name__}"

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
            got = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{self.describe()}: input 'images': expected float [N, 3, H, W] in [0, 1], got {got}")
        if not _exporting():
            return {"detections": self._torchvision(images)}
        return {"detections": self._graph(images)}

    def _torchvision(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _graph(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TorchvisionSSD(_Detector):
    """A torchvision ``SSD`` in eval mode: float32 ``images [N, 3, H, W]`` in [0, 1] -> ``{"detections"}``."""

    #: {output: max rows per image}: verification compares it as a detection table (rows may swap among
    #: near-equal scores, and at the cut-off of a full list); set per instance
    onnxpipe_detection_outputs: dict[str, int | None]
    anchors: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: Any) -> None:
        super().__init__()
        t = model.transform
        if t.fixed_size is None:
            raise ExportError(f"torchvision {type(model).__name__}: only SSDs with a fixed input size are supported")
        self.model = model.eval()
        self.size = (int(t.fixed_size[1]), int(t.fixed_size[0]))  # interpolate's (h, w), as torchvision passes it
        self.register_buffer("mean", torch.tensor(t.image_mean, dtype=torch.float32)[:, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(t.image_std, dtype=torch.float32)[:, None, None], persistent=False)
        self.register_buffer("anchors", self._anchors(), persistent=False)
        self.nms = BatchedNMS(iou_threshold=float(model.nms_thresh), score_threshold=float(model.score_thresh),
                              max_detections=int(model.detections_per_img))
        self.nms.score_threshold.range = (0.0, 1.0)  # scores are softmax probabilities; 0 marks "other class"
        self.topk = int(model.topk_candidates)
        self.onnxpipe_detection_outputs = {"detections": int(model.detections_per_img)}

    @torch.no_grad()
    def _anchors(self) -> torch.Tensor:
        """The default boxes for the fixed input size (the same for every image)."""
        from torchvision.models.detection.image_list import ImageList

        x = torch.zeros(1, 3, *self.size)
        features = self.model.backbone(x)
        features = list(features.values()) if isinstance(features, dict) else [features]
        return self.model.anchor_generator(ImageList(x, [self.size]), features)[0]


    def _torchvision(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        saved = m.score_thresh, m.nms_thresh
        m.score_thresh = float(self.nms.score_threshold.value())
        m.nms_thresh = float(self.nms.iou_threshold.value())
        try:
            with torch.no_grad():
                results = m(list(images))
        finally:
            m.score_thresh, m.nms_thresh = saved
        rows = [torch.cat([torch.full((len(r["scores"]), 1), float(b)), r["boxes"], r["scores"][:, None],
                           r["labels"][:, None].to(torch.float32)], dim=1) for b, r in enumerate(results)]
        return torch.cat(rows, dim=0) if rows else torch.zeros(0, 7)

    def _graph(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        n = images.shape[0]
        x = F.interpolate((images - self.mean) / self.std, size=self.size, mode="bilinear", align_corners=False)
        features = m.backbone(x)
        features = list(features.values()) if isinstance(features, dict) else [features]
        head = m.head(features)
        a = self.anchors.shape[0]
        boxes = m.box_coder.decode_single(head["bbox_regression"].reshape(-1, 4),
                                          self.anchors.repeat(n, 1)).reshape(n, a, 4)
        boxes = torch.stack([boxes[..., 0].clamp(0, self.size[1]), boxes[..., 1].clamp(0, self.size[0]),
                             boxes[..., 2].clamp(0, self.size[1]), boxes[..., 3].clamp(0, self.size[0])], dim=-1)
        scores = F.softmax(head["cls_logits"], dim=-1)[..., 1:]  # class 0 is the background
        c = scores.shape[-1]
        k = min(self.topk, a)
        top, idx = scores.transpose(1, 2).topk(k, dim=-1)  # per class: the k best anchors  [N, C, k]
        cand = torch.gather(boxes.unsqueeze(1).expand(n, c, a, 4), 2, idx.unsqueeze(-1).expand(n, c, k, 4))
        one_hot = torch.eye(c, dtype=top.dtype).reshape(1, c, 1, c)
        cand_scores = (top.unsqueeze(-1) * one_hot).reshape(n, c * k, c)  # each candidate scores only its class
        det = self.nms(cand.reshape(n, c * k, 4), cand_scores)
        h = torch.full((), images.shape[2], dtype=torch.float32)
        w = torch.full((), images.shape[3], dtype=torch.float32)
        rw = w / torch.tensor(float(self.size[1]))
        rh = h / torch.tensor(float(self.size[0]))
        return torch.stack([det[:, 0], det[:, 1] * rw, det[:, 2] * rh, det[:, 3] * rw, det[:, 4] * rh, det[:, 5],
                            det[:, 6] + 1], dim=1)


class TorchvisionSegmentation(torch.nn.Module):
    """A torchvision segmentation model (LRASPP, FCN, DeepLabV3) in eval mode: float32 ``images [N, 3, H, W]``
    (normalized: its weights' preset in ``pre``) -> ``{"labels": int64 [N, H, W]}``, the arg-max class of every
    pixel at the input's size (the models upsample their logits to it)."""

    #: {output: fraction of pixels}: an arg-max flips where two classes' logits are within float noise of
    #: each other (measured: 1 pixel of 12,707 on a random-weights LRASPP), so verification allows that many
    onnxpipe_label_map_outputs = {"labels": 1e-3}

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"labels": self.model(images)["out"].argmax(dim=1)}

    def describe(self) -> str:
        return f"torchvision {type(self.model).__name__}"


def translate_model(model: Any) -> torch.nn.Module:
    """The exportable wrapper for a torchvision detection or segmentation model; ExportError otherwise."""
    from torchvision.models.detection.faster_rcnn import FasterRCNN
    from torchvision.models.detection.mask_rcnn import MaskRCNN
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNN
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.segmentation import DeepLabV3, FCN, LRASPP

    from onnxpipe.ops.torchvision_rcnn import TorchvisionFasterRCNN, TorchvisionRetinaNet

    if isinstance(model, SSD):
        return TorchvisionSSD(model)
    if isinstance(model, FasterRCNN) and not isinstance(model, (MaskRCNN, KeypointRCNN)):
        return TorchvisionFasterRCNN(model)
    if isinstance(model, RetinaNet):
        return TorchvisionRetinaNet(model)
    if isinstance(model, (LRASPP, FCN, DeepLabV3)):
        return TorchvisionSegmentation(model)
    raise ExportError(
        f"torchvision {type(model).__name__} cannot be exported as a model stage yet; supported: "
        f"{', '.join(SUPPORTED_MODELS)} (docs/ops.md)"
    )
