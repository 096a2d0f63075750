"""Example 5: a torchvision classifier as users bring it: ``resnet18`` with its weights' own preset as ``pre``.

    images [batch, 3, height, width] uint8 (torchvision's layout, any size)
      -> pre:   ResNet18_Weights.IMAGENET1K_V1.transforms()  (resize shorter side 256, antialiased, rounded to
                uint8; center crop 224; /255; ImageNet normalize), translated to ONNX bit-exact (docs/ops.md)
      -> model: torchvision.models.resnet18
      -> post:  Softmax -> TopK(5, the ImageNet class names)
      -> score [batch, 5] float32, label_id [batch, 5] int64, label [batch, 5] string

No download: the network is ``resnet18(weights=None)`` initialised from a fixed seed (the preset needs no
weights file), so the labels are meaningless but every number is reproducible; what the demo shows is that
the file gives the same top-5 as eager torchvision at sizes from 1x1 to 4K.

    onnxpipe export examples.tv_classifier:factory -o resnet18.onnx
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onnxpipe import Chain
from onnxpipe.ops.classify import Softmax, TopK

__all__ = ["build_model", "demo", "factory", "images", "vector_cases"]

SEED = 0
TOP_K = 5


def build_model() -> torch.nn.Module:
    from torchvision.models import resnet18

    torch.manual_seed(SEED)
    return resnet18(weights=None).eval()


def images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, 3, h, w]: smooth blobs plus noise (something to resize that is not flat)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 3, h // 16 + 1, w // 16 + 1)).repeat(16, 2).repeat(16, 3)[:, :, :h, :w]
    return np.clip(coarse + rng.integers(-25, 26, (n, 3, h, w)), 0, 255).astype(np.uint8)


def factory() -> dict[str, Any]:
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    return {
        "pre": weights.transforms(),
        "model": build_model(),
        "post": Chain(Softmax(), TopK(TOP_K, labels=list(weights.meta["categories"]))),
        "example_inputs": {"images": torch.from_numpy(images(1, 150, 200))},
        "dynamic_axes": {"images": {0: "batch", 2: "height", 3: "width"}},
        "metadata": {"name": "tv_classifier"},
        "tolerances": {"float32": (1e-5, 1e-4)},
    }


def vector_cases() -> list[tuple[str, dict[str, np.ndarray]]]:
    return [("batch1-64x48", {"images": images(1, 64, 48, seed=1)}),
            ("batch2-31x57", {"images": images(2, 31, 57, seed=2)}),
            ("1x1", {"images": images(1, 1, 1, seed=3)})]


def demo(path: Path) -> None:
    """Top-5 of the exported file vs eager torchvision (preset + resnet18) on sizes from 1x1 to 4K."""
    from torchvision.models import ResNet18_Weights

    from onnxpipe_runtime import Pipeline

    pre, model = ResNet18_Weights.IMAGENET1K_V1.transforms(), build_model()
    sizes = [(1, 1), (1, 700), (333, 500), (480, 640), (2160, 3840)]
    same = 0
    with Pipeline.load(path) as pipe:
        for k, (h, w) in enumerate(sizes):
            img = images(1, h, w, seed=10 + k)
            start = time.perf_counter()
            got = pipe.run(images=img)
            ms = (time.perf_counter() - start) * 1e3
            with torch.no_grad():
                want = torch.softmax(model(pre(torch.from_numpy(img))), -1).topk(TOP_K).indices[0].tolist()
            same += got["label_id"][0].tolist() == want
            print(f"  {h:>4}x{w:<4} top-5 {got['label'][0].tolist()}  eager torchvision: "
                  f"{'same' if got['label_id'][0].tolist() == want else want}  ({ms:.0f} ms)")
    print(f"tv_classifier: identical top-5 to eager torchvision on {same} of {len(sizes)} sizes "
          "(random weights: labels are meaningless)")
