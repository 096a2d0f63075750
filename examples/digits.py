"""Example 1: an image classifier, any-size RGB pixels in, the 3 best digit labels out, all in one file.

    image [batch, height, width, 3] uint8 (RGB, any size)
      -> pre:   ToFloat -> Grayscale -> Resize(16x16, antialias) -> Normalize
      -> model: DigitsCNN (2 conv blocks + 2 linear layers, 16x16x1 -> 10 logits)
      -> post:  Softmax -> TopK(3, labels "0".."9", "unknown" below score_threshold = 0.5)
      -> score [batch, 3] float32, label_id [batch, 3] int64 (-1: unknown), label [batch, 3] string

The data is scikit-learn's bundled digits (1797 8x8 images, 0..16, no download). :func:`render` turns them
into RGB uint8 pictures of any size (white-ish ink of a random tint on a dark background, bilinear
upscaling). Training (:func:`train`, seeded, one thread, ~15 s) sees renders at a few sizes between 8x8 and
28x28 pushed through the same eager pre-processing; the demo classifies held-out digits rendered at 32x32
and 20x24, sizes never seen in training. Weights: ``examples/weights/digits.pt``.

    python -m examples.digits --train                        # retrain, overwrite the weights
    onnxpipe export examples.digits:factory -o digits.onnx
    python -m examples.digits digits.onnx                    # the demo
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from onnxpipe import Chain
from onnxpipe.ops.classify import Softmax, TopK
from onnxpipe.ops.image import Grayscale, Normalize, Resize, ToFloat

__all__ = ["LABELS", "DigitsCNN", "demo", "factory", "load_digits_data", "postprocess", "preprocess", "render",
           "train", "vector_cases"]

LABELS = [str(d) for d in range(10)]
WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits.pt"
INPUT_SIZE = 16
#: mean / std of the training renders after grayscale + resize (pixels in [0, 1])
MEAN, STD = 0.30, 0.37
TOP_K = 3
THRESHOLD = 0.5
#: (height, width) of the training renders; the demo uses other sizes
TRAIN_SIZES = ((8, 8), (12, 16), (28, 28), (20, 14))
DEMO_SIZES = ((32, 32), (20, 24))
SPLIT_SEED = 0
N_TEST = 360


def preprocess() -> Chain:
    """uint8 RGB [N, H, W, 3] (any H, W) -> float32 [N, 1, 16, 16], normalized."""
    return Chain(ToFloat("NHWC"), Grayscale(), Resize((INPUT_SIZE, INPUT_SIZE), antialias=True),
                 Normalize([MEAN], [STD]))


def postprocess() -> Chain:
    """logits [N, 10] -> {score, label_id, label} [N, 3]; ``score_threshold`` is a run-time input."""
    return Chain(Softmax(), TopK(TOP_K, LABELS, score_threshold=THRESHOLD))


class DigitsCNN(torch.nn.Module):
    """[N, 1, 16, 16] float32 -> [N, 10] logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = torch.nn.Linear(32 * 4 * 4, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def load_digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels): 8x8 float 0..16, a seeded split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data.target))
    test, train_ = order[:N_TEST], order[N_TEST:]
    return data.images[train_], data.target[train_], data.images[test], data.target[test]


def render(images: np.ndarray, height: int, width: int, seed: int) -> np.ndarray:
    """8x8 digits (0..16) -> uint8 RGB [N, height, width, 3]: tinted ink on a dark background."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    ink = torch.from_numpy(rng.uniform(0.75, 1.0, size=(len(images), 3, 1, 1)).astype(np.float32))
    paper = torch.from_numpy(rng.uniform(0.0, 0.08, size=(len(images), 3, 1, 1)).astype(np.float32))
    rgb = paper + (ink - paper) * x
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def train(path: Path = WEIGHTS, epochs: int = 8, batch: int = 64, seed: int = 0) -> dict[str, float]:
    """Train DigitsCNN on renders of the training split; write the state_dict to ``path``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and faster than 2 busy-waiting threads on a shared machine
    try:
        return _train(path, epochs, batch, seed)
    finally:
        torch.set_num_threads(threads)


