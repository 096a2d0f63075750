"""torchvision's own transforms as the ``pre`` stage, translated to exact ONNX.

``export_pipeline(pre=ResNet18_Weights.IMAGENET1K_V1.transforms(), model=resnet, ...)`` works as written: the
exporter hands every torchvision transform it meets to :func:`translate`, which returns an ONNX-native stage
(:class:`TorchvisionTransform`) whose graph computes what the transform computes and whose eager behaviour *is*
the transform (verification compares the file with torchvision itself).

Input: ``uint8 [N, C, H, W]`` (torchvision's layout), any N, H, W. Supported (docs/ops.md):

* presets: ``ImageClassification``, ``SemanticSegmentation``, ``ObjectDetection``;
* ``transforms.Compose`` / ``transforms.v2.Compose`` of ``Resize`` (bilinear with antialias; an int = shorter
  side, or ``(h, w)``), ``CenterCrop``, ``Normalize``, ``ConvertImageDtype(float32)``,
  ``v2.ToDtype(float32, scale=True)``, ``v2.ToImage`` / ``v2.ToPureTensor`` (no-ops on tensors).

The antialiased resize reproduces torch's CPU kernels (``_upsample_bilinear2d_aa``). v1 on uint8 (and any
float input): the float32 weights term by term (scale, support, center, window and the normalisation by a
running sum), the separable passes (width, then height) and its accumulation order, each multiply-add fused as
the AVX2 build does (emulated in float64: the product is exact, one rounding of the sum), then (uint8) rounded
half to even, as torchvision does. v2 on uint8: torch's fixed-point uint8 kernel (what v2 calls on AVX2,
AVX512 and arm64 CPUs): float64 weights scaled to int16 at the axis' precision, integer sums, ``+ 2^(p-1) >> p``,
clamped to uint8 after each pass; exact in integers. A ``CenterCrop`` right after a ``Resize`` is folded into it: only the kept
output pixels are computed (identical values; a 1x700 image resized to 256 x 179200 never exists in memory).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from onnxpipe.errors import ExportError
from onnxpipe.stages import OnnxStage

__all__ = ["SUPPORTED", "TorchvisionTransform", "is_torchvision_transform", "translate"]

#: what translate() accepts, by class name (the error for anything else lists these)
SUPPORTED = (
    "ImageClassification (preset)", "SemanticSegmentation (preset)", "ObjectDetection (preset)",
    "Compose / v2.Compose", "Resize (bilinear, antialias=True; int or (h, w); no max_size; v1 and v2, uint8 or float)",
    "CenterCrop",
    "Normalize", "ConvertImageDtype(torch.float32)", "v2.ToDtype(torch.float32, scale=True)",
    "v2.ToImage", "v2.ToPureTensor",
)


def is_torchvision_transform(obj: Any) -> bool:
    return type(obj).__module__.startswith(("torchvision.transforms", "torchvision.models"))


class _Builder:
    """Names every tensor it creates (``<prefix><n>``) so graph code reads as data flow, not string juggling."""

    def __init__(self, prefix: str = "tv") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._ids = itertools.count()
        self.prefix = prefix

    def name(self, hint: str = "t") -> str:
        return f"{self.prefix}_{hint}_{next(self._ids)}"

    def op(self, op_type: str, *inputs: str, hint: str = "", **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def const(self, value: Any, dtype: Any, hint: str = "c") -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(onnx.numpy_helper.from_array(arr, name))
        return name

    def f32(self, v: float) -> str:
        return self.const(v, np.float32, "f")

    def f64(self, v: float) -> str:
        return self.const(v, np.float64, "d")

    def i64(self, v: Any) -> str:
        return self.const(v, np.int64, "i")


# -- the antialiased resize ---------------------------------------------------------------------------------

def _aa_weights(g: _Builder, in_size: str, out_size: str, index: str) -> tuple[str, str, str]:
    """Weights of torch's antialiased bilinear kernel (float32) for output positions ``index`` (int64 [M]).

    Returns ``(xmin [M] int64, weights [M, K] float32, K [1] int64)``; weights past each window are 0.
    """
    f, d, i = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64
    scale = g.op("Div", g.op("Cast", in_size, to=f), g.op("Cast", out_size, to=f), hint="scale")
    up = g.op("Less", scale, g.f32(1.0))  # upsampling: support 1, no widening of the filter
    support = g.op("Where", up, g.f32(1.0), scale, hint="support")  # interp_size / 2 * scale, in float32
    invscale = g.op("Where", up, g.f32(1.0),
                    g.op("Cast", g.op("Div", g.f64(1.0), g.op("Cast", scale, to=d)), to=f), hint="invscale")
    k = g.op("Add", g.op("Mul", g.op("Cast", g.op("Ceil", support), to=i), g.i64(2)), g.i64(1), hint="K")
    k1 = g.op("Reshape", k, g.i64([1]))
    # center = float(scale * (i + 0.5)) computed in double, as the kernel's mixed expression
    center = g.op("Cast", g.op("Mul", g.op("Cast", scale, to=d),
                               g.op("Add", g.op("Cast", index, to=d), g.f64(0.5))), to=f, hint="center")

    def edge(sign_op: str) -> str:  # int64(double(center -/+ support) + 0.5), truncated toward zero
        return g.op("Cast", g.op("Add", g.op("Cast", g.op(sign_op, center, support), to=d), g.f64(0.5)), to=i)

    xmin = g.op("Max", edge("Sub"), g.i64(0), hint="xmin")
    xsize = g.op("Sub", g.op("Min", edge("Add"), in_size), xmin)
    xsize = g.op("Max", g.op("Min", xsize, k), g.i64(0), hint="xsize")
    j = g.op("Range", g.i64(0), k, g.i64(1), hint="j")  # [K]
    xmin_col = g.op("Unsqueeze", xmin, g.i64([1]))
    pos = g.op("Cast", g.op("Add", g.op("Unsqueeze", j, g.i64([0])), xmin_col), to=f)  # float(j + xmin)
    dist = g.op("Sub", pos, g.op("Unsqueeze", center, g.i64([1])))  # float32
    arg = g.op("Cast", g.op("Mul", g.op("Add", g.op("Cast", dist, to=d), g.f64(0.5)),
                            g.op("Cast", invscale, to=d)), to=f)
    x = g.op("Abs", arg)
    w = g.op("Where", g.op("Less", x, g.f32(1.0)), g.op("Sub", g.f32(1.0), x), g.f32(0.0))
    inside = g.op("Less", g.op("Unsqueeze", j, g.i64([0])), g.op("Unsqueeze", xsize, g.i64([1])))
    w = g.op("Where", inside, w, g.f32(0.0), hint="w_raw")
    # total_w += w in order: CumSum is a running float32 sum; its last column is the kernel's total
    total = g.op("Gather", g.op("CumSum", w, g.i64(1)), g.op("Sub", k, g.i64(1)), axis=1, hint="total")
    nonzero = g.op("Not", g.op("Equal", total, g.f32(0.0)))
    safe = g.op("Where", nonzero, total, g.f32(1.0))
    w = g.op("Where", g.op("Unsqueeze", nonzero, g.i64([1])),
             g.op("Div", w, g.op("Unsqueeze", safe, g.i64([1]))), w, hint="w")
    return xmin, w, k1


def _resize_axis(g: _Builder, x: str, axis: int, out_size: str, index: str) -> str:
    """One separable pass of float32 ``x`` ([N, C, H, W], axis 2 or 3) at output positions ``index`` [M]."""
    f, d = TensorProto.FLOAT, TensorProto.DOUBLE
    in_size = g.op("Gather", g.op("Shape", x), g.i64(axis), hint="in_size")
    xmin, w, k = _aa_weights(g, in_size, out_size, index)
    last = g.op("Sub", in_size, g.i64(1))
    # weights broadcast along the resized axis: [M] -> [M, 1] for the height pass
    wshape = g.i64([-1] if axis == 3 else [-1, 1])

    body = _Builder(prefix=g.name("body"))
    jj, cond, acc = body.name("j"), body.name("cond"), body.name("acc")
    idx = body.op("Min", body.op("Add", xmin, jj), last)  # past the window the weight is 0: any valid index
    taps = body.op("Gather", x, idx, axis=axis)
    wj = body.op("Reshape", body.op("Gather", w, jj, axis=1), wshape)
    # acc = fma(tap, w, acc): the product of two float32 is exact in float64, the sum is rounded once
    prod = body.op("Mul", body.op("Cast", taps, to=d), body.op("Cast", wj, to=d))
    new_acc = body.op("Cast", body.op("Add", prod, body.op("Cast", acc, to=d)), to=f)
    cond_out = body.op("Identity", cond)
    graph = helper.make_graph(
        body.nodes, body.prefix,
        [helper.make_tensor_value_info(jj, TensorProto.INT64, []),
         helper.make_tensor_value_info(cond, TensorProto.BOOL, []),
         helper.make_tensor_value_info(acc, f, None)],
        [helper.make_tensor_value_info(cond_out, TensorProto.BOOL, []),
         helper.make_tensor_value_info(new_acc, f, None)],
        initializer=body.initializers,
    )
    shape = g.op("Shape", x)
    m = g.op("Shape", index)
    out_shape = g.op("Concat", g.op("Slice", shape, g.i64([0]), g.i64([axis])), m,
                     g.op("Slice", shape, g.i64([axis + 1]), g.i64([4])), axis=0)
    zeros = g.op("ConstantOfShape", out_shape, value=helper.make_tensor("zero", f, [1], [0.0]))
    trip = g.op("Reshape", k, g.i64([]))
    out = g.name("resized")
    g.nodes.append(helper.make_node("Loop", [trip, "", zeros], [out], name=out, body=graph))
    return out


def _aa_weights_int16(g: _Builder, in_size: str, out_size: str) -> tuple[str, str, str, str]:
    """Weights of torch's uint8 antialiased bilinear kernel (``_compute_index_ranges_int16_weights``) for every
    output position: computed in float64, normalised, then scaled to integers at the largest precision
    (< 22 bits) where the axis' largest weight still fits int16. Returns ``(xmin [out], w [out, K] int64,
    K [1], precision [] int64)``."""
    d, i = TensorProto.DOUBLE, TensorProto.INT64
    scale = g.op("Div", g.op("Cast", in_size, to=d), g.op("Cast", out_size, to=d), hint="scale64")
    up = g.op("Less", scale, g.f64(1.0))
    support = g.op("Where", up, g.f64(1.0), scale)
    invscale = g.op("Where", up, g.f64(1.0), g.op("Div", g.f64(1.0), scale))
    k = g.op("Add", g.op("Mul", g.op("Cast", g.op("Ceil", support), to=i), g.i64(2)), g.i64(1), hint="K")
    index = g.op("Range", g.i64(0), out_size, g.i64(1))
    center = g.op("Mul", scale, g.op("Add", g.op("Cast", index, to=d), g.f64(0.5)))
    xmin = g.op("Max", g.op("Cast", g.op("Add", g.op("Sub", center, support), g.f64(0.5)), to=i), g.i64(0))
    xmax = g.op("Min", g.op("Cast", g.op("Add", g.op("Add", center, support), g.f64(0.5)), to=i), in_size)
    xsize = g.op("Max", g.op("Min", g.op("Sub", xmax, xmin), k), g.i64(0))
    j = g.op("Range", g.i64(0), k, g.i64(1))
    jrow = g.op("Unsqueeze", j, g.i64([0]))
    pos = g.op("Cast", g.op("Add", jrow, g.op("Unsqueeze", xmin, g.i64([1]))), to=d)
    x = g.op("Abs", g.op("Mul", g.op("Add", g.op("Sub", pos, g.op("Unsqueeze", center, g.i64([1]))), g.f64(0.5)),
                         invscale))
    w = g.op("Where", g.op("Less", x, g.f64(1.0)), g.op("Sub", g.f64(1.0), x), g.f64(0.0))
    w = g.op("Where", g.op("Less", jrow, g.op("Unsqueeze", xsize, g.i64([1]))), w, g.f64(0.0))
    total = g.op("Gather", g.op("CumSum", w, g.i64(1)), g.op("Sub", k, g.i64(1)), axis=1)
    nonzero = g.op("Not", g.op("Equal", total, g.f64(0.0)))
    w = g.op("Where", g.op("Unsqueeze", nonzero, g.i64([1])),
             g.op("Div", w, g.op("Unsqueeze", g.op("Where", nonzero, total, g.f64(1.0)), g.i64([1]))), w)
    # precision: the first p in 0..21 with int(0.5 + wmax * 2^(p + 1)) >= 2^15, else 22
    wmax = g.op("ReduceMax", g.op("Reshape", w, g.i64([-1])), keepdims=0)
    powers = g.const([2.0 ** (p + 1) for p in range(22)] + [2.0 ** 40], np.float64, "powers")
    big = g.op("GreaterOrEqual", g.op("Cast", g.op("Add", g.op("Mul", wmax, powers), g.f64(0.5)), to=i),
               g.i64(1 << 15))
    precision = g.op("ArgMax", g.op("Cast", big, to=i), axis=0, keepdims=0, hint="precision")
    w16 = g.op("Cast", g.op("Add", g.f64(0.5), g.op("Mul", w, g.op("Cast", g.op("Pow", g.f64(2.0),
                                                                          g.op("Cast", precision, to=d)), to=d))),
               to=i, hint="w16")
    return xmin, w16, g.op("Reshape", k, g.i64([1])), precision


def _resize_axis_uint8(g: _Builder, x: str, axis: int, out_size: str, index: str) -> str:
    """One pass of torch's uint8 kernel at output positions ``index``: integer multiply-adds, ``+ 2^(p-1)``,
    ``>> p``, clamped to [0, 255]. ``x`` holds uint8 values (in float32); so does the result."""
    i = TensorProto.INT64
    in_size = g.op("Gather", g.op("Shape", x), g.i64(axis))
    xmin_all, w_all, k, precision = _aa_weights_int16(g, in_size, out_size)
    xmin = g.op("Gather", xmin_all, index, axis=0)
    w = g.op("Gather", w_all, index, axis=0)
    last = g.op("Sub", in_size, g.i64(1))
    xi = g.op("Cast", x, to=i)
    wshape = g.i64([-1] if axis == 3 else [-1, 1])

    body = _Builder(prefix=g.name("body"))
    jj, cond, acc = body.name("j"), body.name("cond"), body.name("acc")
    idx = body.op("Min", body.op("Add", xmin, jj), last)
    taps = body.op("Gather", xi, idx, axis=axis)
    wj = body.op("Reshape", body.op("Gather", w, jj, axis=1), wshape)
    new_acc = body.op("Add", acc, body.op("Mul", taps, wj))
    cond_out = body.op("Identity", cond)
    graph = helper.make_graph(
        body.nodes, body.prefix,
        [helper.make_tensor_value_info(jj, i, []), helper.make_tensor_value_info(cond, TensorProto.BOOL, []),
         helper.make_tensor_value_info(acc, i, None)],
        [helper.make_tensor_value_info(cond_out, TensorProto.BOOL, []), helper.make_tensor_value_info(new_acc, i, None)],
        initializer=body.initializers,
    )
    shape = g.op("Shape", x)
    out_shape = g.op("Concat", g.op("Slice", shape, g.i64([0]), g.i64([axis])), g.op("Shape", index),
                     g.op("Slice", shape, g.i64([axis + 1]), g.i64([4])), axis=0)
    half = g.op("Div", g.op("Pow", g.i64(2), precision), g.i64(2))  # 2^(p-1); 0 when p = 0
    start = g.op("Expand", half, out_shape)
    out = g.name("resized_u8")
    g.nodes.append(helper.make_node("Loop", [g.op("Reshape", k, g.i64([])), "", start], [out], name=out, body=graph))
    shifted = g.op("Div", out, g.op("Pow", g.i64(2), precision))  # >> p (non-negative: division floors)
    return g.op("Cast", g.op("Clip", shifted, g.i64(0), g.i64(255)), to=TensorProto.FLOAT)


def _output_size(g: _Builder, h: str, w: str, size: Sequence[int]) -> tuple[str, str]:
    """torchvision's ``_compute_resized_output_size`` without max_size, in int64 graph arithmetic."""
    if len(size) == 2:
        return g.i64(size[0]), g.i64(size[1])
    s = g.i64(size[0])
    short, long = g.op("Min", h, w), g.op("Max", h, w)
    new_long = g.op("Div", g.op("Mul", s, long), short)  # int(s * long / short): exact as an integer floor
    w_short = g.op("LessOrEqual", w, h)
    return g.op("Where", w_short, new_long, s), g.op("Where", w_short, s, new_long)


