"""The Python runtime against the contract in spec/: its tables, its schemas and every conformance case, through
the library and through the CLI. (tests/test_spec_cli.py compares the three CLIs with each other.)"""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import onnx
import pytest

from onnxpipe_runtime import Pipeline, PipelineError, tensor_json
from onnxpipe_runtime.errors import EXIT_STATUS
from onnxpipe_runtime.format import MANIFEST_KEY
from onnxpipe_runtime.vectors import mismatches

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec"
DEFAULT_TOLERANCE = {"float32": {"atol": 1e-5, "rtol": 1e-4}, "float64": {"atol": 1e-9, "rtol": 1e-7}}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def spec_cases() -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(id, the file's document, one case or None for a file-level load_error) for every spec/cases file."""
    out: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    for path in sorted((SPEC / "cases").glob("*.json")):
        doc = load_json(path)
        if "load_error" in doc:
            out.append((f"{path.stem}:load", doc, None))
        for case in doc.get("cases", []):
            out.append((f"{path.stem}:{case['name']}", doc, case))
    return out


CASES = spec_cases()


def inputs_text(case: dict[str, Any]) -> str:
    return case["inputs_text"] if "inputs_text" in case else json.dumps(case["inputs"], ensure_ascii=False)


def expected_of(case: dict[str, Any]) -> dict[str, np.ndarray]:
    if "expected_file" in case:
        return tensor_json.load(ROOT / case["expected_file"])
    return {k: tensor_json.decode(k, v) for k, v in case["expected"].items()}


def tolerance_of(doc: dict[str, Any], case: dict[str, Any]) -> dict[str, tuple[float, float]]:
    tol = dict(DEFAULT_TOLERANCE) | doc.get("tolerance", {}) | case.get("tolerance", {})
    return {k: (float(v["atol"]), float(v["rtol"])) for k, v in tol.items()}


# -- the tables ------------------------------------------------------------------------------------------------
def test_exit_statuses_are_the_error_tables():
    table = load_json(SPEC / "errors.json")
    want = {c["code"]: c["exit"] for c in table["codes"] if c["exit"] is not None}
    assert EXIT_STATUS == want


def test_sidecar_statuses_are_the_error_tables():
    status = pytest.importorskip("onnxpipe_runtime.serve.status")
    table = load_json(SPEC / "errors.json")
    want = {c["code"]: c["grpc"] for c in table["codes"] if c["grpc"] is not None and not c.get("client_only")}
    assert {k: v for k, v in status.GRPC_STATUS.items()} == want


def test_dtypes_and_widening_are_the_dtype_table():
    table = load_json(SPEC / "dtypes.json")["dtypes"]
    assert [d["name"] for d in table] == list(tensor_json.DTYPES)
    assert {d["name"]: tuple(d["widens_from"]) for d in table} == tensor_json.WIDENS_FROM
    for d in table:
        if d["name"] != "string":
            assert np.dtype(d["numpy"]) == tensor_json.DTYPES[d["name"]]


def test_limits_are_the_limit_table():
    table = {lim["name"]: lim["default"] for lim in load_json(SPEC / "limits.json")["limits"]}
    assert table == vars(tensor_json.LIMITS)


def test_generated_onnx_classes_are_current(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (requirements/dev.txt)")
    subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path / "kserve"),
                    "--onnx-out", str(tmp_path)], check=True, capture_output=True, timeout=120)
    package = ROOT / "runtimes" / "python" / "onnxpipe_runtime"
    for name in ("_onnx_pb2.py", "_onnx_pb2.pyi"):
        assert filecmp.cmp(tmp_path / name, package / name, shallow=False), \
            f"{name} is stale: run `python proto/generate.py` and commit the result"


# -- the schemas -----------------------------------------------------------------------------------------------
def committed_models() -> list[Path]:
    found = sorted((ROOT / "tests" / "vectors").glob("*/model*.onnx")) + sorted((SPEC / "models").glob("*.onnx"))
    return found + sorted((ROOT / "tests" / "fixtures").glob("*.onnx"))