def _train(path: Path, epochs: int, batch: int, seed: int) -> dict[str, float]:
    start = time.perf_counter()
    torch.manual_seed(seed)
    images, labels, test_images, test_labels = load_digits_data()
    pre = preprocess()
    with torch.no_grad():
        xs = torch.cat([pre(torch.from_numpy(render(images, h, w, seed=100 + i)))
                        for i, (h, w) in enumerate(TRAIN_SIZES)])
    ys = torch.from_numpy(np.tile(labels, len(TRAIN_SIZES))).long()
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(ys), generator=gen).split(batch):
            loss = F.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        test = pre(torch.from_numpy(render(test_images, 32, 32, seed=7)))
        acc = float((model(test).argmax(1).numpy() == test_labels).mean())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, path)
    seconds = time.perf_counter() - start
    loss_value = float(loss.detach())
    print(f"digits: trained in {seconds:.1f} s, loss {loss_value:.3f}, held-out accuracy at 32x32 {acc:.3f}; "
          f"wrote {path}")
    return {"seconds": seconds, "accuracy": acc, "loss": loss_value}


def load_model(path: Path = WEIGHTS) -> DigitsCNN:
    model = DigitsCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def factory() -> dict[str, Any]:
    """export_pipeline arguments (all but ``path``)."""
    _, _, test_images, _ = load_digits_data()
    example = render(test_images[:2], 28, 28, seed=1)
    return {
        "pre": preprocess(),
        "model": load_model(),
        "post": postprocess(),
        "example_inputs": {"image": torch.from_numpy(example)},
        "dynamic_axes": {"image": {0: "batch", 1: "height", 2: "width"}},
        "metadata": {"name": "digits"},
        "verify_inputs": [
            {"image": render(test_images[2:3], 8, 8, seed=2)},  # the native size, batch 1
            {"image": render(test_images[3:6], 20, 24, seed=3)},
            {"image": np.full((1, 1, 1, 3), 255, dtype=np.uint8)},  # a single pixel
            {"image": render(test_images[6:7], 64, 5, seed=4)},  # extreme aspect ratio
        ],
    }


def vector_cases() -> list[tuple[str, dict[str, np.ndarray]]]:
    """Golden vectors: batch 1 at 28x28; batch 2 at 20x24 with a strict threshold; a 1x1 image."""
    _, _, test_images, _ = load_digits_data()
    return [
        ("batch1_28x28", {"image": render(test_images[10:11], 28, 28, seed=10)}),
        ("batch2_20x24_threshold", {"image": render(test_images[11:13], 20, 24, seed=11),
                                    "score_threshold": np.array(0.9, dtype=np.float32)}),
        ("pixel_1x1", {"image": np.array([[[[30, 200, 90]]]], dtype=np.uint8)}),
    ]


def _eager(pre: Chain, model: DigitsCNN, post: Chain, image: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = post(model(pre(torch.from_numpy(image))))
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


def demo(path: Path) -> None:
    """Classify held-out digits rendered at sizes unseen in training, with the exported file (no torch)."""
    from onnxpipe_runtime import Pipeline

    _, _, test_images, test_labels = load_digits_data()
    pre, model, post = preprocess(), load_model(), postprocess()
    with Pipeline.load(path) as pipe:
        for k, (h, w) in enumerate(DEMO_SIZES):
            images = render(test_images, h, w, seed=50 + k)
            out = pipe.run({"image": images})
            eager = _eager(pre, model, post, images)
            top1 = out["label_id"][:, 0]
            acc = float((top1 == test_labels).mean())
            unknown = float((top1 < 0).mean())
            known = top1 >= 0
            acc_known = float((top1[known] == test_labels[known]).mean()) if known.any() else float("nan")
            same = all(np.array_equal(out[n], eager[n]) for n in ("label_id", "label"))
            diff = float(np.abs(out["score"] - eager["score"]).max())
            print(f"  {len(images)} held-out digits at {h}x{w} RGB: top-1 accuracy {acc:.3f} "
                  f"({unknown:.1%} 'unknown' below {THRESHOLD}; {acc_known:.3f} of the rest), "
                  f"labels identical to eager PyTorch: {same}, max |score - eager| {diff:.1e}")
            if k == 0:
                for i in range(4):
                    pairs = ", ".join(f"{lab} {s:.2f}" for lab, s in zip(out["label"][i], out["score"][i], strict=True))
                    print(f"    digit {test_labels[i]}: {pairs}")
        strict = pipe.run({"image": render(test_images[:8], 32, 32, seed=9),
                           "score_threshold": np.array(0.999, dtype=np.float32)})
        print(f"  with score_threshold=0.999 per call: top-1 labels {list(strict['label'][:, 0])}")


def _main(argv: list[str]) -> int:
    if argv == ["--train"]:
        train()
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m examples.digits --train | FILE.onnx (run the demo on an exported file)",
              file=sys.stderr)
        return 2
    demo(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
