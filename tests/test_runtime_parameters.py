"""Run-time threshold inputs are checked the same way whatever the Python type, against the manifest's range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxpipe import Chain, RuntimeInput, export_pipeline
from onnxpipe.ops.classify import Softmax, TopK
from onnxpipe.ops.detect import BatchedNMS
from onnxpipe_runtime import InputError, Pipeline


@pytest.fixture(scope="module")
def topk_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("params") / "topk.onnx"
    export_pipeline(None, None, Chain(Softmax(), TopK(2, labels=["a", "b", "c"], score_threshold=0.5)),
                    example_inputs={"logits": torch.tensor([[2.0, 1.0, 0.1], [0.0, 0.0, 3.0]])},
                    dynamic_axes={"logits": {0: "batch"}}, path=path)
    return path


def test_manifest_carries_the_range(topk_file):
    with Pipeline.load(topk_file) as pipe:
        spec = pipe.signature.input("score_threshold")
        assert spec.range == (0.0, 1.0) and spec.default == 0.5
        assert pipe.signature.to_dict()["inputs"][1]["range"] == [0.0, 1.0]


@pytest.mark.parametrize("value", [0.3, np.float64(0.3), np.float32(0.3), np.array(0.3), np.array(0.3, np.float32)])
def test_every_type_of_the_same_number_gives_the_same_answer(topk_file, value):
    logits = np.array([[2.0, 1.0, 0.1]], np.float32)
    with Pipeline.load(topk_file) as pipe:
        want = pipe.run(logits=logits, score_threshold=np.float32(0.3))
        got = pipe.run(logits=logits, score_threshold=value)
        assert got["label"].tolist() == want["label"].tolist()
        assert pipe.run(logits=logits, score_threshold=1)["label"].tolist() == pipe.run(
            logits=logits, score_threshold=np.int64(1))["label"].tolist()
        assert pipe.run(logits=logits, score_threshold=0)["label"].tolist() == [["a", "b"]]


@pytest.mark.parametrize("value, said", [
    (2.0, "2 given"), (np.float64(2.0), "2 given"), (np.array(-0.1), "-0.1 given"), (3, "3 given"),
    (float("nan"), "nan given"), (np.inf, "inf given"), (True, "bool"), ("0.5", "str"),
    (np.array([0.5]), "shape [1]"), ([0.5], "shape [1]"),
])
def test_out_of_range_or_not_a_number_is_refused_the_same_way(topk_file, value, said):
    logits = np.array([[2.0, 1.0, 0.1]], np.float32)
    with Pipeline.load(topk_file) as pipe:
        with pytest.raises(InputError, match="input 'score_threshold'") as info:
            pipe.run(logits=logits, score_threshold=value)
    assert said in str(info.value) and "[0, 1]" in str(info.value)


def test_nms_iou_has_a_range_and_score_threshold_none(tmp_path):
    boxes = torch.tensor([[[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.0]]])
    scores = torch.tensor([[[0.9], [0.8], [0.7]]])
    path = tmp_path / "nms.onnx"
    export_pipeline(None, None, BatchedNMS(0.5, 0.1), example_inputs={"boxes": boxes, "scores": scores},
                    dynamic_axes={"boxes": {0: "batch", 1: "n"}, "scores": {0: "batch", 1: "n"}}, path=path)
    with Pipeline.load(path) as pipe:
        assert pipe.signature.input("iou_threshold").range == (0.0, 1.0)
        assert pipe.signature.input("score_threshold").range is None
        with pytest.raises(InputError, match="input 'iou_threshold': 1.5 given"):
            pipe.run(boxes=boxes.numpy(), scores=scores.numpy(), iou_threshold=1.5)
        assert len(pipe.run(boxes=boxes.numpy(), scores=scores.numpy(), score_threshold=np.float64(-5))["output"]) == 2


def test_runtime_input_range_is_checked_at_construction():
    with pytest.raises(ValueError, match="default: expected a number in \\[0, 1\\]"):
        RuntimeInput("t", 1.5, range=(0, 1))
    with pytest.raises(ValueError, match="finite"):
        RuntimeInput("t", float("nan"))