def _crop_window(g: _Builder, length: str, crop: int) -> tuple[str, str]:
    """Positions of a torchvision center crop along an axis of ``length``: ``(index [crop], valid [crop])``.

    An image smaller than the crop is zero-padded by ``(crop - length) // 2`` before; otherwise the start is
    ``int(round((length - crop) / 2))`` (round half to even)."""
    c = g.i64(crop)
    d_pos = g.op("Max", g.op("Sub", length, c), g.i64(0))
    d_neg = g.op("Max", g.op("Sub", c, length), g.i64(0))
    half = g.op("Div", d_pos, g.i64(2))
    odd_up = g.op("Mul", g.op("Mod", d_pos, g.i64(2)), g.op("Mod", half, g.i64(2)))
    start = g.op("Sub", g.op("Add", half, odd_up), g.op("Div", d_neg, g.i64(2)))
    index = g.op("Add", g.op("Range", g.i64(0), c, g.i64(1)), start, hint="crop_index")
    valid = g.op("And", g.op("GreaterOrEqual", index, g.i64(0)), g.op("Less", index, length))
    return index, valid


def _mask_axis(g: _Builder, x: str, valid: str, axis: int) -> str:
    shape = g.i64([-1] if axis == 3 else [-1, 1])
    return g.op("Where", g.op("Reshape", valid, shape), x, g.f32(0.0))


