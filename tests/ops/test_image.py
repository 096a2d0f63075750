"""onnxpipe.ops.image: eager parity with torchvision.transforms.v2, and exported-file parity with eager on
many image sizes (1x1, batch 1, empty batch, portrait/landscape), through onnxpipe.export_pipeline.

Tolerance (float32, pixels in [0, 1]): |onnx - eager| <= 1e-5 absolute (observed <= ~1e-6: ONNX Resize and
torch's interpolate accumulate the same weights in a different order); nearest, crop, layout, channel order
and letterbox scale/padding must be exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import onnxpipe
from onnxpipe import Chain
from onnxpipe.ops.image import CenterCrop, ChannelOrder, Grayscale, Letterbox, Normalize, Resize, ToFloat

tv = pytest.importorskip("torchvision.transforms.v2.functional")
InterpolationMode = pytest.importorskip("torchvision.transforms").InterpolationMode

ATOL = 1e-5  # float outputs of resampling ops, pixels in [0, 1] (see module docstring)
EXACT = 0.0

# shapes [N, C, H, W] the exported files are run on beyond the exporter's own variants
EDGE_SHAPES = [(1, 3, 1, 1), (1, 3, 1, 9), (1, 3, 9, 1), (0, 3, 6, 4), (1, 3, 17, 5), (2, 3, 5, 17),
               (1, 3, 64, 48), (3, 3, 8, 8), (1, 3, 2, 3)]


def _rand(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float32))


# --- construction errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("make, param", [
    (lambda: ToFloat(layout="HWCN"), "layout"),
    (lambda: Resize(0), "size"),
    (lambda: Resize((3, 0)), "size"),
    (lambda: Resize((3, 4, 5)), "size"),
    (lambda: Resize(8, mode="bicubic"), "mode"),
    (lambda: Resize(8, mode="nearest", antialias=True), "antialias"),
    (lambda: CenterCrop(-1), "size"),
    (lambda: Letterbox(0), "size"),
    (lambda: Letterbox((4, 4)), "size"),
    (lambda: Letterbox(8, fill=float("nan")), "fill"),
    (lambda: Normalize([0.5, 0.5], [0.2]), "std"),
    (lambda: Normalize([], []), "mean"),
    (lambda: Normalize([0.5], [0.0]), "std"),
    (lambda: ChannelOrder("RGB", "BGA"), "target"),
    (lambda: ChannelOrder("RGB", "BGR", dim=1), "dim"),
    (lambda: Grayscale(2), "num_output_channels"),
])
def test_bad_parameters_raise_value_error_naming_the_parameter(make, param):
    with pytest.raises(ValueError, match=param):
        make()


def test_bad_inputs_name_the_input():
    with pytest.raises(ValueError, match="images.*uint8"):
        ToFloat()(torch.zeros(1, 2, 2, 3))
    with pytest.raises(ValueError, match="images.*rank 4"):
        ToFloat()(torch.zeros(2, 2, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="images.*float"):
        Resize(4)(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="images.*3 channels"):
        Normalize([0.5] * 3, [0.2] * 3)(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="images.*3 channels"):
        Grayscale()(torch.zeros(1, 4, 4, 4))


# --- eager parity with torchvision.transforms.v2 -------------------------------------------------------

SIZES = [(1, 1), (1, 7), (7, 1), (5, 5), (8, 13), (13, 8), (31, 17), (64, 48), (3, 100), (100, 3)]


@pytest.mark.parametrize("h, w", SIZES)
def test_eager_matches_torchvision(h, w):
    pixels = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(h * w))
    x = ToFloat()(pixels)
    ref = tv.to_dtype(pixels.permute(0, 3, 1, 2), torch.float32, scale=True)
    torch.testing.assert_close(x, ref, atol=0, rtol=0)
    assert ToFloat("HWC")(pixels[0]).shape == (3, h, w)

    for size in (6, (5, 9), (16, 16), 1, (7, 1)):
        for mode, aa in (("bilinear", True), ("bilinear", False), ("nearest", False)):
            interp = InterpolationMode.BILINEAR if mode == "bilinear" else InterpolationMode.NEAREST
            got = Resize(size, mode=mode, antialias=aa)(x)
            want = tv.resize(x, [size] if isinstance(size, int) else list(size), interpolation=interp, antialias=aa)
            out_h, out_w = want.shape[-2:]
            if aa:
                ref = torch.from_numpy(_antialias_reference(x.numpy(), out_h, out_w))
                torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
            if aa and out_w == 1 and out_h != h:
                continue  # torch's own antialias kernel is wrong here (see _interpolate); checked against numpy
            torch.testing.assert_close(got, want, atol=0, rtol=0, msg=f"Resize({size}, {mode}, aa={aa}) on {h}x{w}")
            if mode == "nearest":
                np.testing.assert_array_equal(got.numpy(), _nearest_reference(x.numpy(), out_h, out_w))
    for crop in ((4, 4), (1, 1), (9, 6), (70, 3)):
        torch.testing.assert_close(CenterCrop(crop)(x), tv.center_crop(x, list(crop)), atol=0, rtol=0)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    torch.testing.assert_close(Normalize(mean, std)(x), tv.normalize(x, mean, std), atol=1e-6, rtol=0)
    torch.testing.assert_close(Grayscale()(x), tv.rgb_to_grayscale(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(Grayscale(3)(x), tv.rgb_to_grayscale(x, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(ChannelOrder("RGB", "BGR")(x), x.flip(-3), atol=0, rtol=0)
    torch.testing.assert_close(ChannelOrder("RGB", "BGR", dim=-1)(pixels), pixels.flip(-1), atol=0, rtol=0)


def _aa_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] antialiased bilinear (triangle) weights, PIL's / torch's algorithm, in float64."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        taps = np.array([max(0.0, 1.0 - abs((j - center + 0.5) / support)) for j in range(lo, hi)])
        w[i, lo:hi] = taps / taps.sum()
    return w


def _antialias_reference(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    return np.einsum("ih,...hw,jw->...ij", _aa_weights(x.shape[-2], out_h), x.astype(np.float64),
                     _aa_weights(x.shape[-1], out_w)).astype(np.float32)


def _nearest_reference(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    def idx(n_in: int, n_out: int) -> np.ndarray:
        scale = np.float32(n_in) / np.float32(n_out)
        return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)

    return x[..., idx(x.shape[-2], out_h), :][..., idx(x.shape[-1], out_w)]


def test_antialias_where_torch_is_wrong():
    """torch 2.x's CPU antialias kernel returns garbage for out_w == 1 with a height change; ours does not."""
    x = torch.arange(9.0).view(1, 1, 9, 1) / 8
    got = Resize((12, 1), antialias=True)(x)
    want = _antialias_reference(x.numpy(), 12, 1)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert len(np.unique(got.numpy())) == 12  # an upscaled ramp, not one repeated value


