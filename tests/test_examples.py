"""The example pipelines: the committed golden-vector models are what the examples export today.

Compared by what does not depend on the CPU: the graph (weights included) byte for byte, and the manifest and
embedded vectors with the figures eager PyTorch computed on this machine (verification differences, expected
outputs) taken out — those differ in the last digits between CPUs (Intel / AMD) with identical graphs, and are
compared with the vectors' tolerance instead.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from onnxpipe import export_pipeline
from onnxpipe_runtime import tensor_json
from onnxpipe_runtime.vectors import mismatches

ROOT = Path(__file__).resolve().parents[1]
MANIFEST, VECTORS = "onnxpipe.manifest", "onnxpipe.vectors"


def machine_independent(model: onnx.ModelProto) -> dict[str, Any]:
    """Everything in the file but the figures eager PyTorch computed on this CPU."""
    meta = {p.key: p.value for p in model.metadata_props}
    manifest = json.loads(meta.pop(MANIFEST))
    for case in manifest["verification"].get("cases", []):
        case["outputs"] = sorted(case.get("outputs", {}))  # which outputs were compared, not their differences
    vectors = json.loads(meta.pop(VECTORS)) if VECTORS in meta else None
    if vectors is not None:
        vectors = {k: v for k, v in vectors.items() if k != "expected"}
    header = copy.copy(model)
    header.ClearField("graph")
    header.ClearField("metadata_props")
    return {
        "header": header.SerializeToString(deterministic=True),
        "graph": model.graph.SerializeToString(deterministic=True),
        "manifest": manifest, "vectors": vectors, "other metadata": meta,
    }


def embedded_expected(model: onnx.ModelProto) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    doc = json.loads({p.key: p.value for p in model.metadata_props}[VECTORS])
    return {k: tensor_json.decode(k, v) for k, v in doc["expected"].items()}, doc["tolerance"]


@pytest.mark.parametrize("name", ["digits", "detector", "tagger"])
def test_committed_vector_model_is_current(name, tmp_path):
    kwargs = dict(importlib.import_module(f"examples.{name}").factory())
    pre, model, post = kwargs.pop("pre", None), kwargs.pop("model", None), kwargs.pop("post", None)
    result = export_pipeline(pre, model, post, path=tmp_path / f"{name}.onnx", **kwargs)
    assert result.report["verification"]["passed"]
    fresh = onnx.load(result.path)
    committed = onnx.load(ROOT / "tests" / "vectors" / name / "model.onnx")
    stale = f"examples/{name}.py no longer exports tests/vectors/{name}/model.onnx: run `make vectors` and commit"
    got, want = machine_independent(fresh), machine_independent(committed)
    for part in want:
        assert got[part] == want[part], f"{stale} (the {part} differs)"
    fresh_expected, tolerance = embedded_expected(fresh)
    committed_expected, _ = embedded_expected(committed)
    tol = {k: (v["atol"], v["rtol"]) for k, v in tolerance.items()}
    assert not mismatches(fresh_expected, committed_expected, tol), stale


def test_the_comparison_sees_a_changed_weight_and_ignores_cpu_figures():
    committed = onnx.load(ROOT / "tests" / "vectors" / "digits" / "model.onnx")
    other_cpu = copy.deepcopy(committed)
    meta = {p.key: p for p in other_cpu.metadata_props}
    manifest = json.loads(meta[MANIFEST].value)
    for case in manifest["verification"]["cases"]:
        for fig in case.get("outputs", {}).values():
            if isinstance(fig, dict) and "max_abs_diff" in fig:
                fig["max_abs_diff"] += 1e-9
    meta[MANIFEST].value = json.dumps(manifest)
    assert machine_independent(other_cpu) == machine_independent(committed)

    changed = copy.deepcopy(committed)
    weight = changed.graph.initializer[0]
    arr = onnx.numpy_helper.to_array(weight).copy()
    arr.reshape(-1)[0] += 1
    weight.CopyFrom(onnx.numpy_helper.from_array(arr, weight.name))
    assert machine_independent(changed)["graph"] != machine_independent(committed)["graph"]
