"""onnxpipe.ops.detect: BatchedNMS against torchvision.ops.batched_nms and against the exported graph.

The exported files are checked against eager (exactly: same rows, same order, bit-equal floats) and against
torchvision on random and adversarial inputs, on batch sizes and box counts other than the example's
(0, 1, many), with run-time thresholds overridden, for both exporters.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torchvision

import onnxpipe
from onnxpipe.ops.detect import (
    BatchedNMS,
    UnLetterbox,
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    clip_boxes,
    nms_keep_mask,
    unletterbox_boxes,
)
from onnxpipe_runtime import Pipeline
from onnxpipe_runtime.errors import PipelineError

DYNAMIC = {"boxes": {0: "batch", 1: "boxes"}, "scores": {0: "batch", 1: "boxes"}}
F32 = np.float32


# -- data ----------------------------------------------------------------------------------------------------


def random_case(b: int, n: int, c: int, seed: int, *, grid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Clustered boxes (so NMS has work to do). ``grid``: coordinates and scores on coarse grids (many ties)."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 100, size=(b, 4, 2))
    pick = rng.integers(0, 4, size=(b, n))
    xy = np.take_along_axis(centers, pick[..., None], axis=1) + rng.normal(0, 6, size=(b, n, 2))
    wh = rng.uniform(2, 30, size=(b, n, 2))
    scores = rng.uniform(0, 1, size=(b, n, c))
    if grid:
        xy, wh, scores = np.round(xy / 4) * 4, np.round(wh / 4) * 4, np.round(scores * 8) / 8
    boxes = np.concatenate([xy, xy + wh], axis=-1)
    return boxes.astype(F32), scores.astype(F32)


def adversarial_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    cases = {}
    one = np.array([[10, 10, 30, 30]], dtype=F32)
    # the same box five times with the same score, in every class
    cases["identical boxes, tied scores"] = (np.repeat(one, 5, 0)[None], np.full((1, 5, 2), 0.75, F32))
    # shifted copies with tied scores: which one goes first decides the result
    shifted = np.array([[i, 0, i + 10, 10] for i in range(8)], dtype=F32)
    cases["overlapping boxes, tied scores"] = (shifted[None], np.full((1, 8, 3), 0.5, F32))
    # IoU exactly 0.5 (dyadic coordinates): kept at iou_threshold 0.5 (suppression needs IoU > threshold)
    halves = np.array([[0, 0, 2, 1], [0, 0, 1, 1], [0, 0, 4, 4], [0, 0, 4, 2]], dtype=F32)
    cases["IoU equal to the threshold"] = (halves[None], np.array([[[0.9], [0.8], [0.7], [0.6]]], F32))
    # zero-area boxes (points and lines, repeated) mixed with real ones
    degenerate = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 0], [0, 0, 0, 10], [0, 0, 10, 10], [0, 0, 10, 10]],
                          dtype=F32)
    cases["zero-area boxes"] = (degenerate[None], np.array([[[0.9], [0.8], [0.7], [0.6], [0.5], [0.4]]], F32))
    # scores equal to the threshold (0.25 is exact in float32) are not candidates
    b, s = random_case(2, 12, 2, 3)
    s[0, :6] = 0.25
    cases["scores equal to the threshold"] = (b, s)
    b, s = random_case(3, 20, 3, 4)
    cases["everything below the threshold"] = (b, s * F32(0.2))
    b, s = random_case(2, 10, 2, 5)
    s[1] = 0.0  # the second image has no detection, the first some
    cases["one image empty"] = (b, s)
    cases["no boxes"] = (np.zeros((2, 0, 4), F32), np.zeros((2, 0, 3), F32))
    cases["empty batch"] = (np.zeros((0, 7, 4), F32), np.zeros((0, 7, 3), F32))
    cases["one box"] = (one[None], np.array([[[0.3, 0.9, 0.2]]], F32))
    cases["many boxes, more than max_detections"] = random_case(2, 300, 3, 6)
    cases["coarse grid: ties everywhere"] = random_case(3, 60, 3, 7, grid=True)
    return cases


# -- references ------------------------------------------------------------------------------------------


def torchvision_reference(boxes: np.ndarray, scores: np.ndarray, iou: float, thr: float, max_det: int,
                          agnostic: bool) -> np.ndarray:
    """Rows from torchvision.ops.batched_nms (per image), ordered by score desc, then class (per-class mode
    only), then box index: BatchedNMS's documented order among equal scores."""
    iou64 = float(F32(iou))  # the file compares in float32; give torchvision the same threshold
    rows = []
    for b in range(boxes.shape[0]):
        bx, sc = torch.from_numpy(boxes[b]), torch.from_numpy(scores[b])
        if agnostic and sc.shape[0]:
            best, cls = sc.max(dim=1)
            n_idx = torch.nonzero(best > F32(thr)).flatten()
            c_idx, s_sel = cls[n_idx], best[n_idx]
            keep = torchvision.ops.nms(bx[n_idx], s_sel, iou64)
        else:
            n_idx, c_idx = torch.nonzero(sc > F32(thr), as_tuple=True)
            s_sel = sc[n_idx, c_idx]
            keep = torchvision.ops.batched_nms(bx[n_idx], s_sel, c_idx, iou64)
        k_n, k_c, k_s = n_idx[keep].numpy(), c_idx[keep].numpy(), s_sel[keep].numpy()
        order = np.lexsort((k_n, -k_s) if agnostic else (k_n, k_c, -k_s))[:max_det]
        for j in order:
            rows.append([b, *boxes[b, k_n[j]], k_s[j], k_c[j]])
    return np.array(rows, dtype=F32).reshape(-1, 7)


