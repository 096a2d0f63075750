"""Example 6: a torchvision detector as users bring it: ``ssdlite320_mobilenet_v3_large`` with its preset.

    images [batch, 3, height, width] uint8 (any size)
      -> pre:   SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.transforms()  (/255)
      -> model: the torchvision SSDLite itself: its normalize + resize to 320x320, backbone, heads, box decoding,
                per-class top-k, batched NMS, boxes scaled back to the input (docs/ops.md)
      -> detections [K, 7] float32 (batch_index, x1, y1, x2, y2, score, label)
    run-time inputs: score_threshold (the model's score_thresh), iou_threshold (nms_thresh)

No download: ``weights=None, weights_backbone=None``, every conv re-initialised from a fixed seed (torchvision's
own init makes the features vanish, so every score would be 1/91); detections are therefore meaningless
boxes, but the file reproduces torchvision's output rows.

    onnxpipe export examples.tv_detector:factory -o ssdlite.onnx
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from examples.tv_classifier import images

__all__ = ["build_model", "demo", "factory", "reinitialise", "vector_cases"]

SEED = 0
SCORE_THRESHOLD = 0.2
DETECTIONS = 30
#: background + 10 classes (COCO's 91 would make eager torchvision, which verification runs, 9x slower)
NUM_CLASSES = 11


def reinitialise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """He-initialised convolutions and identity batch norms, seeded: torchvision's own init with weights=None makes
    features vanish, so every output would be alike. In place; returns ``model``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.weight.fill_(1.0)
                m.bias.zero_()
    return model


def build_model() -> torch.nn.Module:
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                                          score_thresh=SCORE_THRESHOLD, detections_per_img=DETECTIONS).eval()
    reinitialise(model, SEED)
    with torch.no_grad():
        for m in model.head.classification_head.modules():  # softer logits: scores spread over (0, 1)
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(0.3)
    return model


def factory() -> dict[str, Any]:
    from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights

    return {
        "pre": SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.transforms(),
        "model": build_model(),
        "example_inputs": {"images": torch.from_numpy(images(1, 120, 160, seed=1))},
        "dynamic_axes": {"images": {0: "batch", 2: "height", 3: "width"}},
        "metadata": {"name": "tv_detector"},
        # boxes are pixels of a random-weights network: float noise of the resize and convolutions reaches
        # a few hundredths of a pixel
        "tolerances": {"detections": (0.1, 1e-3)},
    }


def vector_cases() -> list[tuple[str, dict[str, np.ndarray]]]:
    return [("batch1-96x128", {"images": images(1, 96, 128, seed=4)}),
            ("batch2-57x43-threshold0.3", {"images": images(2, 57, 43, seed=5),
                                        "score_threshold": np.array(0.3, np.float32)})]


def demo(path: Path) -> None:
    """Rows of the exported file vs eager torchvision on a few sizes, and a threshold changed at run time."""
    from onnxpipe.ops.torchvision_detection import TorchvisionSSD
    from onnxpipe_runtime import Pipeline

    eager = TorchvisionSSD(build_model())
    with Pipeline.load(path) as pipe:
        for k, (h, w) in enumerate([(240, 320), (480, 360), (1, 1)]):
            img = images(1, h, w, seed=20 + k)
            got = pipe.run(images=img)["detections"]
            want = eager(torch.from_numpy(img).float() / 255)["detections"].numpy()
            ok = got.shape == want.shape and np.allclose(got, want, atol=0.1, rtol=1e-3)
            print(f"  {h:>4}x{w:<4} {len(got)} detections; eager torchvision: {'same rows' if ok else 'DIFFERENT'}")
            for row in got[:2]:
                print(f"      label {int(row[6]):>2}  [{row[1]:6.1f} {row[2]:6.1f} {row[3]:6.1f} {row[4]:6.1f}]  "
                      f"score {row[5]:.3f}")
        strict = pipe.run(images=images(1, 240, 320, seed=20), score_threshold=0.8)["detections"]
    print(f"tv_detector: score_threshold=0.8 at run time (default {SCORE_THRESHOLD}): {len(strict)} detections, "
          "no re-export")
