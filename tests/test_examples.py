"""The example pipelines: the committed golden-vector models are exactly what the examples export today."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from onnxpipe import export_pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["digits", "detector", "tagger"])
def test_committed_vector_model_is_current(name, tmp_path):
    kwargs = dict(importlib.import_module(f"examples.{name}").factory())
    pre, model, post = kwargs.pop("pre", None), kwargs.pop("model", None), kwargs.pop("post", None)
    result = export_pipeline(pre, model, post, path=tmp_path / f"{name}.onnx", **kwargs)
    assert result.report["verification"]["passed"]
    committed = ROOT / "tests" / "vectors" / name / "model.onnx"
    assert result.path.read_bytes() == committed.read_bytes(), (
        f"examples/{name}.py no longer exports tests/vectors/{name}/model.onnx: run `make vectors` and commit")