def scalar_nms_reference(boxes: np.ndarray, scores: np.ndarray, max_per_class: int, iou: float,
                         thr: float) -> np.ndarray:
    """ONNX Runtime's kernel transcribed literally (one box pair at a time), as a keep mask [B, C, N]."""
    keep = np.zeros(scores.shape, dtype=bool)

    def suppress(a: np.ndarray, s: np.ndarray) -> bool:  # a = candidate, s = selected, both [y1, x1, y2, x2]
        x1_min, x1_max = sorted((a[1], a[3]))
        x2_min, x2_max = sorted((s[1], s[3]))
        ix_min, ix_max = max(x1_min, x2_min), min(x1_max, x2_max)
        if ix_max <= ix_min:
            return False
        y1_min, y1_max = sorted((a[0], a[2]))
        y2_min, y2_max = sorted((s[0], s[2]))
        iy_min, iy_max = max(y1_min, y2_min), min(y1_max, y2_max)
        if iy_max <= iy_min:
            return False
        inter = F32(ix_max - ix_min) * F32(iy_max - iy_min)
        if inter <= 0:
            return False
        area1 = F32(x1_max - x1_min) * F32(y1_max - y1_min)
        area2 = F32(x2_max - x2_min) * F32(y2_max - y2_min)
        union = F32(area1 + area2) - inter
        if area1 <= 0 or area2 <= 0 or union <= 0:
            return False
        return bool(F32(inter / union) > F32(iou))

    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            cands = sorted((i for i in range(scores.shape[2]) if scores[b, c, i] > F32(thr)),
                           key=lambda i: (-scores[b, c, i], i))
            selected: list[int] = []
            for i in cands:
                if len(selected) >= max_per_class:
                    break
                if not any(suppress(boxes[b, i], boxes[b, j]) for j in selected):
                    selected.append(i)
                    keep[b, c, i] = True
    return keep