# -- the steps ----------------------------------------------------------------------------------------------

class _State:
    """The tensor flowing through the graph: float32 values, which are uint8 pixel values while ``uint8``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.uint8 = True


Step = Callable[[_Builder, _State], None]


def _resize_step(size: Sequence[int], crop: Sequence[int] | None, v2: bool) -> Step:
    def run(g: _Builder, st: _State) -> None:
        fixed_point = v2 and st.uint8  # v2 on uint8: torch's own uint8 kernel (AVX2 / AVX512 / arm64 builds)
        shape = g.op("Shape", st.name)
        h = g.op("Gather", shape, g.i64(2))
        w = g.op("Gather", shape, g.i64(3))
        out_h, out_w = _output_size(g, h, w, size)
        index: dict[int, tuple[str, str | None]] = {}
        for axis, out in ((3, out_w), (2, out_h)):
            if crop is not None:
                index[axis] = _crop_window(g, out, crop[0] if axis == 2 else crop[1])
            else:
                index[axis] = (g.op("Range", g.i64(0), out, g.i64(1)), None)
        x = st.name
        for axis, out in ((3, out_w), (2, out_h)):  # torch: the contiguous (width) axis first
            idx, valid = index[axis]
            clamped = g.op("Min", g.op("Max", idx, g.i64(0)), g.op("Sub", out, g.i64(1)))
            x = (_resize_axis_uint8 if fixed_point else _resize_axis)(g, x, axis, out, clamped)
        if st.uint8 and not fixed_point:
            x = g.op("Round", x)  # torchvision: round (half to even) before the cast back to uint8
        for axis in (3, 2):
            valid = index[axis][1]
            if valid is not None:
                x = _mask_axis(g, x, valid, axis)
        st.name = x
    return run


def _crop_step(crop: Sequence[int]) -> Step:
    def run(g: _Builder, st: _State) -> None:
        shape = g.op("Shape", st.name)
        x = st.name
        for axis in (2, 3):
            length = g.op("Gather", shape, g.i64(axis))
            index, valid = _crop_window(g, length, crop[0] if axis == 2 else crop[1])
            clamped = g.op("Min", g.op("Max", index, g.i64(0)), g.op("Sub", length, g.i64(1)))
            x = _mask_axis(g, g.op("Gather", x, clamped, axis=axis), valid, axis)
        st.name = x
    return run


def _to_float_step(divide: bool) -> Step:
    """uint8 -> float32 in [0, 1]: v1 divides by 255, v2 multiplies by float(1 / 255) (not the same bits)."""
    def run(g: _Builder, st: _State) -> None:
        if st.uint8:
            st.name = g.op("Div", st.name, g.f32(255.0)) if divide else g.op("Mul", st.name, g.f32(1.0 / 255.0))
            st.uint8 = False
    return run


def _normalize_step(mean: Sequence[float], std: Sequence[float]) -> Step:
    def run(g: _Builder, st: _State) -> None:
        if st.uint8:
            raise ExportError("torchvision Normalize on uint8 images: torchvision itself refuses it "
                              "(convert to float first: ConvertImageDtype / v2.ToDtype(scale=True))")
        m = g.const(np.asarray(mean, np.float32).reshape(1, -1, 1, 1), np.float32, "mean")
        s = g.const(np.asarray(std, np.float32).reshape(1, -1, 1, 1), np.float32, "std")
        st.name = g.op("Div", g.op("Sub", st.name, m), s)
    return run


def _size_list(value: Any, what: str, t: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)) and len(value) in (1, 2) and all(isinstance(v, int) for v in value):
        return list(value)
    raise ExportError(f"torchvision {type(t).__name__}: {what} {value!r} is not translatable (expected an int or "
                      "(h, w))")


def _steps(t: Any) -> list[tuple[str, Any]]:
    """``(kind, transform)`` for ``t`` with Compose flattened; ``kind`` names what the step is."""
    import torchvision.transforms as v1
    import torchvision.transforms.v2 as v2
    from torchvision.transforms import _presets

    name = type(t).__name__
    if isinstance(t, (v1.Compose, v2.Compose)):
        return [s for sub in t.transforms for s in _steps(sub)]
    if isinstance(t, _presets.ImageClassification | _presets.SemanticSegmentation | _presets.ObjectDetection):
        return [("preset", t)]
    known = {v1.Resize: "resize", v2.Resize: "resize2", v1.CenterCrop: "crop", v2.CenterCrop: "crop",
             v1.Normalize: "normalize", v2.Normalize: "normalize", v1.ConvertImageDtype: "convert",
             v2.ToDtype: "todtype", v2.ToImage: "noop", v2.ToPureTensor: "noop"}
    for cls, kind in known.items():
        if type(t) is cls:
            return [(kind, t)]
    raise ExportError(
        f"torchvision transform {name} cannot be translated to ONNX; supported: {', '.join(SUPPORTED)} "
        "(docs/ops.md). Replace it with onnxpipe.ops.image ops, or apply it before the pipeline."
    )


def _check_resize(t: Any) -> None:
    from torchvision.transforms import InterpolationMode

    interp = getattr(t, "interpolation", InterpolationMode.BILINEAR)
    interp = InterpolationMode(interp) if isinstance(interp, str) else interp  # v2 may keep the string
    if interp != InterpolationMode.BILINEAR or getattr(t, "antialias", True) is not True:
        raise ExportError(
            f"torchvision {type(t).__name__}(interpolation={interp}, antialias={getattr(t, 'antialias', None)}): "
            f"only bilinear with antialias=True is translated exactly; supported: {', '.join(SUPPORTED)}"
        )
    if getattr(t, "max_size", None) is not None:
        raise ExportError(f"torchvision {type(t).__name__}(max_size={t.max_size}): max_size is not translated; "
                          f"supported: {', '.join(SUPPORTED)}")


def _plan(transform: Any) -> tuple[list[Step], list[int] | None]:
    """The graph steps, and the output's (height, width) when the transform fixes it (else None)."""
    raw = _steps(transform)
    expanded: list[tuple[str, Any, Any]] = []  # (kind, transform, argument)
    for kind, t in raw:
        if kind == "preset":
            from torchvision.transforms import _presets

            if isinstance(t, _presets.ImageClassification | _presets.SemanticSegmentation):
                if t.resize_size is not None:
                    _check_resize(t)
                    expanded.append(("resize", t, list(t.resize_size)))
                if isinstance(t, _presets.ImageClassification):
                    expanded.append(("crop", t, list(t.crop_size)))
                expanded.append(("convert", t, None))
                expanded.append(("normalize", t, (t.mean, t.std)))
            else:
                expanded.append(("convert", t, None))
        elif kind in ("resize", "resize2"):
            _check_resize(t)
            expanded.append((kind, t, _size_list(t.size, "size", t)))
        elif kind == "crop":
            expanded.append((kind, t, _size_list(t.size, "size", t)))
        elif kind == "normalize":
            expanded.append((kind, t, (t.mean, t.std)))
        elif kind == "convert":
            if t.dtype != torch.float32:
                raise ExportError(f"torchvision ConvertImageDtype({t.dtype}): only torch.float32 is translated")
            expanded.append((kind, t, None))
        elif kind == "todtype":
            dtype = t.dtype if not isinstance(t.dtype, dict) else None
            if dtype != torch.float32 or not t.scale:
                raise ExportError(f"torchvision v2.ToDtype({t.dtype}, scale={t.scale}): only "
                                  "ToDtype(torch.float32, scale=True) is translated")
            expanded.append((kind, t, None))
    steps: list[Step] = []
    out_hw: list[int] | None = None
    i = 0
    while i < len(expanded):
        kind, t, arg = expanded[i]
        nxt = expanded[i + 1] if i + 1 < len(expanded) else None
        if kind in ("resize", "resize2"):
            crop = None
            out_hw = list(arg) if len(arg) == 2 else None
            if nxt is not None and nxt[0] == "crop":
                crop = nxt[2] * 2 if len(nxt[2]) == 1 else nxt[2]
                out_hw = list(crop)
                i += 1
            steps.append(_resize_step(arg, crop, v2=kind == "resize2"))
        elif kind == "crop":
            out_hw = arg * 2 if len(arg) == 1 else list(arg)
            steps.append(_crop_step(out_hw))
        elif kind == "convert":
            steps.append(_to_float_step(divide=True))
        elif kind == "todtype":
            steps.append(_to_float_step(divide=False))
        elif kind == "normalize":
            steps.append(_normalize_step(*arg))
        i += 1
    return steps, out_hw


