"""export_pipeline: parity with eager PyTorch on other shapes, loops, verification failures, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnxpipe_runtime import Pipeline

import onnxpipe
from onnxpipe import Chain, ExportError, ExportVerificationError, OnnxStage, RuntimeInput, export_pipeline

IMAGE_AXES = {"image": {0: "batch", 1: "height", 2: "width"}}


class ToTensor(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() / 255.0
        return torch.nn.functional.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False)


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).relu().mean(dim=(2, 3)))


class Decide(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.threshold = RuntimeInput("score_threshold", 0.4)

    def forward(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        probs = logits.softmax(-1)
        score, idx = probs.max(-1)
        return {"probs": probs, "label_id": torch.where(score >= self.threshold.value(), idx, -1)}


def pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8))


@pytest.fixture(scope="module")
def image_pipeline(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "img.onnx"
    result = export_pipeline(ToTensor(), TinyNet().eval(), Decide(), example_inputs={"image": pixels(2, 20, 24, 3)},
                             dynamic_axes=IMAGE_AXES, path=path, metadata={"name": "tiny"})
    return result


def eager(image: torch.Tensor, threshold: float = 0.4) -> dict[str, np.ndarray]:
    d = Decide()
    d.threshold.default = threshold
    out = d(TinyNet().eval()(ToTensor()(image)))
    return {k: v.detach().numpy() for k, v in out.items()}


def test_image_pipeline_matches_eager_on_unseen_shapes(image_pipeline):
    report = image_pipeline.report["verification"]
    assert report["passed"] and len(report["cases"]) >= 4
    shape_cases = [c for c in report["cases"] if "half their defaults" not in c["case"]]
    tried = {tuple(c["inputs"]["image"]) for c in shape_cases}
    assert len(tried) == len(shape_cases)  # every case a different shape
    with Pipeline.load(image_pipeline.path) as pipe:
        for shape in [(1, 7, 9, 3), (3, 40, 17, 3), (1, 1, 1, 3)]:
            img = pixels(*shape, seed=sum(shape))
            got = pipe.run(image=img.numpy())
            want = eager(img)
            np.testing.assert_allclose(got["probs"], want["probs"], atol=1e-5, rtol=1e-4)
            np.testing.assert_array_equal(got["label_id"], want["label_id"])


def test_runtime_threshold_is_an_optional_input(image_pipeline):
    img = pixels(4, 16, 16, 3, seed=3)
    with Pipeline.load(image_pipeline.path) as pipe:
        for thr in (0.0, 0.34, 1.0):
            got = pipe.run(image=img.numpy(), score_threshold=np.float32(thr))
            np.testing.assert_array_equal(got["label_id"], eager(img, thr)["label_id"])
        assert (pipe.run(image=img.numpy(), score_threshold=np.float32(1.0))["label_id"] == -1).all()
    entry = next(e for e in image_pipeline.manifest.to_dict()["inputs"] if e["name"] == "score_threshold")
    assert entry == {"name": "score_threshold", "dtype": "float32", "shape": [], "optional": True, "default": 0.4}


def test_manifest_round_trip(image_pipeline):
    model = onnx.load(str(image_pipeline.path))
    props = {p.key: p.value for p in model.metadata_props}
    manifest = json.loads(props["onnxpipe.manifest"])
    assert manifest == image_pipeline.manifest.to_dict()
    assert manifest["format"] == "onnxpipe.manifest" and manifest["format_version"] == 1
    assert manifest["sdk_version"] == onnxpipe.__version__
    assert manifest["inputs"][0] == {"name": "image", "dtype": "uint8", "shape": ["batch", "height", "width", 3]}
    assert [o["name"] for o in manifest["outputs"]] == ["probs", "label_id"]
    assert manifest["outputs"][0]["shape"] == ["batch", 3]
    assert [s["name"] for s in manifest["stages"]] == ["pre", "model", "post"]
    assert manifest["name"] == "tiny" and manifest["opset"] == 18 and manifest["precision"] == "fp32"
    assert model.ir_version == 8
    prefixes = {n.name.split("/")[0] for n in model.graph.node}
    assert prefixes == {"pre", "model", "post"}
    with Pipeline.load(image_pipeline.path) as pipe:
        assert pipe.signature.source == "manifest"
        assert [s.name for s in pipe.signature.inputs] == ["image", "score_threshold"]


def test_embedded_vectors_verify_the_file(image_pipeline, tmp_path):
    with Pipeline.load(image_pipeline.path) as pipe:
        vec = pipe.embedded_vectors()
    assert vec is not None and vec["inputs"]["image"].shape == (2, 20, 24, 3)
    assert set(vec["expected"]) == {"probs", "label_id"}
    exe = Path(sys.executable).parent / "onnxpipe"
    res = subprocess.run([str(exe), "verify", str(image_pipeline.path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "1 passed, 0 failed" in res.stdout, res.stdout + res.stderr


def test_export_is_byte_identical_when_repeated(tmp_path):
    paths = []
    for i in range(2):
        p = tmp_path / f"a{i}.onnx"
        export_pipeline(ToTensor(), TinyNet().eval(), Decide(), example_inputs={"image": pixels(2, 20, 24, 3)},
                        dynamic_axes=IMAGE_AXES, path=p, metadata={"name": "same"})
        paths.append(p)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_export_is_byte_identical_across_processes(tmp_path, image_pipeline):
    script = f"""
