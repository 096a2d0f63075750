"""Example 2: an object detector with NMS, any-size uint8 images in, boxes in the image's own pixels out.

    image [batch, height, width, 3] uint8
      -> pre:   ToFloat -> Letterbox(64)               (square 64 x 64, aspect kept, gray bands)
      -> model: TinyDetector                            (a small CNN, one 8 x 8 grid of anchor-free cells)
      -> post:  decode boxes -> BatchedNMS -> UnLetterbox (per-class NMS, boxes mapped back and clipped)
      -> detections [K, 7] float32: (batch_index, x1, y1, x2, y2, score, class_id)

    optional inputs: score_threshold (default 0.3), iou_threshold (default 0.45)

The data is generated (seeded): filled rectangles, discs and triangles of random colours and sizes on noisy
backgrounds of random size; the ground-truth boxes are the exact pixel extents of the drawn shapes. Each grid
cell predicts objectness, the object's center inside the cell, its width/height and its class; the cell holding
an object's center is responsible for it. Training (:func:`train`) takes ~30 s on 2 CPUs; the weights are
committed in ``examples/weights/detector.pt``.

    python -m examples.detector --train                          # retrain, overwrite the weights
    onnxpipe export examples.detector:factory -o detector.onnx
    python -m examples.detector detector.onnx                    # the demo
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from onnxpipe.ops.detect import BatchedNMS, UnLetterbox, box_cxcywh_to_xyxy
from onnxpipe.ops.image import Letterbox, ToFloat

__all__ = [
    "CLASSES",
    "DetectorPost",
    "Preprocess",
    "TinyDetector",
    "demo",
    "factory",
    "generate",
    "load_detector",
    "train",
    "vector_cases",
]

CLASSES = ["rectangle", "disc", "triangle"]
SIZE = 64  # letterbox side
GRID = 8  # cells per side
STRIDE = SIZE // GRID
WEIGHTS = Path(__file__).resolve().parent / "weights" / "detector.pt"
#: image sides seen in training (inclusive); the demo also uses larger images
TRAIN_SIDES = (40, 112)


# -- data ----------------------------------------------------------------------------------------------------


def _shape_mask(kind: int, h: int, w: int, x0: int, y0: int, bw: int, bh: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:  # rectangle
        return (xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh)
    if kind == 1:  # disc (an ellipse filling the box)
        cx, cy, rx, ry = x0 + bw / 2 - 0.5, y0 + bh / 2 - 0.5, bw / 2, bh / 2
        return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    # triangle: apex at the top center, base at the bottom
    t = (yy - y0 + 0.5) / bh  # 0 at the top, 1 at the bottom
    half = t * bw / 2
    cx = x0 + bw / 2
    return (t >= 0) & (t <= 1) & (xx + 0.5 >= cx - half) & (xx + 0.5 <= cx + half)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes a [N, 4] vs b [M, 4] -> [N, M] (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def draw(h: int, w: int, rng: np.random.Generator, max_objects: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One noisy ``h x w`` RGB image with 0..max_objects shapes.

    Returns ``image`` uint8 [h, w, 3], ``boxes`` float32 [n, 4] (xyxy pixel extents), ``labels`` int64 [n].
    """
    base = rng.integers(40, 200, size=3)
    image = np.clip(base + rng.normal(0, 25, size=(h, w, 3)), 0, 255)
    boxes: list[list[float]] = []
    labels: list[int] = []
    short = min(h, w)
    for _ in range(int(rng.integers(0, max_objects + 1))):
        for _attempt in range(10):
            bw = int(rng.integers(max(6, short // 4), max(7, short * 5 // 8) + 1))
            bh = int(np.clip(bw * rng.uniform(0.7, 1.4), 6, h - 1))
            bw = min(bw, w - 1)
            x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            kind = int(rng.integers(0, len(CLASSES)))
            mask = _shape_mask(kind, h, w, x0, y0, bw, bh)
            ys, xs = np.nonzero(mask)
            if xs.size == 0:
                continue
            box = [xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0]
            if boxes and _iou(np.array([box]), np.array(boxes)).max() > 0.15:
                continue
            color = rng.integers(0, 256, size=3)
            while np.abs(color - base).max() < 70:
                color = rng.integers(0, 256, size=3)
            image[mask] = color + rng.normal(0, 8, size=(int(mask.sum()), 3))
            boxes.append([float(v) for v in box])
            labels.append(kind)
            break
    return (np.clip(image, 0, 255).astype(np.uint8), np.array(boxes, np.float32).reshape(-1, 4),
            np.array(labels, np.int64))


def generate(n: int, sides: tuple[int, int], seed: int, *, same_size: bool = False
             ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``n`` images of random height/width in ``sides`` (one size for all when ``same_size``)."""
    rng = np.random.default_rng(seed)
    out = []
    h, w = _side_pair(sides, rng)
    for _ in range(n):
        if not same_size:
            h, w = _side_pair(sides, rng)
        out.append(draw(h, w, rng))
    return out


def _side_pair(sides: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) in ``sides``, aspect ratio at most 1.6."""
    while True:
        h, w = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        if max(h, w) <= 1.6 * min(h, w):
            return h, w


# -- the pipeline's stages ----------------------------------------------------------------------------------


class Preprocess(torch.nn.Module):
    """uint8 ``image`` [B, H, W, 3] -> ``{"image": [B, 3, 64, 64], "scale", "pad", "image_size"}``.

    ``scale`` / ``pad`` are Letterbox's; ``image_size`` is float32 ``(H, W)``, for clipping boxes in ``post``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.to_float = ToFloat("NHWC")
        self.letterbox = Letterbox(SIZE)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = image.shape[1], image.shape[2]
        boxed, scale, pad = self.letterbox(self.to_float(image))
        size = torch.stack([torch.full((), h, dtype=torch.float32), torch.full((), w, dtype=torch.float32)])
        return {"image": boxed, "scale": scale, "pad": pad, "image_size": size}

    def describe(self) -> str:
        return f"ToFloat -> Letterbox({SIZE}) (+ image size)"


class TinyDetector(torch.nn.Module):
    """Letterboxed float [B, 3, 64, 64] -> ``raw`` [B, 5 + classes, 8, 8] per cell:
    (objectness logit, center x / y logits within the cell, log width / height in cells, class logits).

    ``forward`` also passes Letterbox's ``scale``, ``pad`` and ``image_size`` through to ``post``.
    """

    def __init__(self, num_classes: int = len(CLASSES), width: int = 48) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int) -> list[torch.nn.Module]:
            return [torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                    torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]

        self.body = torch.nn.Sequential(
            *block(3, 16, 2), *block(16, 32, 2), *block(32, w, 2), *block(w, w, 1), *block(w, w, 1),
        )
        self.head = torch.nn.Conv2d(w, 5 + num_classes, 1)

    def raw(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image))

    def forward(self, image: torch.Tensor, scale: torch.Tensor, pad: torch.Tensor,
                image_size: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"raw": self.raw(image), "scale": scale, "pad": pad, "image_size": image_size}


def decode(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``raw`` [B, 5 + C, G, G] -> ``boxes`` [B, G*G, 4] xyxy in letterbox pixels, ``scores`` [B, G*G, C]
    (objectness x class probability)."""
    b, ch, g, _ = raw.shape
    p = raw.flatten(2).transpose(1, 2)  # [B, G*G, 5 + C], cells in row-major order
    cells = torch.arange(GRID * GRID, dtype=torch.int64)
    gx = (cells % GRID).to(torch.float32)
    gy = torch.div(cells, GRID, rounding_mode="floor").to(torch.float32)
    cx = (gx + torch.sigmoid(p[..., 1])) * STRIDE
    cy = (gy + torch.sigmoid(p[..., 2])) * STRIDE
    wh = torch.exp(p[..., 3:5].clamp(max=4.0)) * STRIDE
    boxes = box_cxcywh_to_xyxy(torch.stack([cx, cy, wh[..., 0], wh[..., 1]], dim=-1))
    scores = torch.sigmoid(p[..., :1]) * torch.softmax(p[..., 5:], dim=-1)
    return boxes, scores


class DetectorPost(torch.nn.Module):
    """``raw`` head output + Letterbox parameters -> ``{"detections": [K, 7]}`` in input-image pixels."""

    onnxpipe_labels = CLASSES

    def __init__(self, score_threshold: float = 0.3, iou_threshold: float = 0.45, max_detections: int = 20) -> None:
        super().__init__()
        self.nms = BatchedNMS(iou_threshold=iou_threshold, score_threshold=score_threshold,
                              max_detections=max_detections)
        self.unletterbox = UnLetterbox(clip=True)

    def forward(self, raw: torch.Tensor, scale: torch.Tensor, pad: torch.Tensor,
                image_size: torch.Tensor) -> dict[str, torch.Tensor]:
        boxes, scores = decode(raw)
        detections = self.nms(boxes, scores)
        return {"detections": self.unletterbox(detections, scale, pad, image_size)}

    def describe(self) -> str:
        return f"decode -> {self.nms.describe()} -> {self.unletterbox.describe()}"


# -- training ------------------------------------------------------------------------------------------------


def _letterboxed_batch(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], pre: Preprocess
                       ) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    """Letterbox each image (sizes differ) and move its boxes into letterbox pixels."""
    images, boxes, labels = [], [], []
    with torch.no_grad():
        for img, bx, lab in samples:
            out = pre(torch.from_numpy(img)[None])
            s, p = float(out["scale"]), out["pad"].numpy()
            images.append(out["image"][0])
            boxes.append(bx * s + np.concatenate([p, p]).astype(np.float32))
            labels.append(lab)
    return torch.stack(images), boxes, labels


def _targets(boxes: list[np.ndarray], labels: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
    """Per-cell targets: objectness [B, G*G], center offsets [B, G*G, 2], log size [B, G*G, 2], class [B, G*G]."""
    n = len(boxes)
    obj = np.zeros((n, GRID * GRID), np.float32)
    off = np.zeros((n, GRID * GRID, 2), np.float32)
    size = np.zeros((n, GRID * GRID, 2), np.float32)
    cls = np.full((n, GRID * GRID), -100, np.int64)  # ignore_index where no object
    for i, (bx, lab) in enumerate(zip(boxes, labels)):
        for box, c in zip(bx, lab):
            cx, cy = (box[0] + box[2]) / 2 / STRIDE, (box[1] + box[3]) / 2 / STRIDE
            gx, gy = min(int(cx), GRID - 1), min(int(cy), GRID - 1)
            k = gy * GRID + gx
            obj[i, k] = 1.0
            off[i, k] = (np.clip(cx - gx, 0.01, 0.99), np.clip(cy - gy, 0.01, 0.99))
            size[i, k] = np.log(np.maximum((box[2:] - box[:2]) / STRIDE, 1e-3))
            cls[i, k] = c
    return tuple(torch.from_numpy(a) for a in (obj, off, size, cls))


def _loss(raw: torch.Tensor, obj: torch.Tensor, off: torch.Tensor, size: torch.Tensor, cls: torch.Tensor
          ) -> torch.Tensor:
    p = raw.flatten(2).transpose(1, 2)  # [B, G*G, 5 + C]
    pos = obj > 0
    loss = F.binary_cross_entropy_with_logits(p[..., 0], obj, pos_weight=torch.tensor(4.0))
    if pos.any():
        loss = loss + 2 * F.binary_cross_entropy_with_logits(p[..., 1:3][pos], off[pos])
        loss = loss + F.smooth_l1_loss(p[..., 3:5][pos], size[pos])
        loss = loss + F.cross_entropy(p[..., 5:][pos], cls[pos])
    return loss


def train(path: Path = WEIGHTS, epochs: int = 10, images: int = 1800, batch: int = 32, seed: int = 0
          ) -> dict[str, float]:
    """Train TinyDetector on generated, letterboxed images and save its state_dict to ``path``."""
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same floating-point reductions on every machine
    try:
        t0 = time.perf_counter()
        c0 = time.process_time()
        pre = Preprocess().eval()
        x, boxes, labels = _letterboxed_batch(generate(images, TRAIN_SIDES, seed=1000), pre)
        targets = _targets(boxes, labels)
        model = TinyDetector()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        steps = epochs * (images // batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
        order_rng = np.random.default_rng(seed)
        step = 0
        for epoch in range(epochs):
            order = torch.from_numpy(order_rng.permutation(images))
            for start in range(0, images - batch + 1, batch):
                idx = order[start:start + batch]
                xb = x[idx]
                if order_rng.random() < 0.5:  # horizontal flip: mirror the image and the targets' columns
                    xb = xb.flip(-1)
                    tb = [t[idx].view(batch, GRID, GRID, *t.shape[2:]).flip(2).reshape(t[idx].shape) for t in targets]
                    tb[1] = tb[1].clone()
                    tb[1][..., 0] = torch.where(tb[0] > 0, 1 - tb[1][..., 0], tb[1][..., 0])
                else:
                    tb = [t[idx] for t in targets]
                loss = _loss(model.raw(xb), *tb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
            print(f"epoch {epoch:2d}  loss {loss.item():.4f}")
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
    finally:
        torch.set_num_threads(threads)
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)
    metrics = evaluate(_eager_runner(pre, model, DetectorPost().eval()), generate(200, TRAIN_SIDES, seed=1))
    print(f"trained in {seconds:.1f} s ({cpu:.1f} s CPU); validation: recall@0.5 {metrics['recall']:.2%}, precision "
          f"{metrics['precision']:.2%}, mean IoU {metrics['mean_iou']:.3f}; wrote {path}")
    return {"seconds": seconds, **metrics}


def load_detector(path: Path = WEIGHTS) -> tuple[Preprocess, TinyDetector, DetectorPost]:
    """The committed weights as the three pipeline stages (eval mode)."""
    if not path.is_file():
        raise FileNotFoundError(f"detector weights {str(path)!r} are missing: run python -m examples.detector --train")
    model = TinyDetector()
    model.load_state_dict(torch.load(path, weights_only=True))
    return Preprocess().eval(), model.eval(), DetectorPost().eval()


# -- evaluation ------------------------------------------------------------------------------------------------


def _eager_runner(pre: Preprocess, model: TinyDetector, post: DetectorPost):  # noqa: ANN202
    def run(image: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return post(**model(**pre(torch.from_numpy(image))))["detections"].numpy()
    return run


def evaluate(run: Any, samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], iou: float = 0.5
             ) -> dict[str, float]:
    """Greedy matching of detections to ground truth (same class, IoU >= ``iou``), one image at a time."""
    matched_ious: list[float] = []
    n_gt = n_det = 0
    for image, gt, labels in samples:
        det = run(image[None])
        n_gt += len(gt)
        n_det += len(det)
        used: set[int] = set()
        for row in det:  # rows come sorted by score
            if len(gt) == 0:
                break
            ious = _iou(row[None, 1:5], gt)[0]
            ious[labels != int(row[6])] = 0
            ious[list(used)] = 0
            j = int(np.argmax(ious))
            if ious[j] >= iou:
                used.add(j)
                matched_ious.append(float(ious[j]))
    return {
        "recall": len(matched_ious) / max(n_gt, 1),
        "precision": len(matched_ious) / max(n_det, 1),
        "mean_iou": float(np.mean(matched_ious)) if matched_ious else 0.0,
        "ground_truth": n_gt,
        "detections": n_det,
    }


# -- the examples contract -------------------------------------------------------------------------------------


def _batch(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    return np.stack([s[0] for s in samples])


def factory() -> dict[str, Any]:
    """export_pipeline arguments (all but ``path``)."""
    pre, model, post = load_detector()
    example = _batch(generate(2, (56, 80), seed=7, same_size=True))
    verify_inputs = [
        {"image": _batch(generate(1, (150, 150), seed=8, same_size=True))},  # larger than anything in training
        {"image": _batch(generate(3, (33, 33), seed=9, same_size=True))},
        {"image": np.full((1, 20, 90, 3), 127, dtype=np.uint8)},  # flat gray: no detection (K = 0)
        {"image": np.zeros((2, 64, 1, 3), dtype=np.uint8)},  # one pixel wide
    ]
    return {
        "pre": pre,
        "model": model,
        "post": post,
        "example_inputs": {"image": torch.from_numpy(example)},
        "dynamic_axes": {"image": {0: "batch", 1: "height", 2: "width"}, "detections": {0: "detections"}},
        "output_names": ["detections"],
        "metadata": {"name": "detector", "detections": "batch_index,x1,y1,x2,y2,score,class_id"},
        "verify_inputs": verify_inputs,
    }


def vector_cases() -> list[tuple[str, dict[str, np.ndarray]]]:
    """Golden-vector cases: one image; a batch of two; an image with nothing in it and thresholds given."""
    return [
        ("batch1", {"image": _batch(generate(1, (44, 60), seed=31, same_size=True))}),
        ("batch2", {"image": _batch(generate(2, (36, 52), seed=32, same_size=True))}),
        ("empty_with_thresholds", {
            "image": np.full((1, 24, 40, 3), 90, dtype=np.uint8),
            "score_threshold": np.array(0.5, dtype=np.float32),
            "iou_threshold": np.array(0.3, dtype=np.float32),
        }),
    ]


def demo(path: Path) -> None:
    """Detect shapes in held-out images (sizes up to 2x training) with the exported file and eager PyTorch."""
    from onnxpipe_runtime import Pipeline

    pre, model, post = load_detector()
    eager = _eager_runner(pre, model, post)
    samples = generate(120, (40, 200), seed=99)
    agree, max_diff = 0, 0.0
    with Pipeline.load(path) as pipe:
        def exported(image: np.ndarray) -> np.ndarray:
            return pipe.run({"image": image})["detections"]

        for image, _, _ in samples:
            got, want = exported(image[None]), eager(image[None])
            if got.shape == want.shape and np.allclose(got, want, atol=1e-3, rtol=1e-4):
                agree += 1
                max_diff = max(max_diff, float(np.abs(got - want).max(initial=0.0)))
        m_file = evaluate(exported, samples)
        m_eager = evaluate(eager, samples)
        strict = evaluate(lambda im: pipe.run({"image": im, "score_threshold": np.array(0.5, np.float32)})
                          ["detections"], samples)
        image, gt, labels = samples[0]
        first = exported(image[None])
    print(f"detector: {Path(path).name}; {len(samples)} held-out images {TRAIN_SIDES[0]}..200 px per side "
          f"(training: {TRAIN_SIDES[0]}..{TRAIN_SIDES[1]}), {m_file['ground_truth']} shapes")
    print(f"recall@IoU0.5  exported {m_file['recall']:.2%}   eager {m_eager['recall']:.2%};  precision exported "
          f"{m_file['precision']:.2%};  mean IoU of matches {m_file['mean_iou']:.3f}")
    print(f"exported == eager (same rows, |diff| <= 1e-3) on {agree} of {len(samples)} images; largest difference "
          f"{max_diff:.2g} px/score")
    print(f"image 0 ({image.shape[0]}x{image.shape[1]}): ground truth")
    for box, c in zip(gt, labels):
        print(f"  {CLASSES[c]:>9}  [{box[0]:6.1f} {box[1]:6.1f} {box[2]:6.1f} {box[3]:6.1f}]")
    print("detections (exported file):")
    for row in first:
        print(f"  {CLASSES[int(row[6])]:>9}  [{row[1]:6.1f} {row[2]:6.1f} {row[3]:6.1f} {row[4]:6.1f}]  "
              f"score {row[5]:.3f}")
    print(f"score_threshold=0.5 given at run time (default {post.nms.score_threshold.default}): recall "
          f"{strict['recall']:.2%}, precision {strict['precision']:.2%} (no re-export)")


def _main(argv: list[str]) -> int:
    if argv == ["--train"]:
        train()
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m examples.detector --train | python -m examples.detector EXPORTED.onnx   (export it "
              "with: onnxpipe export examples.detector:factory -o EXPORTED.onnx)", file=sys.stderr)
        return 2
    demo(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
