"""Tables to score: handwritten digits as PNG bytes, MiniLM sentences as strings (tests and examples/bench_score.py).

The digits are scikit-learn's ``load_digits`` (1,797 8 x 8 gray images, shipped with the package): each row
draws one, upscales it, places it at a random offset on a noisy background of the requested size and encodes
it as PNG, so 10,000 rows are 10,000 different images. Seeded: the same arguments give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

__all__ = ["digit_images", "digits_table", "encode_png", "sentences_table"]


def digit_images(n: int, sizes: Sequence[tuple[int, int]] = ((28, 28),), seed: int = 0) -> list[np.ndarray]:
    """``n`` uint8 RGB images [h, w, 3] of digits, sizes drawn from ``sizes`` (each side >= 20)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits().images  # [1797, 8, 8], values 0..16
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = sizes[int(rng.integers(len(sizes)))]
        side = int(rng.integers(14, min(h, w) - 3))
        glyph = (digits[int(rng.integers(len(digits)))] * (255 / 16)).astype(np.uint8)
        glyph = np.asarray(Image.fromarray(glyph).resize((side, side), Image.BILINEAR), dtype=np.float64)
        canvas = rng.normal(20, 12, size=(h, w))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        canvas[y:y + side, x:x + side] += glyph
        gray = np.clip(canvas, 0, 255).astype(np.uint8)
        out.append(np.repeat(gray[:, :, None], 3, axis=2))
    return out


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def digits_table(n: int, sizes: Sequence[tuple[int, int]] = ((28, 28),), seed: int = 0) -> pa.Table:
    """``id`` int64 and ``image`` binary (PNG) for ``n`` digit images."""
    images = digit_images(n, sizes, seed)
    return pa.table({"id": pa.array(np.arange(n, dtype=np.int64)),
                     "image": pa.array([encode_png(a) for a in images], pa.binary())})


def sentences_table(n: int, seed: int = 0) -> pa.Table:
    """``id`` int64 and ``text`` string: ``examples.minilm.sentences(n)``."""
    from examples.minilm import sentences

    return pa.table({"id": pa.array(np.arange(n, dtype=np.int64)), "text": pa.array(sentences(n, seed), pa.string())})
