"""Nothing half-written (the file appears only once verified; three verification states) and export errors that
point at the cause (stage class name, the user's source line, a category, torch's logs captured, <= 2 KB)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch

from onnxpipe import ExportError, ExportVerificationError, export_pipeline
from onnxpipe.errors import MAX_MESSAGE
from onnxpipe_runtime import Pipeline, UnverifiedPipelineWarning
from onnxpipe_runtime.cli import main as runtime_main


class Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class ShapeAsConstant(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float(x.shape[1])  # fixed at the example's size: verification fails on other sizes


def _manifest(path) -> dict:
    model = onnx.load(str(path))
    return json.loads(next(p.value for p in model.metadata_props if p.key == "onnxpipe.manifest"))


def test_failed_verification_leaves_no_file_and_keeps_an_older_one(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportVerificationError) as info:
        export_pipeline(None, ShapeAsConstant(), None, example_inputs={"x": torch.ones(2, 4)},
                        dynamic_axes={"x": {1: "n"}}, path=path, exporter="torchscript")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no staged file either
    assert info.value.report["verification"]["status"] == "failed"
    assert info.value.report["verification"]["passed"] is False

    export_pipeline(None, Doubler(), None, example_inputs={"x": torch.ones(2, 4)}, path=path)
    before = path.read_bytes()
    with pytest.raises(ExportVerificationError):
        export_pipeline(None, ShapeAsConstant(), None, example_inputs={"x": torch.ones(2, 4)},
                        dynamic_axes={"x": {1: "n"}}, path=path, exporter="torchscript")
    assert path.read_bytes() == before  # the previous good file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_three_verification_states(tmp_path, capsys):
    passed = export_pipeline(None, Doubler(), None, example_inputs={"x": torch.ones(2, 4)},
                             dynamic_axes={"x": {0: "batch"}}, path=tmp_path / "p.onnx")
    assert _manifest(passed.path)["verification"]["status"] == "passed"
    not_run = export_pipeline(None, Doubler(), None, example_inputs={"x": torch.ones(2, 4)},
                              path=tmp_path / "u.onnx", verify=False)
    ver = _manifest(not_run.path)["verification"]
    assert ver["status"] == "not run" and ver["passed"] is False and not_run.report["verification"] == ver

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Pipeline.load(passed.path) as pipe:
            assert pipe.verification == "passed"
    with pytest.warns(UnverifiedPipelineWarning, match="verify=False"):
        with Pipeline.load(not_run.path) as pipe:
            assert pipe.verification == "not run"
            np.testing.assert_array_equal(pipe.run(x=np.ones((2, 4), np.float32))["output"], 2)

    # a file whose verification failed (written by hand: the exporter never leaves one at path)
    model = onnx.load(str(not_run.path))
    man = _manifest(not_run.path)
    man["verification"] = {"status": "failed", "passed": False, "cases": []}
    next(p for p in model.metadata_props if p.key == "onnxpipe.manifest").value = json.dumps(man)
    onnx.save(model, str(tmp_path / "f.onnx"))
    with pytest.warns(UnverifiedPipelineWarning, match="FAILED"):
        assert Pipeline.load(tmp_path / "f.onnx").verification == "failed"

    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, said in (("p.onnx", "verification: passed"), ("u.onnx", "NOT VERIFIED"), ("f.onnx", "FAILED")):
            assert runtime_main(["inspect", str(tmp_path / name)]) == 0
            assert said in capsys.readouterr().out
            assert runtime_main(["inspect", "--json", str(tmp_path / name)]) == 0
            assert json.loads(capsys.readouterr().out)["verification"] == said.split()[-1].lower().replace(
                "verified", "not run").replace("not not run", "not run")


class Branchy(torch.nn.Module):
    """A docstring long enough that naming the stage by it would be noise. """ * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x > 0).any():  # data-dependent: no graph can branch on it
            return x * 2
        return x


class FixedReshape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(2, 6)  # batch fixed by the code


def _line_of(cls: type, text: str) -> int:
    import inspect

    lines, start = inspect.getsourcelines(cls)
    return start + next(i for i, line in enumerate(lines) if text in line)


@pytest.mark.parametrize("axes", [None, {"x": {0: "batch"}}])
def test_torch_failure_names_stage_source_line_and_category(tmp_path, capfd, axes):
    with pytest.raises(ExportError) as info:
        export_pipeline(None, Branchy(), None, example_inputs={"x": torch.ones(2, 3)}, dynamic_axes=axes,
                        path=tmp_path / "b.onnx")
    e = info.value
    first = str(e).splitlines()[0]
    assert not isinstance(e, ExportVerificationError)  # the axes are not the cause: it fails without them too
    assert "stage 'model' (Branchy)" in first and "docstring" not in first
    assert f"test_export_states.py:{_line_of(Branchy, 'if (x > 0)')}" in first
    assert "data-dependent control flow" in first and e.category == "data-dependent control flow"
    assert "dynamic axis" not in str(e)
    assert len(str(e).encode()) <= MAX_MESSAGE and len(e.details) > len(str(e))
    out, err = capfd.readouterr()
    assert len(out) + len(err) < 2000, (out + err)[:3000]  # torch's logs were captured, not printed
    assert not (tmp_path / "b.onnx").exists()


def test_dynamic_axis_is_blamed_only_when_it_is_the_cause(tmp_path):
    with pytest.raises(ExportVerificationError) as info:
        export_pipeline(None, FixedReshape(), None, example_inputs={"x": torch.ones(2, 6)},
                        dynamic_axes={"x": {0: "batch"}}, path=tmp_path / "f.onnx")
    msg = str(info.value)
    assert "dynamic ax" in msg and "stage 'model' (FixedReshape)" in msg.splitlines()[0]
    assert len(msg.encode()) <= MAX_MESSAGE


def test_a_subprocess_export_failure_prints_nothing_but_the_error(tmp_path):
    code = (
        "import torch, sys\n"
        "from onnxpipe import export_pipeline, ExportError\n"
        "sys.path.insert(0, %r)\n"
        "from test_export_states import Branchy\n"
        "try:\n"
        "    export_pipeline(None, Branchy(), None, example_inputs={'x': torch.ones(2, 3)}, path=%r)\n"
        "except ExportError as e:\n"
        "    print(len(str(e)))\n" % (str(__import__('pathlib').Path(__file__).parent), str(tmp_path / 's.onnx'))
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stderr) < 500, proc.stderr[:3000]
