"""torchvision detectors as `model`: ssdlite320 with its preset -> the [K, 7] table, equal to torchvision's own
output at other sizes and batches, thresholds as run-time inputs; unsupported detectors named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from examples import tv_detector
from examples.tv_classifier import images
from onnxpipe import ExportError, export_pipeline
from onnxpipe_runtime import InputError, Pipeline


@pytest.fixture(scope="module")
def ssd(tmp_path_factory):
    kwargs = tv_detector.factory()
    pre, model = kwargs.pop("pre"), kwargs.pop("model")
    res = export_pipeline(pre, model, None, path=tmp_path_factory.mktemp("ssd") / "ssd.onnx", **kwargs)
    return res, tv_detector.build_model()


def _torchvision_table(model, img: np.ndarray, score: float | None = None, iou: float | None = None) -> np.ndarray:
    if score is not None:
        model.score_thresh = score
    if iou is not None:
        model.nms_thresh = iou
    with torch.no_grad():
        out = model(list(torch.from_numpy(img).float() / 255))
    rows = [np.concatenate([np.full((len(r["scores"]), 1), b, np.float32), r["boxes"].numpy(),
                            r["scores"].numpy()[:, None], r["labels"].numpy()[:, None].astype(np.float32)], axis=1)
            for b, r in enumerate(out)]
    return np.concatenate(rows) if rows else np.zeros((0, 7), np.float32)


def test_verified_with_the_detection_table_manifest(ssd):
    res, _ = ssd
    man = res.manifest.to_dict()
    assert man["verification"]["status"] == "passed"
    assert [o["name"] for o in man["outputs"]] == ["detections"] and man["outputs"][0]["shape"][1] == 7
    inputs = {i["name"]: i for i in man["inputs"]}
    assert inputs["images"]["dtype"] == "uint8" and inputs["images"]["shape"] == ["batch", 3, "height", "width"]
    assert inputs["score_threshold"]["default"] == pytest.approx(tv_detector.SCORE_THRESHOLD)
    assert inputs["score_threshold"]["range"] == [0.0, 1.0] and inputs["iou_threshold"]["range"] == [0.0, 1.0]
    assert any(c["inputs"]["images"][2:] != [120, 160] for c in man["verification"]["cases"])


@pytest.mark.parametrize("shape", [(1, 3, 300, 200), (2, 3, 97, 131), (1, 3, 1, 1), (3, 3, 64, 64)])
def test_same_rows_as_torchvision_at_other_sizes(ssd, shape):
    res, model = ssd
    img = images(shape[0], shape[2], shape[3], seed=sum(shape))
    with Pipeline.load(res.path) as pipe:
        got = pipe.run(images=img)["detections"]
    want = _torchvision_table(model, img)
    assert got.shape == want.shape
    got, want = _canonical(got), _canonical(want)
    np.testing.assert_allclose(got, want, atol=0.1, rtol=1e-3)
    np.testing.assert_array_equal(got[:, [0, 6]], want[:, [0, 6]])  # image index and label exactly


def test_thresholds_are_run_time_inputs(ssd):
    res, model = ssd
    img = images(2, 150, 100, seed=7)
    with Pipeline.load(res.path) as pipe:
        got = pipe.run(images=img, score_threshold=np.float64(0.7), iou_threshold=0.2)["detections"]
        with pytest.raises(InputError, match="score_threshold"):
            pipe.run(images=img, score_threshold=1.5)
    want = _torchvision_table(model, img, score=0.7, iou=0.2)
    assert 0 < len(got) < len(_torchvision_table(model, img, score=tv_detector.SCORE_THRESHOLD, iou=0.55))
    np.testing.assert_allclose(_canonical(got), _canonical(want), atol=0.1, rtol=1e-3)


def _canonical(table: np.ndarray) -> np.ndarray:
    """Rows in a fixed order: detections of equal score (float noise apart) may come in either order."""
    keys = (np.round(table[:, 2], 0), np.round(table[:, 1], 0), table[:, 6], np.round(table[:, 5], 3), table[:, 0])
    return table[np.lexsort(keys)]


def test_unsupported_detector_is_named(tmp_path):
    from torchvision.models.detection import fcos_resnet50_fpn

    model = fcos_resnet50_fpn(weights=None, weights_backbone=None).eval()
    with pytest.raises(ExportError, match="FCOS cannot be exported.*supported: SSD.*FasterRCNN.*RetinaNet"):
        export_pipeline(None, model, None, example_inputs={"images": torch.rand(1, 3, 64, 64)},
                        path=tmp_path / "fcos.onnx")
    assert not (tmp_path / "fcos.onnx").exists()


def test_detection_tables_compare_as_sets_among_near_equal_scores():
    from onnxpipe.verify import Tolerance, match_detections

    tol = Tolerance(0.1, 1e-3)
    want = np.array([[0, 1, 1, 5, 5, 0.90, 3], [0, 2, 2, 6, 6, 0.80001, 4], [0, 3, 3, 7, 7, 0.80000, 4],
                     [0, 9, 9, 20, 20, 0.10, 1], [1, 0, 0, 4, 4, 0.70, 2]], np.float64)
    assert match_detections(want, want.copy(), tol)[:2] == (0, 0)
    swapped = want[[0, 2, 1, 3, 4]]
    assert match_detections(want, swapped, tol)[:2] == (2, 0)  # near-equal scores: either order
    cut = want.copy()
    cut[3] = [0, 30, 30, 40, 40, 0.10001, 1]  # the last place went to another near-equal detection
    assert match_detections(want, cut, tol) is None  # a list that was not cut: no swap at the end
    assert match_detections(want, cut, tol, max_detections=4)[:2] == (0, 1)
    wrong_class = want.copy()
    wrong_class[0, 6] = 5
    assert match_detections(want, wrong_class, tol) is None
    moved_box = want.copy()
    moved_box[4, 1:5] += 3
    assert match_detections(want, moved_box, tol) is None
    assert match_detections(want, want[:3], tol) is None  # rows lost that are not at the cut-off


@pytest.fixture(scope="module")
def lraspp(tmp_path_factory):
    from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights, lraspp_mobilenet_v3_large

    # torchvision's init makes the features vanish: every pixel would get one label
    model = tv_detector.reinitialise(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval(), 0)
    pre = LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1.transforms(resize_size=None)
    res = export_pipeline(pre, model, None, example_inputs={"images": torch.from_numpy(images(1, 97, 131))},
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}},
                          path=tmp_path_factory.mktemp("seg") / "lraspp.onnx")
    return res, pre, model


def test_segmentation_gives_a_label_map_at_the_input_size(lraspp):
    from onnxpipe_runtime.cli import main as runtime_main

    res, pre, model = lraspp
    assert res.manifest.verification_status == "passed"
    assert res.manifest.outputs[0].dtype == "int64"
    with Pipeline.load(res.path) as pipe:
        for n, h, w in [(2, 1, 1), (1, 240, 320), (2, 61, 45)]:
            img = images(n, h, w, seed=h)
            got = pipe.run(images=img)["labels"]
            with torch.no_grad():
                want = model(pre(torch.from_numpy(img)))["out"].argmax(1).numpy()
            assert got.shape == want.shape == (n, h, w)
            assert (got != want).sum() <= 1e-3 * got.size  # arg-max flips only where logits tie within noise
    assert runtime_main(["verify", str(res.path)]) == 0  # the embedded example, with the same allowance


# -- Faster R-CNN and RetinaNet (GeneralizedRCNNTransform: the resize follows the input's size) ----------------

#: (atol, rtol) for boxes in pixels and scores: float noise of the resize, convolutions and RoiAlign
RCNN_TOLERANCE = (0.1, 1e-3)
#: sizes other than the example (97x131): odd, tiny, very wide (15x640 after Faster R-CNN's resize), a batch of
#: 2, and sizes whose resized size a float32 scale gets wrong (77x131: torchvision's float64 gives 319x544 at
#: min_size 320, float32 320x544; 47x64: 95x130 at min_size 96, float32 96x130)
RCNN_SHAPES = [(1, 3, 300, 200), (2, 3, 61, 45), (1, 3, 1, 1), (1, 3, 17, 700), (1, 3, 333, 99), (1, 3, 77, 131),
               (1, 3, 47, 64)]


def _calibrate(model: torch.nn.Module, targets: list[tuple[torch.nn.Module, float, float]]) -> torch.nn.Module:
    """Random heads give saturated scores and boxes: scale each (layer, std, mean) so its outputs have that
    spread on one image (seeded), then ``scores`` spread over (0, 1) and boxes stay near their anchors."""
    seen: dict[torch.nn.Module, list[torch.Tensor]] = {}
    hooks = [layer.register_forward_hook(lambda mod, i, o: seen.setdefault(mod, []).append(o))
             for layer, _, _ in targets]
    with torch.no_grad():
        model(list(torch.from_numpy(images(1, 128, 160, seed=0)).float() / 255))
        for h in hooks:
            h.remove()
        for layer, std, mean in targets:
            out = torch.cat([o.flatten() for o in seen[layer]])
            layer.weight.mul_(std / out.std())
            layer.bias.mul_(std / out.std()).add_(mean - out.mean() * std / out.std())
    return model


def _faster_rcnn() -> torch.nn.Module:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None,
                                                  num_classes=tv_detector.NUM_CLASSES).eval()
    tv_detector.reinitialise(model, 0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # reinitialise() seeds the convolutions; torchvision drew these from the global RNG
        for layer in model.roi_heads.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.weight.shape[1] ** 0.5)
                layer.bias.zero_()
    rpn, predictor = model.rpn.head, model.roi_heads.box_predictor
    return _calibrate(model, [(rpn.cls_logits, 2.0, -1.0), (rpn.bbox_pred, 0.2, 0.0),
                              (predictor.cls_score, 1.5, 0.0), (predictor.bbox_pred, 0.3, 0.0)])


def _retinanet() -> torch.nn.Module:
    from torchvision.models.detection import retinanet_resnet50_fpn_v2

    # a small min_size keeps the test fast: the file follows the model's own min_size / max_size
    model = retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=tv_detector.NUM_CLASSES,
                                      min_size=96, max_size=160).eval()
    tv_detector.reinitialise(model, 0)
    head = model.head
    return _calibrate(model, [(head.classification_head.cls_logits, 1.5, -2.0),
                              (head.regression_head.bbox_reg, 0.2, 0.0)])


RCNN_MODELS = {"FasterRCNN": (_faster_rcnn, "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights"),
               "RetinaNet": (_retinanet, "RetinaNet_ResNet50_FPN_V2_Weights")}


@pytest.fixture(scope="module", params=list(RCNN_MODELS))
def rcnn(request, tmp_path_factory):
    import torchvision.models.detection as tvd

    build, weights = RCNN_MODELS[request.param]
    model = build()
    res = export_pipeline(getattr(tvd, weights).COCO_V1.transforms(), model, None,
                          example_inputs={"images": torch.from_numpy(images(1, 97, 131, seed=1))},
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}},
                          tolerances={"detections": RCNN_TOLERANCE},
                          path=tmp_path_factory.mktemp("rcnn") / f"{request.param}.onnx")
    return request.param, res, model


def _detections_per_img(name: str, model) -> int:
    return model.roi_heads.detections_per_img if name == "FasterRCNN" else model.detections_per_img


def test_rcnn_verified_on_other_sizes_with_the_table_manifest(rcnn):
    name, res, model = rcnn
    man = res.manifest.to_dict()
    assert man["verification"]["status"] == "passed"
    assert [o["name"] for o in man["outputs"]] == ["detections"] and man["outputs"][0]["shape"][1] == 7
    inputs = {i["name"]: i for i in man["inputs"]}
    assert inputs["images"]["dtype"] == "uint8" and inputs["images"]["shape"] == ["batch", 3, "height", "width"]
    assert inputs["score_threshold"]["default"] == pytest.approx(0.05)  # both models' score_thresh
    assert inputs["score_threshold"]["range"] == [0.0, 1.0] and inputs["iou_threshold"]["range"] == [0.0, 1.0]
    cases = man["verification"]["cases"]
    assert sum(c["inputs"]["images"][2:] != [97, 131] for c in cases) >= 3
    assert all(c["outputs"]["detections"]["rows"] > 0 for c in cases)  # non-empty tables compared


def test_rcnn_same_rows_as_torchvision_at_other_sizes(rcnn):
    from onnxpipe.verify import Tolerance, match_detections

    name, res, model = rcnn
    cap = _detections_per_img(name, model)
    with Pipeline.load(res.path) as pipe:
        for shape in RCNN_SHAPES:
            img = images(shape[0], shape[2], shape[3], seed=sum(shape))
            got = pipe.run(images=img)["detections"]
            want = _torchvision_table(model, img)
            assert len(want) > 0, shape
            assert got.shape == want.shape, shape
            # image index and label exactly; rows of near-equal scores may swap, also at a full list's cut-off
            match = match_detections(want, got, Tolerance(*RCNN_TOLERANCE), max_detections=cap)
            assert match is not None, (name, shape)
            assert match[2] <= RCNN_TOLERANCE[0], (name, shape, match)


def test_rcnn_resized_size_is_torchvisions_float64_rule(rcnn):
    from onnxpipe.ops.torchvision_detection import translate_model

    name, _, model = rcnn
    wrapper = translate_model(model)
    for h, w in [(77, 131), (47, 64), (266, 97), (1, 1), (17, 700), (700, 17), (1080, 1920)]:
        x = torch.zeros(1, 3, h, w)
        with torch.no_grad():
            want = model.transform([x[0]])[0].image_sizes[0]
        assert tuple(int(v) for v in wrapper._resized_size(x)) == tuple(want), (name, h, w)


def test_rcnn_thresholds_are_run_time_inputs(rcnn):
    from onnxpipe.verify import Tolerance, match_detections

    name, res, model = rcnn
    img = images(2, 150, 100, seed=7)
    holder = model.roi_heads if name == "FasterRCNN" else model  # where the model keeps its thresholds
    default = _torchvision_table(model, img)
    holder.score_thresh, holder.nms_thresh = 0.5, 0.3
    try:
        want = _torchvision_table(model, img)
    finally:
        holder.score_thresh, holder.nms_thresh = 0.05, 0.5
    with Pipeline.load(res.path) as pipe:
        got = pipe.run(images=img, score_threshold=np.float64(0.5), iou_threshold=0.3)["detections"]
        with pytest.raises(InputError, match="iou_threshold"):
            pipe.run(images=img, iou_threshold=1.5)
    assert 0 < len(want) < len(default)
    assert match_detections(want, got, Tolerance(*RCNN_TOLERANCE), _detections_per_img(name, model)) is not None


def test_rcnn_detector_errors_name_the_model():
    from torchvision.models.detection import keypointrcnn_resnet50_fpn

    from onnxpipe.ops.torchvision_detection import translate_model

    with pytest.raises(ExportError, match="KeypointRCNN cannot be exported.*supported: SSD.*FasterRCNN.*RetinaNet"):
        translate_model(keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None))