def _letterbox_reference(x: torch.Tensor, s: int, fill: float) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """Letterbox from the numpy antialias reference + a numpy canvas (the documented contract, independently)."""
    h, w = x.shape[-2:]
    r = s / max(h, w)
    nh, nw = max(1, int(np.floor(h * r + 0.5))), max(1, int(np.floor(w * r + 0.5)))
    resized = _antialias_reference(x.numpy(), nh, nw)
    canvas = np.full(x.shape[:-2] + (s, s), fill, dtype=np.float32)
    left, top = (s - nw) // 2, (s - nh) // 2
    canvas[..., top:top + nh, left:left + nw] = resized
    return torch.from_numpy(canvas), r, (left, top)


@pytest.mark.parametrize("h, w", SIZES)
def test_letterbox_matches_reference_and_maps_back(h, w):
    x = _rand((2, 3, h, w), seed=h + w)
    image, scale, pad = Letterbox(16, fill=0.25)(x)
    want, r, (left, top) = _letterbox_reference(x, 16, 0.25)
    torch.testing.assert_close(image, want, atol=1e-6, rtol=0)
    assert scale.shape == () and scale.dtype == torch.float32 and float(scale) == pytest.approx(r, rel=1e-7)
    assert pad.dtype == torch.float32 and pad.tolist() == [left, top]
    # the resized content's far edge (left + new_w) maps back to the original width within half a letterboxed
    # pixel, unless the side was clamped up to 1 pixel (a sliver thinner than half a letterboxed pixel)
    new_w = int(np.floor(w * r + 0.5))
    if new_w >= 1:
        x_back = (left + new_w - float(pad[0])) / float(scale)
        assert abs(x_back - w) <= 0.5 / float(scale) + 1e-4