@pytest.mark.parametrize("path", committed_models(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_manifest_follows_the_schema(path):
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        pytest.skip("not an ONNX file on purpose (a corrupt fixture)")
    meta = {p.key: p.value for p in model.metadata_props}
    if MANIFEST_KEY not in meta:
        pytest.skip("plain ONNX: no manifest")
    if path.stem in ("bad_manifest", "future_manifest"):
        pytest.skip("a deliberately unreadable manifest (the runtimes refuse it: spec/cases)")
    manifest = json.loads(meta[MANIFEST_KEY])
    jsonschema.validate(manifest, load_json(SPEC / "manifest.schema.json"))


def test_the_schema_refuses_a_broken_manifest():
    schema = load_json(SPEC / "manifest.schema.json")
    good = {"format": "onnxpipe.manifest", "format_version": 1, "name": "x",
            "inputs": [{"name": "t", "dtype": "float32", "shape": [], "optional": True, "default": 0.5}], "outputs": []}
    jsonschema.validate(good, schema)
    for broken in ({**good, "format": "other"}, {**good, "inputs": [{"name": "t", "dtype": "float16", "shape": []}]},
                   {**good, "inputs": [{"name": "t", "dtype": "float32", "shape": [], "optional": True}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def tensor_json_files() -> list[Path]:
    return sorted(p for p in (ROOT / "tests" / "vectors").glob("*/*.json") if p.name != "vector.json")


def test_every_vector_file_follows_the_tensor_json_schema():
    schema = load_json(SPEC / "tensor-json.schema.json")
    files = tensor_json_files()
    assert len(files) >= 20
    for path in files:
        jsonschema.validate(load_json(path), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"x": {"dtype": "uint8", "shape": [1], "data": [300]}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"x": {"dtype": "float32", "shape": [1], "data": [1], "layout": "nhwc"}}, schema)


# -- the cases -------------------------------------------------------------------------------------------------
def test_there_are_cases_of_every_kind():
    kinds = {("error" if c and "error" in c else "load" if c is None else "expected") for _, _, c in CASES}
    assert kinds >= {"error", "expected"} and len(CASES) >= 40
    assert any(c is not None and "inputs_text" in c for _, _, c in CASES)


@pytest.mark.parametrize("doc, case", [(d, c) for _, d, c in CASES], ids=[i for i, _, _ in CASES])
def test_case_through_the_library(doc, case):
    model = ROOT / doc["model"]
    if case is None:
        with pytest.raises(PipelineError) as err:
            Pipeline.load(model, threads=1)
        assert err.value.code == doc["load_error"], str(err.value)
        return
    with Pipeline.load(model, threads=1) as pipe:
        try:
            got = pipe.run(tensor_json.loads(inputs_text(case)))
        except PipelineError as e:
            assert "error" in case, f"{case['name']}: refused with {e.code}: {e}"
            assert e.code == case["error"], f"{case['name']}: {e.code} ({e}), expected {case['error']}"
            return
    assert "error" not in case, f"{case['name']}: accepted, expected {case['error']}"
    problems = mismatches(got, expected_of(case), tolerance_of(doc, case))
    assert not problems, problems


@pytest.mark.parametrize("doc, case", [(d, c) for _, d, c in CASES], ids=[i for i, _, _ in CASES])
def test_case_through_the_cli(doc, case, tmp_path):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(inputs_text(case) if case is not None else "{}", encoding="utf-8", errors="surrogatepass")
    res = subprocess.run([sys.executable, "-m", "onnxpipe_runtime", "run", str(ROOT / doc["model"]), "--threads", "1",
                          "--inputs", str(inputs)], capture_output=True, text=True, timeout=120)
    code = doc["load_error"] if case is None else case.get("error")
    if code is None:
        assert res.returncode == 0 and res.stderr == "", res.stderr
        problems = mismatches(tensor_json.loads(res.stdout), expected_of(case), tolerance_of(doc, case))
        assert not problems, problems
        return
    assert res.returncode == EXIT_STATUS[code], (res.returncode, res.stderr)
    assert res.stdout == "" and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"onnxpipe: error [{code}]: ") and "Traceback" not in res.stderr, res.stderr