import sys; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
from test_export import *
export_pipeline(ToTensor(), TinyNet().eval(), Decide(), example_inputs={{"image": pixels(2, 20, 24, 3)}},
                dynamic_axes=IMAGE_AXES, path={str(tmp_path / 'b.onnx')!r}, metadata={{"name": "tiny"}})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    assert (tmp_path / "b.onnx").read_bytes() == image_pipeline.path.read_bytes()


# --- loops: scripted -> ONNX Loop, exact at every length; traced -> caught by verification -------------------

@torch.jit.script
def running_max_decay(x: torch.Tensor) -> torch.Tensor:
    """out[:, t] = max(x[:, t], 0.5 * out[:, t-1]): a recurrence over a dynamic length (Viterbi-like)."""
    out = torch.zeros_like(x)
    prev = x[:, 0]
    out[:, 0] = prev
    for t in range(1, x.size(1)):
        prev = torch.maximum(x[:, t], 0.5 * prev)
        out[:, t] = prev
    return out


class ScriptedLoop(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return running_max_decay(x)


class TracedLoop(torch.nn.Module):
    """The same recurrence as a Python loop: tracing unrolls it at the example's length."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev = x[:, 0]
        outs = [prev]
        for t in range(1, x.shape[1]):
            prev = torch.maximum(x[:, t], 0.5 * prev)
            outs.append(prev)
        return torch.stack(outs, dim=1)


def reference_loop(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    out[:, 0] = x[:, 0]
    for t in range(1, x.shape[1]):
        out[:, t] = np.maximum(x[:, t], 0.5 * out[:, t - 1])
    return out


def test_scripted_loop_exports_as_onnx_loop_correct_at_every_length(tmp_path):
    x = torch.randn(2, 5)
    res = export_pipeline(None, ScriptedLoop(), None, example_inputs={"x": x},
                          dynamic_axes={"x": {0: "batch", 1: "time"}}, path=tmp_path / "loop.onnx")
    assert res.manifest.to_dict()["stages"][0]["exporter"] == "torchscript"
    model = onnx.load(str(res.path))
    ops = [n.op_type for n in model.graph.node]
    assert "Loop" in ops and ops.count("Max") <= 1, ops  # one loop body, not an unrolled chain
    rng = np.random.default_rng(1)
    with Pipeline.load(res.path) as pipe:
        for t in range(1, 13):
            xs = rng.normal(size=(3, t)).astype(np.float32)
            np.testing.assert_allclose(pipe.run(x=xs)["output"], reference_loop(xs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_traced_python_loop_is_caught_at_export(tmp_path, exporter):
    with pytest.raises(ExportVerificationError) as info:
        export_pipeline(None, TracedLoop(), None, example_inputs={"x": torch.randn(2, 5)},
                        dynamic_axes={"x": {0: "batch", 1: "time"}}, path=tmp_path / "bad.onnx", exporter=exporter)
    msg = str(info.value)
    assert "time" in msg or "output" in msg
    assert "torch.jit.script" in msg  # points at the fix


def test_verification_failure_names_output_shapes_and_diff(tmp_path):
    class ShapeAsConstant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float(x.shape[1])  # a Python float from a shape: fixed at the example's size

    with pytest.raises(ExportVerificationError) as info:
        export_pipeline(None, ShapeAsConstant(), None, example_inputs={"x": torch.ones(2, 4)},
                        dynamic_axes={"x": {1: "n"}}, path=tmp_path / "c.onnx", exporter="torchscript")
    msg = str(info.value)
    assert "output 'output'" in msg and "max abs diff" in msg and "input shapes" in msg


def test_tolerances_are_overridable(tmp_path):
    class Noisy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.onnx.is_in_onnx_export():
                return x + 1e-2
            return x

    with pytest.raises(ExportVerificationError):
        export_pipeline(None, Noisy(), None, example_inputs={"x": torch.ones(2, 3)}, path=tmp_path / "n.onnx",
                        exporter="torchscript")
    res = export_pipeline(None, Noisy(), None, example_inputs={"x": torch.ones(2, 3)}, path=tmp_path / "n.onnx",
                          exporter="torchscript", tolerances={"output": (2e-2, 0)})
    assert res.report["verification"]["passed"]


def test_declared_axis_that_is_not_dynamic_fails(tmp_path):
    class FixedReshape(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(2, 6)  # batch fixed by the code

    with pytest.raises((ExportVerificationError)):
        export_pipeline(None, FixedReshape(), None, example_inputs={"x": torch.ones(2, 6)},
                        dynamic_axes={"x": {0: "batch"}}, path=tmp_path / "f.onnx")


# --- ONNX-native stages compose with torch stages -------------------------------------------------------------

class NameLookup(OnnxStage):
    """(probs [B, 3], label_id int64 [B]) -> probability, class_id (unchanged) and label string [B] gathered
    from embedded names (-1 -> 'unknown')."""

    input_names = ("probs", "label_id")
    output_names = ("probability", "class_id", "label")
    onnxpipe_labels = ("cat", "dog", "bird")

    def build(self, opset: int) -> onnx.ModelProto:
        from onnx import TensorProto, helper, numpy_helper

        names = np.array([*self.onnxpipe_labels, "unknown"], dtype=object)
        g = helper.make_graph(
            [
                helper.make_node("Identity", ["probs"], ["probability"]),
                helper.make_node("Identity", ["label_id"], ["class_id"]),
                helper.make_node("Less", ["label_id", "zero"], ["neg"]),
                helper.make_node("Where", ["neg", "unknown_index", "label_id"], ["idx"]),
                helper.make_node("Gather", ["names", "idx"], ["label"]),
            ],
            "lookup",
            [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3]),
             helper.make_tensor_value_info("label_id", TensorProto.INT64, ["batch"])],
            [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 3]),
             helper.make_tensor_value_info("class_id", TensorProto.INT64, ["batch"]),
             helper.make_tensor_value_info("label", TensorProto.STRING, ["batch"])],
            initializer=[numpy_helper.from_array(names, "names"),
                         numpy_helper.from_array(np.array(0, np.int64), "zero"),
                         numpy_helper.from_array(np.array(3, np.int64), "unknown_index")],
        )
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])

    def reference(self, probs: np.ndarray, label_id: np.ndarray) -> dict[str, np.ndarray]:
        names = np.array([*self.onnxpipe_labels, "unknown"], dtype=object)
        return {"probability": probs, "class_id": label_id, "label": names[np.where(label_id < 0, 3, label_id)]}


def test_onnx_native_stage_composes_with_torch(tmp_path):
    res = export_pipeline(ToTensor(), TinyNet().eval(), Chain(Decide(), NameLookup()),
                          example_inputs={"image": pixels(2, 20, 24, 3)}, dynamic_axes=IMAGE_AXES,
                          path=tmp_path / "lookup.onnx")
    assert res.manifest.to_dict()["labels"] == ["cat", "dog", "bird"]
    assert [(o["name"], o["dtype"]) for o in res.manifest.to_dict()["outputs"]] == [
        ("probability", "float32"), ("class_id", "int64"), ("label", "string")]
    assert res.manifest.to_dict()["stages"][2]["exporter"] == "dynamo+onnx"
    img = pixels(3, 9, 30, 3, seed=5)
    with Pipeline.load(res.path) as pipe:
        got = pipe.run(image=img.numpy(), score_threshold=np.float32(0.0))
        names = np.array(["cat", "dog", "bird"], dtype=object)
        np.testing.assert_array_equal(got["label"], names[got["class_id"]])
        got = pipe.run(image=img.numpy(), score_threshold=np.float32(1.0))
        assert list(got["label"]) == ["unknown"] * 3


# --- argument errors --------------------------------------------------------------------------------------

def test_argument_errors_name_the_problem(tmp_path):
    with pytest.raises(ExportError, match="example_inputs"):
        export_pipeline(None, TinyNet(), None, example_inputs={}, path=tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="'nope' is not an input"):
        export_pipeline(None, TinyNet(), None, example_inputs={"x": torch.ones(1, 3, 8, 8)},
                        dynamic_axes={"nope": {0: "b"}}, path=tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="exporter"):
        export_pipeline(None, TinyNet(), None, example_inputs={"x": torch.ones(1, 3, 8, 8)},
                        path=tmp_path / "x.onnx", exporter="magic")
    with pytest.raises(ExportError, match="all None"):
        export_pipeline(None, None, None, example_inputs={"x": torch.ones(1)}, path=tmp_path / "x.onnx")
    net = TinyNet()
    net.drop = torch.nn.Dropout(0.5)
    with pytest.raises(ExportError, match="training mode"):
        export_pipeline(None, net.train(), None, example_inputs={"x": torch.ones(1, 3, 8, 8)}, path=tmp_path / "x.onnx")


class MaskedSum(torch.nn.Module):
    """x [B, T], lengths [B]: sum of the first lengths[b] values; lengths beyond T are invalid input."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling() and not torch.jit.is_tracing() and bool((lengths > x.shape[1]).any()):
            raise ValueError(f"lengths must be <= T={x.shape[1]}")
        mask = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        return (x * mask).sum(1)


def test_generated_inputs_the_eager_pipeline_rejects_are_reported_not_hidden(tmp_path):
    res = export_pipeline(None, MaskedSum(), None,
                          example_inputs={"x": torch.randn(3, 8), "lengths": torch.tensor([8, 2, 5])},
                          dynamic_axes={"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
                          path=tmp_path / "m.onnx")
    cases = res.report["verification"]["cases"]
    skipped = [c for c in cases if "skipped" in c]
    assert skipped and all("lengths must be <= T" in c["skipped"] for c in skipped)
    assert len([c for c in cases if "skipped" not in c]) >= 3  # the example and the grown shapes were checked


def test_verification_needs_at_least_one_other_shape(tmp_path):
    class OnlyTime8(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not torch.compiler.is_compiling() and x.shape[1] != 8:
                raise ValueError("time must be 8")
            return x * 2

    with pytest.raises(ExportVerificationError, match="could not try any shape other than the example"):
        export_pipeline(None, OnlyTime8(), None, example_inputs={"x": torch.randn(2, 8)},
                        dynamic_axes={"x": {1: "time"}}, path=tmp_path / "o.onnx")


class PassThroughLookup(NameLookup):
    """Outputs reuse the input names (score and label_id pass through unchanged), plus label."""

    output_names = ("probs", "label_id", "label")

    def build(self, opset: int) -> onnx.ModelProto:
        m = super().build(opset)
        g = m.graph
        keep = [n for n in g.node if n.op_type != "Identity"]
        del g.node[:]
        g.node.extend(keep)
        g.output[0].name, g.output[1].name = "probs", "label_id"
        return m

    def reference(self, probs: np.ndarray, label_id: np.ndarray) -> dict[str, np.ndarray]:
        out = super().reference(probs, label_id)
        return {"probs": probs, "label_id": label_id, "label": out["label"]}


def test_onnx_native_stage_may_pass_inputs_through(tmp_path):
    res = export_pipeline(None, TinyNet().eval(), Chain(Decide(), PassThroughLookup()),
                          example_inputs={"x": torch.rand(2, 3, 10, 10)}, dynamic_axes={"x": {0: "batch"}},
                          path=tmp_path / "pass.onnx")
    assert [o["name"] for o in res.manifest.to_dict()["outputs"]] == ["probs", "label_id", "label"]
    with Pipeline.load(res.path) as pipe:
        got = pipe.run(x=np.random.default_rng(0).random((4, 3, 10, 10), dtype=np.float32), score_threshold=0.0)
    names = np.array(["cat", "dog", "bird"], dtype=object)
    np.testing.assert_array_equal(got["label"], names[got["label_id"]])


def test_output_dims_are_named_for_torchscript_parts(tmp_path):
    res = export_pipeline(ToTensor(), None, None, example_inputs={"image": pixels(2, 20, 24, 3)},
                          dynamic_axes=IMAGE_AXES, path=tmp_path / "ts.onnx", exporter="torchscript")
    assert res.manifest.to_dict()["outputs"][0]["shape"] == ["batch", 3, 12, 12]
    out = onnx.load(str(res.path)).graph.output[0]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 3, 12, 12]


def test_runtime_input_that_the_graph_ignores_is_an_error(tmp_path):
    class Folded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.threshold = RuntimeInput("score_threshold", 0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x > float(self.threshold.default)  # the default baked in: a caller could not change it

    with pytest.raises(ExportError, match="run-time input 'score_threshold' is not used by the exported graph"):
        export_pipeline(None, Folded(), None, example_inputs={"x": torch.rand(2, 3)}, path=tmp_path / "f.onnx")


def test_verification_tries_other_run_time_input_values(image_pipeline):
    cases = image_pipeline.report["verification"]["cases"]
    assert any("half their defaults" in c["case"] and "0.2" in c["case"] for c in cases)


def test_verification_catches_a_run_time_input_the_graph_does_not_honour(tmp_path):
    class Ignores(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.threshold = RuntimeInput("score_threshold", 0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.threshold.value()
            if torch.onnx.is_in_onnx_export():
                t = t * 0 + 0.5  # wired to the graph input, but its value never matters
            return (x > t).to(torch.int64)

    with pytest.raises(ExportVerificationError, match="half their defaults"):
        export_pipeline(None, Ignores(), None, example_inputs={"x": torch.linspace(0, 1, 12).reshape(3, 4)},
                        path=tmp_path / "i.onnx", exporter="torchscript")
