"""Image pre-processing: uint8 pixels in, normalized float NCHW out, exact in ONNX for any image size.

Pixels arrive as ``uint8`` HWC / NHWC (decoding JPEG/PNG stays outside the graph). :class:`ToFloat` turns
them into ``float32`` NCHW in [0, 1]; every other operator here takes and returns float ``[N, C, H, W]``
(or ``[C, H, W]``). Image sizes are dynamic: every size an operator derives from the input (shorter-side
resize, center-crop offsets, letterbox scale and padding) is computed in the graph from the input's shape,
never traced as a constant. Eager behaviour follows ``torchvision.transforms.v2`` (see docs/ops.md).

Exporter support: everything exports with the dynamo exporter (the default). The TorchScript exporter
handles only fixed-size, non-antialiased :class:`Resize` and the size-independent ops (ToFloat,
Normalize, ChannelOrder, Grayscale): it cannot lower antialiasing, and it traces derived sizes as constants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F

__all__ = ["CenterCrop", "ChannelOrder", "Grayscale", "Letterbox", "Normalize", "Resize", "ToFloat"]

_LAYOUTS = ("NHWC", "HWC", "NCHW", "CHW")
#: ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale
_LUMA = (0.2989, 0.587, 0.114)


def _check_size(name: str, size: object, *, allow_int: bool = True) -> tuple[int, ...]:
    """``size`` as a tuple of positive ints: ``(s,)`` for an int (when allowed), else ``(h, w)``."""
    if allow_int and isinstance(size, int) and not isinstance(size, bool):
        if size < 1:
            raise ValueError(f"{name}: expected a positive int, got {size!r}")
        return (size,)
    if (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        return (int(size[0]), int(size[1]))
    expected = "a positive int or (height, width) of positive ints" if allow_int else "(height, width) of positive ints"
    raise ValueError(f"{name}: expected {expected}, got {size!r}")


def _check_image(op: str, x: torch.Tensor, *, channels: int | None = None) -> None:
    """Trace-time checks of a float [N, C, H, W] / [C, H, W] input (rank, dtype, channels are static)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{op}: input 'images': expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(f"{op}: input 'images': expected [N, C, H, W] or [C, H, W], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"{op}: input 'images': expected a float tensor (use ToFloat first), got dtype {x.dtype}"
        )
    if channels is not None and x.shape[-3] != channels:
        raise ValueError(f"{op}: input 'images': expected {channels} channels (dim -3), got shape {list(x.shape)}")


def _as_batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    return (x.unsqueeze(0), True) if x.dim() == 3 else (x, False)


def _exporting() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


def _nearest_indices(in_size, out_size) -> torch.Tensor:
    """torch's legacy nearest source index, ``min(floor(dst * float32(in / out)), in - 1)``, in float32 math.

    Written out (not ONNX Resize nearest) because Resize computes ``dst / float32(out / in)``, which floors to
    the pixel before torch's whenever ``in / out`` is an integer (e.g. 21 -> 3: 7 * dst vs dst / 0.142857).
    """
    scale = torch.full((), in_size, dtype=torch.float32) / torch.full((), out_size, dtype=torch.float32)
    src = torch.floor(torch.arange(out_size, dtype=torch.float32) * scale).to(torch.int64)
    return torch.clamp(src, max=in_size - 1)


def _interpolate(x: torch.Tensor, size: tuple, mode: str, antialias: bool) -> torch.Tensor:
    """Resize [N, C, H, W] to ``size`` = (out_h, out_w) (ints, or SymInts while exporting)."""
    out_h, out_w = size
    if mode == "nearest":
        x = x.index_select(-2, _nearest_indices(x.shape[-2], out_h))
        return x.index_select(-1, _nearest_indices(x.shape[-1], out_w))
    # align_corners=False = ONNX Resize coordinate_transformation_mode "half_pixel" (also for an output of 1,
    # where "pytorch_half_pixel" would differ); antialias lowers to Resize(antialias=1, exclude_outside=1)
    if antialias and not _exporting():
        # torch's CPU antialias kernel (2.x) returns wrong values when out_w == 1 and the height changes
        # (the vertical pass on a width-1 tensor). Run the same two separable passes as two horizontal
        # passes: bitwise equal to torch wherever torch is right, and equal to ONNX Resize everywhere.
        y = F.interpolate(x, size=(x.shape[-2], out_w), mode="bilinear", align_corners=False, antialias=True)
        y = F.interpolate(y.transpose(-1, -2), size=(out_w, out_h), mode="bilinear", align_corners=False,
                          antialias=True)
        return y.transpose(-1, -2)
    return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=antialias)