def eager(op: BatchedNMS, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return op(torch.from_numpy(boxes), torch.from_numpy(scores)).numpy()


def run_file(pipe: Pipeline, boxes: np.ndarray, scores: np.ndarray, **thresholds: float) -> np.ndarray:
    feed = {"boxes": boxes, "scores": scores, **{k: np.array(v, F32) for k, v in thresholds.items()}}
    return pipe.run(feed)["detections"]


def same(got: np.ndarray, want: np.ndarray, where: str) -> None:
    assert got.dtype == np.float32, where
    assert got.shape == want.shape, f"{where}: shape {got.shape} vs {want.shape}\n{got}\n{want}"
    assert np.array_equal(got, want), f"{where}:\n{got}\nvs\n{want}"


# -- exported files (one per exporter / mode, shared by the tests) ---------------------------------------


def export(op: BatchedNMS, path: Path, exporter: str, verify: bool) -> onnxpipe.ExportedPipeline:
    boxes, scores = random_case(2, 30, 3, 0)
    extra = [
        {"boxes": np.zeros((0, 5, 4), F32), "scores": np.zeros((0, 5, 3), F32)},
        {"boxes": np.zeros((3, 0, 4), F32), "scores": np.zeros((3, 0, 3), F32)},
        dict(zip(("boxes", "scores"), random_case(1, 200, 3, 1))),
    ]
    return onnxpipe.export_pipeline(
        op, None, None, example_inputs={"boxes": boxes, "scores": scores}, dynamic_axes=DYNAMIC, path=path,
        output_names=["detections"], exporter=exporter, verify=verify, verify_inputs=extra,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[BatchedNMS, Path, dict]]:
    d = tmp_path_factory.mktemp("detect")
    out = {}
    for key, agnostic, exporter, verify in (
        ("dynamo", False, "dynamo", True),
        ("dynamo-agnostic", True, "dynamo", False),
        ("torchscript", False, "torchscript", True),
        ("torchscript-agnostic", True, "torchscript", False),
    ):
        op = BatchedNMS(iou_threshold=0.45, score_threshold=0.25, max_detections=7, class_agnostic=agnostic).eval()
        ex = export(op, d / f"{key}.onnx", exporter, verify)
        out[key] = (op, ex.path, ex.manifest.to_dict())
    return out


# -- construction ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"iou_threshold": -0.1}, "iou_threshold"),
        ({"iou_threshold": float("nan")}, "iou_threshold"),
        ({"iou_threshold": True}, "iou_threshold"),
        ({"score_threshold": float("inf")}, "score_threshold"),
        ({"score_threshold": "0.3"}, "score_threshold"),
        ({"max_detections": 0}, "max_detections"),
        ({"max_detections": 2.5}, "max_detections"),
        ({"max_detections": True}, "max_detections"),
        ({"class_agnostic": 1}, "class_agnostic"),
        ({"iou_name": "iou threshold"}, "iou_name"),
        ({"iou_name": "t", "score_name": "t"}, "score_name"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(kwargs: dict, param: str) -> None:
    with pytest.raises(ValueError, match=rf"BatchedNMS: {param}: expected .*, got"):
        BatchedNMS(**kwargs)


def test_bad_inputs_raise_value_error_naming_them() -> None:
    op = BatchedNMS()
    boxes, scores = (torch.from_numpy(a) for a in random_case(2, 5, 3, 0))
    with pytest.raises(ValueError, match="input 'boxes': expected float32"):
        op(boxes.double(), scores)
    with pytest.raises(ValueError, match=r"input 'boxes': expected shape \[B, N, 4\]"):
        op(boxes[..., :3], scores)
    with pytest.raises(ValueError, match="input 'scores': expected .* like 'boxes'"):
        op(boxes, scores[:, :4])
    with pytest.raises(ValueError, match="input 'scores': expected at least one class"):
        op(boxes, scores[..., :0])
    with pytest.raises(ValueError, match=r"input 'iou_threshold': expected a value in \[0, 1\], got 1.5"):
        from onnxpipe.stages import bind_runtime_inputs

        with bind_runtime_inputs({op.iou_threshold: torch.tensor(1.5)}):
            op(boxes, scores)


# -- eager semantics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("agnostic", [False, True])
def test_eager_matches_torchvision(agnostic: bool) -> None:
    op = BatchedNMS(iou_threshold=0.45, score_threshold=0.25, max_detections=7, class_agnostic=agnostic)
    cases = dict(adversarial_cases())
    cases.update({f"random seed {s}": random_case(3, 50, 4, 100 + s) for s in range(6)})
    for name, (boxes, scores) in cases.items():
        if name == "overlapping boxes, tied scores" and not agnostic:
            continue  # torchvision's order among equal scores is unspecified (see test_ties_...)
        want = torchvision_reference(boxes, scores, 0.45, 0.25, 7, agnostic)
        same(eager(op, boxes, scores), want, name)


def test_iou_equal_to_threshold_is_kept_and_above_is_suppressed() -> None:
    boxes, scores = adversarial_cases()["IoU equal to the threshold"]
    # IoU(0, 1) = IoU(0, 3)... = 0.5 exactly: nothing suppressed at 0.5, suppression just below it
    at = BatchedNMS(iou_threshold=0.5, score_threshold=0.0)
    assert eager(at, boxes, scores).shape[0] == 4
    below = BatchedNMS(iou_threshold=0.4999, score_threshold=0.0)
    kept = eager(below, boxes, scores)
    assert kept[:, 5].tolist() == [F32(0.9), F32(0.7)]
    for iou in (0.4999, 0.5):
        want = torchvision_reference(boxes, scores, iou, 0.0, 100, False)
        same(eager(BatchedNMS(iou_threshold=iou, score_threshold=0.0), boxes, scores), want, f"iou {iou}")


def test_ties_go_to_the_lower_box_index_like_onnxruntime() -> None:
    boxes, scores = adversarial_cases()["overlapping boxes, tied scores"]
    out = eager(BatchedNMS(iou_threshold=0.45, score_threshold=0.1), boxes, scores)
    # IoU(i, i+k) = (10-k)/(10+k): > 0.45 for k <= 3, not for k = 4: box 0 wins its chain, then box 4
    assert out[:, 1].tolist() == [0, 4] * 3  # x1 of the kept boxes, per class
    assert out[:, 6].tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_kernel_matches_a_literal_transcription(seed: int) -> None:
    boxes, scores = random_case(2, 40, 2, 200 + seed, grid=seed % 2 == 1)
    st = scores.transpose(0, 2, 1).copy()
    for limit, iou, thr in ((100, 0.45, 0.25), (3, 0.2, 0.5), (100, 0.0, 0.0), (100, 1.0, 0.1)):
        want = scalar_nms_reference(boxes, st, limit, iou, thr)
        got = nms_keep_mask(boxes, st, limit, F32(iou), F32(thr))
        assert np.array_equal(got, want), (seed, limit, iou, thr)


def test_sorted_by_batch_then_score_and_capped_per_image() -> None:
    boxes, scores = random_case(4, 300, 3, 9)
    out = eager(BatchedNMS(iou_threshold=0.7, score_threshold=0.05, max_detections=11), boxes, scores)
    batch = out[:, 0]
    assert np.all(np.diff(batch) >= 0)
    for b in range(4):
        rows = out[batch == b]
        assert len(rows) == 11
        assert np.all(np.diff(rows[:, 5]) <= 0)


# -- the exported files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["dynamo", "dynamo-agnostic", "torchscript", "torchscript-agnostic"])
def test_file_matches_eager_and_torchvision(files: dict, key: str) -> None:
    op, path, _ = files[key]
    cases = dict(adversarial_cases())
    cases.update({f"random {b}x{n}": random_case(b, n, 3, 300 + b * n) for b, n in ((1, 1), (1, 64), (5, 17), (2, 500))})
    with Pipeline.load(path, threads=1) as pipe:
        for name, (boxes, scores) in cases.items():
            if scores.shape[-1] != 3:  # the files were exported for 3 classes
                scores = np.concatenate([scores, np.zeros(scores.shape[:2] + (3,), F32)], axis=-1)[..., :3]
            got = run_file(pipe, boxes, scores)
            same(got, eager(op, boxes, scores), f"{key}: {name} (file vs eager)")
            if name != "overlapping boxes, tied scores" or op.class_agnostic:
                want = torchvision_reference(boxes, scores, 0.45, 0.25, 7, op.class_agnostic)
                same(got, want, f"{key}: {name} (file vs torchvision)")


@pytest.mark.parametrize("key", ["dynamo", "torchscript"])
def test_thresholds_are_run_time_inputs(files: dict, key: str) -> None:
    op, path, manifest = files[key]
    optional = {e["name"]: e for e in manifest["inputs"] if e.get("optional")}
    assert optional["score_threshold"]["default"] == 0.25 and optional["iou_threshold"]["default"] == 0.45
    assert optional["score_threshold"]["shape"] == [] and optional["score_threshold"]["dtype"] == "float32"
    from onnxpipe.stages import bind_runtime_inputs

    boxes, scores = random_case(3, 80, 3, 11)
    with Pipeline.load(path, threads=1) as pipe:
        base = run_file(pipe, boxes, scores)
        for iou, thr in ((0.45, 0.6), (0.1, 0.25), (1.0, 0.0), (0.0, 0.9), (0.3, 2.0)):
            got = run_file(pipe, boxes, scores, iou_threshold=iou, score_threshold=thr)
            with torch.no_grad(), bind_runtime_inputs({op.iou_threshold: torch.tensor(iou),
                                                       op.score_threshold: torch.tensor(thr)}):
                want = eager(op, boxes, scores)
            same(got, want, f"{key}: iou {iou}, score {thr}")
            same(got, torchvision_reference(boxes, scores, iou, thr, 7, False), f"{key}: vs torchvision")
        assert run_file(pipe, boxes, scores, score_threshold=2.0).shape == (0, 7)
        assert not np.array_equal(run_file(pipe, boxes, scores, iou_threshold=0.0), base)
        with pytest.raises(PipelineError, match="iou_threshold"):
            run_file(pipe, boxes, scores, iou_threshold=1.5)


def test_dynamo_graph_uses_nonmaxsuppression_and_keeps_axes_dynamic(files: dict) -> None:
    _, path, manifest = files["dynamo"]
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("NonMaxSuppression") == 1 and "TopK" in ops
    assert "Loop" not in ops and "Div" not in ops  # no float division for integer index arithmetic
    shapes = {e["name"]: e["shape"] for e in manifest["inputs"]}
    assert shapes["boxes"] == ["batch", "boxes", 4] and shapes["scores"] == ["batch", "boxes", 3]
    assert manifest["verification"]["passed"]
    assert {e["name"]: e["shape"] for e in manifest["outputs"]}["detections"][1] == 7


# -- box helpers --------------------------------------------------------------------------------------------


def test_box_conversions_match_torchvision() -> None:
    boxes = torch.from_numpy(random_case(2, 9, 1, 0)[0])
    for fmt, ours in (("cxcywh", box_xyxy_to_cxcywh),):
        assert torch.equal(ours(boxes), torchvision.ops.box_convert(boxes, "xyxy", fmt))
    cxcywh = torchvision.ops.box_convert(boxes, "xyxy", "cxcywh")
    assert torch.allclose(box_cxcywh_to_xyxy(cxcywh), torchvision.ops.box_convert(cxcywh, "cxcywh", "xyxy"))
    assert torch.allclose(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(boxes)), boxes, atol=1e-5)
    with pytest.raises(ValueError, match=r"box_cxcywh_to_xyxy: input 'boxes': expected shape \[..., 4\]"):
        box_cxcywh_to_xyxy(boxes[..., :2])


def test_clip_and_unletterbox() -> None:
    from onnxpipe.ops.image import Letterbox

    h, w, size = 30, 80, 64
    image = torch.rand(1, 3, h, w)
    _, scale, pad = Letterbox(size)(image)
    # a box in original pixels -> letterbox pixels -> back
    box = torch.tensor([[8.0, 4.0, 40.0, 20.0]])
    lb = box * scale + torch.cat([pad, pad])
    assert torch.allclose(unletterbox_boxes(lb, scale, pad), box, atol=1e-4)
    clipped = clip_boxes(torch.tensor([[-5.0, -1.0, 90.0, 31.0], [1.0, 2.0, 3.0, 4.0]]), torch.tensor([h, w]))
    assert clipped.tolist() == [[0.0, 0.0, 80.0, 30.0], [1.0, 2.0, 3.0, 4.0]]
    det = torch.tensor([[0, *lb[0].tolist(), 0.9, 2.0], [0, -3.0, -3.0, 70.0, 70.0, 0.5, 1.0]])
    out = UnLetterbox()(det, scale, pad, torch.tensor([h, w], dtype=torch.float32))
    assert torch.allclose(out[0, 1:5], box[0], atol=1e-4)
    assert out[1, 1:5].tolist() == [0.0, 0.0, 80.0, 30.0]
    assert torch.equal(out[:, [0, 5, 6]], det[:, [0, 5, 6]])
    assert math.isclose(float(scale), size / w, rel_tol=1e-6)


# -- the detector example (eager only: its export is verified by `make vectors` / `make demo`) -------------


def test_detector_example_weights_detect_the_generated_shapes() -> None:
    from examples import detector

    pre, model, post = detector.load_detector()
    run = detector._eager_runner(pre, model, post)
    metrics = detector.evaluate(run, detector.generate(40, detector.TRAIN_SIDES, seed=4321))
    assert metrics["recall"] >= 0.75 and metrics["precision"] >= 0.6 and metrics["mean_iou"] >= 0.65, metrics
    for name, inputs in detector.vector_cases():
        image = inputs["image"]
        det = run(image)
        assert det.dtype == np.float32 and det.shape[1] == 7, name
        h, w = image.shape[1:3]
        assert np.all((det[:, [1, 3]] >= 0) & (det[:, [1, 3]] <= w) & (det[:, [2, 4]] >= 0) & (det[:, [2, 4]] <= h))
    kwargs = detector.factory()
    assert kwargs["post"].onnxpipe_labels == detector.CLASSES
    assert {"pre", "model", "post", "example_inputs", "dynamic_axes", "verify_inputs"} <= set(kwargs)