class TorchvisionTransform(OnnxStage):
    """A torchvision transform (or preset) as an ONNX-native stage: uint8 ``[N, C, H, W]`` -> ``image``.

    ``image`` is float32 ``[N, C, h, w]`` once the transform converts to float, else uint8. Eagerly (and for
    verification) it runs the torchvision transform itself.
    """

    input_names = ("images",)
    output_names = ("image",)

    def __init__(self, transform: Any) -> None:
        self.transform = transform
        self._steps, self._out_hw = _plan(transform)  # raises ExportError naming an untranslatable step
        kinds = {kind for kind, _ in _steps(transform)}
        presets = [t for kind, t in _steps(transform) if kind == "preset"]
        self._same_size = not kinds & {"resize", "resize2", "crop"} and all(
            type(t).__name__ == "ObjectDetection" or getattr(t, "resize_size", None) is None for t in presets)
        self._channels: int | None = None  # from the example (the reference runs before build)

    def describe(self) -> str:
        return f"torchvision {type(self.transform).__name__}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # one tensor, passed on positionally like the transform's own result (model(transform(x)))
        return super().__call__(*args, **kwargs)["image"]

    def build(self, opset: int) -> onnx.ModelProto:
        g = _Builder()
        st = _State(g.op("Cast", "images", to=TensorProto.FLOAT))
        for step in self._steps:
            step(g, st)
        out_type = TensorProto.FLOAT
        if st.uint8:
            out_type = TensorProto.UINT8
            st.name = g.op("Cast", st.name, to=TensorProto.UINT8)
        g.nodes.append(helper.make_node("Identity", [st.name], ["image"], name="image"))
        c = self._channels or "channels"
        # named dims keep the next stage dynamic: the input's when no step changes the size, new names when a
        # shorter-side resize derives them, the numbers when the transform fixes them
        hw: list[Any] = self._out_hw or (["height", "width"] if self._same_size else ["resized_height", "resized_width"])
        graph = helper.make_graph(
            g.nodes, "torchvision_transform",
            [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", c, "height", "width"])],
            [helper.make_tensor_value_info("image", out_type, ["batch", c, *hw])],
            initializer=g.initializers,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 13))])

    def reference(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(images)
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"{self.describe()}: input 'images': expected uint8 [N, C, H, W], got {x.dtype} "
                             f"shape {list(x.shape)}")
        self._channels = self._channels or int(x.shape[1])
        with torch.no_grad():
            out = self.transform(torch.from_numpy(np.ascontiguousarray(x)))
        return {"image": out.detach().cpu().numpy()}


def translate(transform: Any) -> TorchvisionTransform:
    """The ONNX-native stage for a torchvision transform; :class:`ExportError` naming what cannot be translated."""
    return TorchvisionTransform(transform)