class ToFloat(torch.nn.Module):
    """uint8 pixels -> float32 channels-first, in [0, 1] when ``scale`` (divided by 255).

    ``layout`` is the input's layout: ``"NHWC"`` ([N, H, W, C] -> [N, C, H, W]), ``"HWC"`` ([H, W, C] ->
    [C, H, W]), or ``"NCHW"`` / ``"CHW"`` (already channels-first: only the dtype changes).
    Equivalent to ``torchvision.transforms.v2.ToDtype(torch.float32, scale=True)`` after the permute.
    """

    def __init__(self, layout: str = "NHWC", scale: bool = True) -> None:
        super().__init__()
        if layout not in _LAYOUTS:
            raise ValueError(f"ToFloat: layout: expected one of {list(_LAYOUTS)}, got {layout!r}")
        if not isinstance(scale, bool):
            raise ValueError(f"ToFloat: scale: expected a bool, got {scale!r}")
        self.layout = layout
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"ToFloat: input 'images': expected uint8 pixels, got {got}")
        if images.dim() != len(self.layout):
            raise ValueError(
                f"ToFloat: input 'images': expected rank {len(self.layout)} ({self.layout}), "
                f"got shape {list(images.shape)}"
            )
        x = images.to(torch.float32)
        if self.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        elif self.layout == "HWC":
            x = x.permute(2, 0, 1)
        # multiply by the reciprocal, as torchvision does (x / 255 differs in the last bit for some values)
        return x * (1.0 / 255.0) if self.scale else x

    def describe(self) -> str:
        return f"ToFloat({self.layout})"


