"""onnxpipe.ops.classify: eager semantics against numpy, and exported files (dynamo and TorchScript) against
eager and numpy, with run-time thresholds overridden per call. Integer ids and label strings must match
exactly; scores within 1e-6 (softmax of the same float32 logits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import onnxpipe
from onnxpipe import Chain, RuntimeInput
from onnxpipe.ops.classify import LabelLookup, MultiLabel, Sigmoid, Softmax, TopK

LABELS = [f"class_{i}" for i in range(6)]
SCORE_ATOL = 1e-6


def _topk_reference(p: np.ndarray, k: int, threshold: float | None, labels: list[str] | None,
                    unknown: str = "unknown") -> dict[str, np.ndarray]:
    """numpy: descending, ties to the lower index (a stable argsort of -p), -1 / unknown below threshold."""
    order = np.argsort(-p, axis=-1, kind="stable")[:, :k]
    score = np.take_along_axis(p, order, axis=-1)
    ids = order.astype(np.int64)
    if threshold is not None:
        ids = np.where(score < np.float32(threshold), -1, ids)
    out = {"score": score, "label_id": ids}
    if labels is not None:
        table = np.array(labels + [unknown], dtype=object)
        out["label"] = table[np.where(ids < 0, len(labels), ids)]
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _check(got: dict, want: dict, where: str) -> None:
    assert list(got) == list(want), f"{where}: outputs {list(got)}, expected {list(want)}"
    for name, w in want.items():
        g = np.asarray(got[name].numpy() if isinstance(got[name], torch.Tensor) else got[name])
        assert g.shape == w.shape, f"{where}: {name} shape {g.shape}, expected {w.shape}"
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, atol=SCORE_ATOL, rtol=0, err_msg=f"{where}: {name}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{where}: {name}")


# --- construction and input errors -------------------------------------------------------------------

@pytest.mark.parametrize("make, param", [
    (lambda: TopK(0), "k"),
    (lambda: TopK(2.0), "k"),
    (lambda: TopK(True), "k"),
    (lambda: TopK(3, labels=[]), "labels"),
    (lambda: TopK(3, labels="abc"), "labels"),
    (lambda: TopK(3, labels=["a", 1, "c"]), "labels"),
    (lambda: TopK(4, labels=["a", "b", "c"]), "k"),
    (lambda: TopK(1, score_threshold=1.5), "threshold"),
    (lambda: TopK(1, score_threshold=-0.1), "threshold"),
    (lambda: TopK(1, score_threshold=float("nan")), "threshold"),
    (lambda: TopK(1, score_threshold=0.5, threshold_name="not a name"), "name"),
    (lambda: MultiLabel(2.0), "threshold"),
    (lambda: MultiLabel(0.5, labels=[]), "labels"),
    (lambda: LabelLookup([]), "labels"),
    (lambda: LabelLookup(["a"], unknown_label=None), "unknown_label"),
    (lambda: Softmax(dim=1.5), "dim"),
])
def test_bad_parameters_raise_value_error_naming_the_parameter(make, param):
    with pytest.raises(ValueError, match=param):
        make()


def test_bad_inputs_name_the_input():
    with pytest.raises(ValueError, match="scores.*at least k=3"):
        TopK(3)(torch.rand(2, 2))
    with pytest.raises(ValueError, match="scores.*6 classes"):
        TopK(2, LABELS)(torch.rand(2, 5))
    with pytest.raises(ValueError, match="scores.*float"):
        TopK(1)(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"scores.*\[batch, classes\]"):
        MultiLabel()(torch.rand(3))


# --- eager semantics ---------------------------------------------------------------------------------

def test_topk_eager_matches_numpy_including_ties_and_unknown():
    rng = np.random.default_rng(0)
    cases = [rng.random((4, 6), dtype=np.float32), np.zeros((2, 6), np.float32),  # all tied
             np.array([[0.1, 0.3, 0.3, 0.05, 0.3, 0.0]], np.float32), np.zeros((0, 6), np.float32)]
    for p in cases:
        for k, thr, labels in ((1, None, None), (3, 0.3, LABELS), (6, 0.0, LABELS), (2, 1.0, LABELS)):
            got = TopK(k, labels, score_threshold=thr)(torch.from_numpy(p))
            _check(got, _topk_reference(p, k, thr, labels), f"TopK({k}, thr={thr}) on {p.shape}")


def test_threshold_is_a_runtime_input_and_can_be_shared():
    op = TopK(2, LABELS, score_threshold=0.4)
    found = onnxpipe.stages.find_runtime_inputs(op)
    assert [(ri.name, ri.default) for _, ri in found] == [("score_threshold", 0.4)]
    ri = RuntimeInput("min_confidence", 0.2)
    op = TopK(2, score_threshold=ri)
    assert [r for _, r in onnxpipe.stages.find_runtime_inputs(op)] == [ri]
    assert op.onnxpipe_steps()[0] is op.ids


def test_multilabel_eager():
    p = np.array([[0.9, 0.5, 0.49, 0.0, 1.0, 0.2]], np.float32)
    got = MultiLabel(0.5, LABELS)(torch.from_numpy(p))
    np.testing.assert_array_equal(got["label_id"].numpy(), [[0, 1, -1, -1, 4, -1]])
    np.testing.assert_array_equal(got["label"], [["class_0", "class_1", "", "", "class_4", ""]])
    np.testing.assert_array_equal(got["score"].numpy(), p)
    assert list(MultiLabel(0.5)(torch.from_numpy(p))) == ["score", "label_id"]


def test_softmax_sigmoid():
    x = torch.randn(3, 5)
    np.testing.assert_allclose(Softmax()(x).numpy(), _softmax(x.numpy()), atol=1e-6)
    np.testing.assert_allclose(Sigmoid()(x).numpy(), 1 / (1 + np.exp(-x.numpy())), atol=1e-6)


# --- exported files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_topk_with_labels_and_unknown_exported(tmp_path, exporter):
    from onnxpipe_runtime import Pipeline

    post = Chain(Softmax(), TopK(3, LABELS, score_threshold=0.3))
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)) * 2
    edge = [{"logits": np.zeros((1, 6), np.float32)}, {"logits": np.zeros((0, 6), np.float32)}]
    ep = onnxpipe.export_pipeline(None, None, post, example_inputs={"logits": logits},
                                  dynamic_axes={"logits": {0: "batch"}}, path=tmp_path / "topk.onnx",
                                  exporter=exporter, verify_inputs=edge)
    m = ep.manifest.to_dict()
    assert m["labels"] == LABELS
    assert [(i["name"], i.get("default")) for i in m["inputs"]] == [("logits", None), ("score_threshold", 0.3)]
    assert [(o["name"], o["dtype"], o["shape"]) for o in m["outputs"]] == [
        ("score", "float32", ["batch", 3]), ("label_id", "int64", ["batch", 3]), ("label", "string", ["batch", 3])]
    assert [s["kind"] for s in m["stages"]] == ["torch"]  # post: a torch segment + the ONNX label lookup
    rng = np.random.default_rng(2)
    with Pipeline.load(ep.path, threads=1) as pipe:
        cases = [(rng.normal(size=(5, 6)).astype(np.float32) * 3, None), (np.zeros((1, 6), np.float32), 0.1),
                 (rng.normal(size=(2, 6)).astype(np.float32), 0.0), (rng.normal(size=(3, 6)).astype(np.float32), 1.0)]
        for x, thr in cases:
            feed = {"logits": x} if thr is None else {"logits": x, "score_threshold": np.float32(thr)}
            got = pipe.run(feed)
            want = _topk_reference(_softmax(x), 3, 0.3 if thr is None else thr, LABELS)
            _check(got, want, f"{exporter}: logits {x.shape}, threshold {thr}")


def test_topk_without_labels_and_multilabel_exported(tmp_path):
    from onnxpipe_runtime import Pipeline

    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    ep = onnxpipe.export_pipeline(None, None, TopK(6), example_inputs={"scores": x},
                                  dynamic_axes={"scores": {0: "batch"}}, path=tmp_path / "ids.onnx",
                                  verify_inputs=[{"scores": np.zeros((1, 6), np.float32)}])
    assert [o["name"] for o in ep.manifest.to_dict()["outputs"]] == ["score", "label_id"] and ep.manifest.to_dict()["labels"] is None
    assert [i["name"] for i in ep.manifest.to_dict()["inputs"]] == ["scores"]

    post = Chain(Sigmoid(), MultiLabel(0.5, LABELS, threshold_name="tag_threshold"))
    ep = onnxpipe.export_pipeline(None, None, post, example_inputs={"logits": x},
                                  dynamic_axes={"logits": {0: "batch"}}, path=tmp_path / "multi.onnx",
                                  verify_inputs=[{"logits": np.zeros((0, 6), np.float32)}])
    assert [(i["name"], i.get("default")) for i in ep.manifest.to_dict()["inputs"]] == [("logits", None), ("tag_threshold", 0.5)]
    logits = np.array([[3.0, -3.0, 0.0, 0.1, -0.1, 9.0]], np.float32)
    with Pipeline.load(ep.path, threads=1) as pipe:
        got = pipe.run({"logits": logits})
        np.testing.assert_array_equal(got["label_id"], [[0, -1, 2, 3, -1, 5]])  # sigmoid(0) = 0.5 is selected
        np.testing.assert_array_equal(got["label"], [["class_0", "", "class_2", "class_3", "", "class_5"]])
        got = pipe.run({"logits": logits, "tag_threshold": np.float32(0.99)})
        np.testing.assert_array_equal(got["label_id"], [[-1, -1, -1, -1, -1, 5]])
