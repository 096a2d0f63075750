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
    man = res.manifest
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
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None).eval()
    with pytest.raises(ExportError, match="FasterRCNN cannot be exported.*supported: SSD"):
        export_pipeline(None, model, None, example_inputs={"images": torch.rand(1, 3, 64, 64)},
                        path=tmp_path / "frcnn.onnx")
    assert not (tmp_path / "frcnn.onnx").exists()


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
    assert res.manifest["verification"]["status"] == "passed"
    assert res.manifest["outputs"][0]["dtype"] == "int64"
    with Pipeline.load(res.path) as pipe:
        for n, h, w in [(2, 1, 1), (1, 240, 320), (2, 61, 45)]:
            img = images(n, h, w, seed=h)
            got = pipe.run(images=img)["labels"]
            with torch.no_grad():
                want = model(pre(torch.from_numpy(img)))["out"].argmax(1).numpy()
            assert got.shape == want.shape == (n, h, w)
            assert (got != want).sum() <= 1e-3 * got.size  # arg-max flips only where logits tie within noise
    assert runtime_main(["verify", str(res.path)]) == 0  # the embedded example, with the same allowance