class Resize(torch.nn.Module):
    """Resize float [N, C, H, W] / [C, H, W] images (torchvision.transforms.v2.Resize semantics).

    ``size``: ``(height, width)`` -> exactly that size; an int ``s`` -> the shorter side becomes ``s`` and the
    longer one ``floor(s * long / short)`` (aspect kept; torchvision's rule), computed in the graph.
    ``mode``: ``"bilinear"`` (align_corners=False) or ``"nearest"`` (torch's legacy nearest: floor).
    ``antialias``: low-pass filter when downscaling (bilinear only); default True for bilinear, like
    torchvision v2. Needs the dynamo exporter (ONNX Resize ``antialias=1``, opset >= 18).
    """

    def __init__(self, size: int | Sequence[int], mode: str = "bilinear", antialias: bool | None = None) -> None:
        super().__init__()
        self.size = _check_size("Resize: size", size)
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"Resize: mode: expected 'bilinear' or 'nearest', got {mode!r}")
        if antialias is None:
            antialias = mode == "bilinear"
        if not isinstance(antialias, bool):
            raise ValueError(f"Resize: antialias: expected a bool or None, got {antialias!r}")
        if antialias and mode == "nearest":
            raise ValueError("Resize: antialias: expected False (or None) with mode='nearest', got True")
        self.mode = mode
        self.antialias = antialias

    def output_size(self, height, width):  # ints eagerly, SymInts while exporting
        """The output ``(height, width)`` for an input of ``height`` x ``width``."""
        if len(self.size) == 2:
            return self.size
        s = self.size[0]
        short = torch.sym_min(height, width)
        # branch-free so dynamic shapes keep both orientations: the shorter side gets s * short // short = s
        return (s * height // short, s * width // short)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_image("Resize", images)
        x, added = _as_batch(images)
        y = _interpolate(x, self.output_size(x.shape[-2], x.shape[-1]), self.mode, self.antialias)
        return y.squeeze(0) if added else y

    def describe(self) -> str:
        size = "x".join(map(str, self.size)) if len(self.size) == 2 else f"shorter={self.size[0]}"
        return f"Resize({size}, {self.mode}{', antialias' if self.antialias else ''})"


def _crop_indices(length, crop: int) -> torch.Tensor:
    """Source indices of a centered crop of ``crop`` along an axis of ``length`` (may start < 0 / end > length).

    torchvision: when the image is at least the crop, start = round((length - crop) / 2) with round half to
    even; when smaller, the image is zero-padded by ``(crop - length) // 2`` before and the rest after.
    """
    d_pos = torch.sym_max(length - crop, 0)
    d_neg = torch.sym_max(crop - length, 0)
    half = d_pos // 2
    start = half + (d_pos % 2) * (half % 2) - d_neg // 2  # round-half-even(d_pos / 2), or -pad_before
    return torch.arange(crop, dtype=torch.int64) + start


class CenterCrop(torch.nn.Module):
    """Crop the center ``(height, width)`` (an int: square) of float [N, C, H, W] / [C, H, W] images.

    torchvision.transforms.v2.CenterCrop semantics, including zero padding where the image is smaller than
    the crop. Output: [N, C, height, width], same dtype.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__()
        s = _check_size("CenterCrop: size", size)
        self.size = s * 2 if len(s) == 1 else s

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_image("CenterCrop", images)
        x = images
        for axis, crop in ((-2, self.size[0]), (-1, self.size[1])):
            length = x.shape[axis]
            idx = _crop_indices(length, crop)
            inside = (idx >= 0) & (idx < length)
            picked = x.index_select(axis, idx.clamp(0, length - 1))
            mask = inside.view(-1, 1) if axis == -2 else inside
            x = torch.where(mask, picked, torch.zeros((), dtype=x.dtype))
        return x

    def describe(self) -> str:
        return f"CenterCrop({self.size[0]}x{self.size[1]})"


class Letterbox(torch.nn.Module):
    """Fit images into a ``size`` x ``size`` square, aspect kept, padded with ``fill`` (YOLO-style).

    ``forward(images)``: float32 [N, C, H, W] -> ``(image, scale, pad)``:

    * ``image``: float32 [N, C, size, size]. The image is resized (bilinear, antialias by default) to
      ``new_h x new_w`` where the longer side becomes ``size`` and the shorter ``round_half_up(short * size /
      long)`` (at least 1), then placed at ``(left, top) = ((size - new_w) // 2, (size - new_h) // 2)`` with
      ``fill`` around it.
    * ``scale``: float32 [] (0-dim, one value for the batch): ``size / max(H, W)``.
    * ``pad``: float32 [2]: ``(left, top)`` in letterboxed pixels (integer-valued).

    A point ``(x, y)`` of the letterboxed image maps back to the original as
    ``((x - pad[0]) / scale, (y - pad[1]) / scale)``; boxes ``[x1, y1, x2, y2]`` likewise, then clip to
    ``[0, W] x [0, H]``.
    """

    def __init__(
        self, size: int, fill: float = 114 / 255, mode: str = "bilinear", antialias: bool | None = None
    ) -> None:
        super().__init__()
        self.size = _check_size("Letterbox: size", size)[0] if isinstance(size, int) else None
        if self.size is None:
            raise ValueError(f"Letterbox: size: expected a positive int (the square's side), got {size!r}")
        if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not math.isfinite(fill):
            raise ValueError(f"Letterbox: fill: expected a finite number, got {fill!r}")
        self.fill = float(fill)
        self.resize = Resize((1, 1), mode=mode, antialias=antialias)  # validates mode/antialias
        self.mode = self.resize.mode
        self.antialias = self.resize.antialias

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_image("Letterbox", images)
        if images.dim() != 4:
            raise ValueError(f"Letterbox: input 'images': expected [N, C, H, W], got shape {list(images.shape)}")
        s = self.size
        h, w = images.shape[-2], images.shape[-1]
        long = torch.sym_max(h, w)
        new_h = torch.sym_max((2 * h * s + long) // (2 * long), 1)
        new_w = torch.sym_max((2 * w * s + long) // (2 * long), 1)
        y = _interpolate(images, (new_h, new_w), self.mode, self.antialias)
        left = (s - new_w) // 2
        top = (s - new_h) // 2
        # the amounts are SymInts while exporting: the padding is computed in the graph
        y = F.pad(y, cast(list[int], [left, s - new_w - left, top, s - new_h - top]), value=self.fill)
        scale = cast(torch.Tensor, torch.full((), s, dtype=torch.float32) / long)
        pad = torch.stack([torch.full((), left, dtype=torch.float32), torch.full((), top, dtype=torch.float32)])
        return y, scale, pad

    def describe(self) -> str:
        return f"Letterbox({self.size})"


class Normalize(torch.nn.Module):
    """``(x - mean[c]) / std[c]`` per channel of float [N, C, H, W] / [C, H, W] (torchvision Normalize).

    ``mean`` and ``std`` have one value per channel; the input must have ``len(mean)`` channels.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = _float_vector("Normalize: mean", mean)
        std_t = _float_vector("Normalize: std", std)
        if len(mean_t) != len(std_t):
            raise ValueError(
                f"Normalize: std: expected one value per channel like mean ({len(mean_t)}), got {len(std_t)} values"
            )
        if any(v <= 0 for v in std_t):
            raise ValueError(f"Normalize: std: expected positive values, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean_t, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std_t, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_image("Normalize", images, channels=self.mean.shape[0])
        return (images - self.mean) / self.std

    def describe(self) -> str:
        return f"Normalize({self.mean.shape[0]} channels)"


def _float_vector(name: str, values: object) -> list[float]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) == 0:
        raise ValueError(f"{name}: expected a non-empty sequence of numbers (one per channel), got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name}: expected finite numbers, got {values!r}")
        out.append(float(v))
    return out


class ChannelOrder(torch.nn.Module):
    """Reorder channels, e.g. ``ChannelOrder("RGB", "BGR")`` (its own inverse).

    ``source`` / ``target`` name the channels (the same letters, each once). ``dim`` is the channel axis:
    -3 for [N, C, H, W] / [C, H, W] (after ToFloat), -1 for uint8 [N, H, W, C] before it. Any dtype.
    """

    order: torch.Tensor

    def __init__(self, source: str = "RGB", target: str = "BGR", dim: int = -3) -> None:
        super().__init__()
        if not isinstance(source, str) or len(set(source)) != len(source) or not source:
            raise ValueError(f"ChannelOrder: source: expected distinct channel letters like 'RGB', got {source!r}")
        if not isinstance(target, str) or sorted(target) != sorted(source):
            raise ValueError(
                f"ChannelOrder: target: expected a reordering of {source!r}, got {target!r}"
            )
        if dim not in (-1, -3):
            raise ValueError(f"ChannelOrder: dim: expected -3 (channels-first) or -1 (channels-last), got {dim!r}")
        self.source, self.target, self.dim = source, target, dim
        self.register_buffer(
            "order", torch.tensor([source.index(c) for c in target], dtype=torch.int64), persistent=False
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() < 3 or images.shape[self.dim] != len(self.source):
            raise ValueError(
                f"ChannelOrder: input 'images': expected {len(self.source)} channels at dim {self.dim}, "
                f"got shape {list(images.shape)}"
            )
        return images.index_select(self.dim, self.order)

    def describe(self) -> str:
        return f"ChannelOrder({self.source}->{self.target})"


class Grayscale(torch.nn.Module):
    """RGB float [N, 3, H, W] / [3, H, W] -> luma (0.2989 R + 0.587 G + 0.114 B), like torchvision.

    ``num_output_channels``: 1 ([N, 1, H, W]) or 3 (luma repeated).
    """

    def __init__(self, num_output_channels: int = 1) -> None:
        super().__init__()
        if num_output_channels not in (1, 3) or isinstance(num_output_channels, bool):
            raise ValueError(f"Grayscale: num_output_channels: expected 1 or 3, got {num_output_channels!r}")
        self.num_output_channels = num_output_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_image("Grayscale", images, channels=3)
        r, g, b = images.unbind(dim=-3)
        luma = (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)
        if self.num_output_channels == 3:
            luma = luma.expand(images.shape)
        return luma

    def describe(self) -> str:
        return f"Grayscale({self.num_output_channels})"
