"""torchvision transforms and presets as `pre`: bit-exact with eager torchvision at every size, including 1x1,
1x700, odd sizes and 4K; identical top-5 with a torchvision classifier; untranslatable transforms named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models import MobileNet_V3_Small_Weights, ResNet18_Weights
from torchvision.transforms import v2

from onnxpipe import Chain, ExportError, export_pipeline
from onnxpipe.ops.classify import Softmax, TopK
from onnxpipe.ops.torchvision import SUPPORTED
from onnxpipe_runtime import Pipeline

AXES = {"images": {0: "batch", 2: "height", 3: "width"}}
#: (height, width): degenerate, thin both ways, odd, exact-size, up- and down-scaling, 4K
SIZES = [(1, 1), (1, 700), (700, 1), (3, 5), (37, 53), (255, 257), (224, 224), (256, 256), (300, 200), (101, 99),
         (480, 640), (2160, 3840)]
#: sizes where a rare one-level rounding difference is allowed (see the test)
ROUNDING_FLIPS_ALLOWED = {(2160, 3840)}


def _images(h: int, w: int, n: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + h * 7919 + w)
    smooth = rng.integers(0, 256, (n, 3, max(1, h // 8 + 1), max(1, w // 8 + 1))).repeat(8, 2).repeat(8, 3)
    noise = rng.integers(-20, 21, (n, 3, h, w))
    return np.clip(smooth[:, :, :h, :w] + noise, 0, 255).astype(np.uint8)


def _export(pre, tmp_path, name, example=(2, 3, 37, 53), **kw):
    x = torch.from_numpy(_images(*example[2:], n=example[0]))
    kw.setdefault("tolerances", {"float32": (0, 0)})
    return export_pipeline(pre, kw.pop("model", None), kw.pop("post", None), example_inputs={"images": x},
                           dynamic_axes=AXES, path=tmp_path / f"{name}.onnx", **kw)


@pytest.fixture(scope="module")
def preset_file(tmp_path_factory):
    return _export(ResNet18_Weights.IMAGENET1K_V1.transforms(), tmp_path_factory.mktemp("tv"), "preset").path


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_classification_preset_is_bit_exact_at_every_size(preset_file, size):
    pre = ResNet18_Weights.IMAGENET1K_V1.transforms()
    img = _images(*size)
    with Pipeline.load(preset_file) as pipe:
        got = pipe.run(images=img)["output"]
    want = pre(torch.from_numpy(img)).numpy()
    assert got.shape == want.shape == (1, 3, 224, 224)
    if size not in ROUNDING_FLIPS_ALLOWED:
        np.testing.assert_array_equal(got, want)
        return
    # torch's CPU kernel mixes fused and unfused multiply-adds on long filters (large downscales): a pixel
    # whose value lies within a float32 ulp of .5 may round to the neighbouring uint8 level
    std = np.array(pre.std, np.float32).reshape(1, 3, 1, 1)
    levels = np.abs(got - want) * std * 255
    assert levels.max() <= 1.001 and (levels > 0.5).sum() <= want.size * 1e-4


def test_preset_manifest_and_batch(preset_file):
    with Pipeline.load(preset_file) as pipe:
        assert pipe.verification == "passed"
        spec = pipe.signature.input("images")
        assert spec.dtype == "uint8" and spec.shape[0] == "batch" and spec.shape[2:] == ("height", "width")
        img = _images(33, 47, n=3)
        np.testing.assert_array_equal(pipe.run(images=img)["output"],
                                      ResNet18_Weights.IMAGENET1K_V1.transforms()(torch.from_numpy(img)).numpy())
        assert pipe.run(images=np.zeros((0, 3, 20, 30), np.uint8))["output"].shape == (0, 3, 224, 224)


@pytest.mark.parametrize("name, transform", [
    ("v1_compose", torchvision.transforms.Compose([
        torchvision.transforms.Resize(160), torchvision.transforms.CenterCrop((128, 112)),
        torchvision.transforms.ConvertImageDtype(torch.float32),
        torchvision.transforms.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])])),
    ("v1_fixed_size", torchvision.transforms.Compose([
        torchvision.transforms.Resize((64, 96)), torchvision.transforms.ConvertImageDtype(torch.float32)])),
    ("v2_compose_float", v2.Compose([
        v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize(96), v2.CenterCrop(80),
        v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])),
    ("v2_crop_only", v2.Compose([v2.CenterCrop(40), v2.ToDtype(torch.float32, scale=True)])),
    ("v2_compose_uint8", v2.Compose([  # torch's fixed-point uint8 kernel
        v2.Resize(100), v2.CenterCrop((96, 80)), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])),
    ("v2_uint8_out", v2.Compose([v2.Resize((45, 70))])),
    ("segmentation_preset", torchvision.models.segmentation.LRASPP_MobileNet_V3_Large_Weights
     .COCO_WITH_VOC_LABELS_V1.transforms(resize_size=64)),
    ("detection_preset", torchvision.models.detection.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.transforms()),
])
def test_compose_and_other_presets_are_bit_exact(tmp_path, name, transform):
    path = _export(transform, tmp_path, name).path
    with Pipeline.load(path) as pipe:
        for size in [(1, 1), (1, 70), (31, 17), (50, 50), (121, 203)]:
            img = _images(*size, n=2)
            want = transform(torch.from_numpy(img))
            np.testing.assert_array_equal(pipe.run(images=img)["output"], np.asarray(want), err_msg=f"{name} {size}")


@pytest.mark.parametrize("transform, named", [
    (torchvision.transforms.Compose([torchvision.transforms.RandomHorizontalFlip(),
                                     torchvision.transforms.ConvertImageDtype(torch.float32)]), "RandomHorizontalFlip"),
    (torchvision.transforms.Resize(64, interpolation=torchvision.transforms.InterpolationMode.NEAREST), "Resize"),
    (torchvision.transforms.Resize(64, antialias=False), "Resize"),
    (torchvision.transforms.Grayscale(), "Grayscale"),
])
def test_untranslatable_transform_is_named_with_the_supported_list(tmp_path, transform, named):
    with pytest.raises(ExportError) as info:
        _export(transform, tmp_path, "bad")
    msg = str(info.value)
    assert named in msg and "supported" in msg.lower()
    assert not (tmp_path / "bad.onnx").exists()
    assert all(s in msg for s in SUPPORTED)


V2_PRESET_LIKE = v2.Compose([v2.Resize(256), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True),
                             v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


@pytest.fixture(scope="module")
def v2_file(tmp_path_factory):
    return _export(V2_PRESET_LIKE, tmp_path_factory.mktemp("tv2"), "v2").path


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_v2_compose_on_uint8_is_bit_exact_at_every_size(v2_file, size):
    img = _images(*size, seed=3)
    with Pipeline.load(v2_file) as pipe:
        np.testing.assert_array_equal(pipe.run(images=img)["output"], V2_PRESET_LIKE(torch.from_numpy(img)).numpy())


def test_resnet18_with_its_preset_gives_identical_top5(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=1000).eval()
    weights = ResNet18_Weights.IMAGENET1K_V1
    labels = weights.meta["categories"]
    res = _export(weights.transforms(), tmp_path, "resnet", example=(1, 3, 200, 150), model=model,
                  post=Chain(Softmax(), TopK(5, labels=labels)), tolerances={"float32": (1e-5, 1e-4)})
    assert res.report["verification"]["status"] == "passed"
    pre = weights.transforms()
    with Pipeline.load(res.path) as pipe:
        for size in [(1, 1), (1, 700), (333, 500), (480, 640), (97, 131), (1080, 1920)]:
            img = _images(*size, seed=5)
            with torch.no_grad():
                want = torch.softmax(model(pre(torch.from_numpy(img))), -1)
            got = pipe.run(images=img)
            assert got["label_id"][0].tolist() == torch.topk(want, 5).indices[0].tolist(), size
            assert got["label"][0].tolist() == [labels[i] for i in got["label_id"][0]]
            np.testing.assert_allclose(got["score"][0], torch.topk(want, 5).values[0].numpy(), rtol=1e-5, atol=1e-7)