# --- exported files ----------------------------------------------------------------------------------

class _FanOut(torch.nn.Module):
    """Every float op on the same [N, 3, H, W] input: one export checks them all (2 CPUs, keep tests fast)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = torch.nn.ModuleDict({
            "resize_bilinear": Resize((7, 5), antialias=False),
            "resize_antialias": Resize((7, 5), antialias=True),
            "resize_nearest": Resize((7, 5), mode="nearest"),
            "resize_up": Resize((40, 33), antialias=True),
            "shorter_antialias": Resize(6, antialias=True),
            "shorter_nearest": Resize(6, mode="nearest"),
            "crop": CenterCrop((4, 7)),
            "normalize": Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            "gray": Grayscale(),
            "gray3": Grayscale(3),
            "bgr": ChannelOrder("RGB", "BGR"),
        })
        self.letterbox = Letterbox(12)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {name: op(images) for name, op in self.ops.items()}
        out["letterbox"], out["letterbox_scale"], out["letterbox_pad"] = self.letterbox(images)
        return out


EXACT_OUTPUTS = {"resize_nearest", "shorter_nearest", "crop", "bgr", "letterbox_scale", "letterbox_pad"}


@pytest.fixture(scope="module")
def fanout_file(tmp_path_factory) -> tuple[Path, _FanOut]:
    op = _FanOut().eval()
    path = tmp_path_factory.mktemp("image") / "fanout.onnx"
    onnxpipe.export_pipeline(
        op, None, None, example_inputs={"images": _rand((2, 3, 20, 30))},
        dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}}, path=path, exporter="dynamo",
        verify_inputs=[{"images": _rand((1, 3, 1, 1)).numpy()}, {"images": _rand((1, 3, 33, 8)).numpy()}],
        tolerances={"float32": (ATOL, 0.0), **{n: (EXACT, 0.0) for n in EXACT_OUTPUTS}},
    )
    return path, op


def test_exported_ops_match_eager_and_torchvision_on_any_size(fanout_file):
    from onnxpipe_runtime import Pipeline

    path, op = fanout_file
    rng = np.random.default_rng(1)
    shapes = EDGE_SHAPES + [(int(rng.integers(1, 3)), 3, int(rng.integers(1, 50)), int(rng.integers(1, 50)))
                            for _ in range(12)]
    worst: dict[str, float] = {}
    with Pipeline.load(path, threads=1) as pipe:
        for shape in shapes:
            x = _rand(shape, seed=sum(shape))
            got = pipe.run({"images": x.numpy()})
            with torch.no_grad():
                want = {k: v.numpy() for k, v in op(x).items()}
            assert set(got) == set(want)
            for name, w in want.items():
                g = got[name]
                assert g.shape == w.shape and g.dtype == w.dtype, f"{name} on {shape}: {g.shape} vs {w.shape}"
                diff = float(np.abs(g - w).max()) if g.size else 0.0
                worst[name] = max(worst.get(name, 0.0), diff)
                tol = EXACT if name in EXACT_OUTPUTS else ATOL
                assert diff <= tol, f"{name} on input {shape}: max |onnx - eager| = {diff}"
            # and against torchvision directly (not only through our eager code)
            if x.shape[0]:
                ref = tv.resize(x, [7, 5], antialias=True)
                assert np.abs(got["resize_antialias"] - ref.numpy()).max() <= ATOL
                ref = tv.resize(x, [6], interpolation=InterpolationMode.NEAREST)
                np.testing.assert_array_equal(got["shorter_nearest"], ref.numpy())
                np.testing.assert_array_equal(got["crop"], tv.center_crop(x, [4, 7]).numpy())
    print("max |onnx - eager| per op:", {k: f"{v:.2e}" for k, v in sorted(worst.items())})


def test_resize_lowering_attributes(fanout_file):
    """Bilinear: Resize half_pixel (not pytorch_half_pixel: they differ for an output of 1), antialias=1 with
    exclude_outside=1 where asked (torch's taps). Nearest is a Gather of torch's indices, not Resize nearest."""
    path, _ = fanout_file
    resizes = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Resize"]
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in resizes]
    assert all(a["mode"] == b"linear" for a in attrs), attrs
    assert all(a["coordinate_transformation_mode"] == b"half_pixel" for a in attrs)
    # resize_bilinear plain; resize_antialias, resize_up, shorter_antialias, letterbox antialiased
    assert sorted((a.get("antialias", 0), a.get("exclude_outside", 0)) for a in attrs) == [(0, 0)] + [(1, 1)] * 4


def test_resize_to_one_pixel_matches_torch(tmp_path):
    """An output of 1 is where pytorch_half_pixel and torch disagree; half_pixel must agree."""
    from onnxpipe_runtime import Pipeline

    op = Resize((1, 1), antialias=False)
    path = tmp_path / "one.onnx"
    onnxpipe.export_pipeline(op, None, None, example_inputs={"images": _rand((1, 3, 6, 4))},
                             dynamic_axes={"images": {2: "height", 3: "width"}}, path=path,
                             tolerances={"float32": (ATOL, 0.0)})
    x = _rand((1, 3, 9, 7), seed=3)
    with Pipeline.load(path, threads=1) as pipe:
        got = pipe.run({"images": x.numpy()})["output"]
    np.testing.assert_allclose(got, op(x).numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(got[0, :, 0, 0], x[0, :, 4, 3].numpy(), atol=ATOL)  # the center pixel


def test_uint8_pipeline_both_exporters(tmp_path):
    """uint8 NHWC of any size -> float NCHW; TorchScript can lower fixed-size non-antialiased resizes."""
    from onnxpipe_runtime import Pipeline

    pre = Chain(ChannelOrder("RGB", "BGR", dim=-1), ToFloat(), Resize((10, 10), antialias=False),
                Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3]))
    pixels = torch.randint(0, 256, (2, 13, 21, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    edge = [{"image": np.full((1, 1, 1, 3), 200, np.uint8)}, {"image": np.zeros((0, 5, 5, 3), np.uint8)}]
    for exporter in ("dynamo", "torchscript"):
        path = tmp_path / f"pre_{exporter}.onnx"
        ep = onnxpipe.export_pipeline(pre, None, None, example_inputs={"image": pixels},
                                      dynamic_axes={"image": {0: "batch", 1: "height", 2: "width"}}, path=path,
                                      exporter=exporter, verify_inputs=edge, tolerances={"float32": (ATOL, 0.0)})
        assert ep.manifest.to_dict()["inputs"][0]["shape"] == ["batch", "height", "width", 3]
        if exporter == "dynamo":  # TorchScript leaves names like "Divoutput_dim_1" on static dims
            assert ep.manifest.to_dict()["outputs"][0]["shape"][1:] == [3, 10, 10]
        x = torch.randint(0, 256, (1, 31, 7, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        with Pipeline.load(path, threads=1) as pipe:
            got = pipe.run({"image": x.numpy()})["output"]
        ref = tv.normalize(tv.resize(tv.to_dtype(x.flip(-1).permute(0, 3, 1, 2), torch.float32, scale=True),
                                     [10, 10], antialias=False), [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
        np.testing.assert_allclose(got, ref.numpy(), atol=1e-4, rtol=0)  # normalized: values up to ~5


def test_torchscript_cannot_keep_shorter_side_dynamic(tmp_path):
    """Documented limit: TorchScript traces derived sizes as constants; the exporter must refuse, not lie."""
    with pytest.raises(onnxpipe.ExportError):
        onnxpipe.export_pipeline(Resize(6, mode="nearest"), None, None, example_inputs={"images": _rand((1, 3, 8, 12))},
                                 dynamic_axes={"images": {2: "height", 3: "width"}}, path=tmp_path / "ts.onnx",
                                 exporter="torchscript")
