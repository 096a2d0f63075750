"""The three CLIs (Python, Java, Go) against each other: for every golden vector and every spec case, the same
bytes on stdout and the same exit status (and error code on stderr).

The Java and Go CLIs are built by ``make build`` (``make test`` builds them first and sets
ONNXPIPE_REQUIRE_CLIS=1, so a missing one fails instead of skipping).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from onnxpipe_runtime import tensor_json
from onnxpipe_runtime.vectors import mismatches

from tests.test_spec import CASES, DEFAULT_TOLERANCE, inputs_text

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "bin"
CLIS = {
    "python": [sys.executable, "-m", "onnxpipe_runtime"],
    "java": [str(BIN / "onnxpipe-java")],
    "go": [str(BIN / "onnxpipe-go")],
}
#: Java runs ONNX Runtime 1.29 (the newest Java release), Python and Go the wheel's 1.31: kernels that changed
#: between them (int8 dynamic quantization) give other last digits. Those vectors are compared by value within
#: their tolerance, and everything else about the output (names, order, shapes, format) byte for byte.
ORT_VERSION_DEPENDENT = {"minilm-int8"}


def _available() -> None:
    missing = [name for name, cmd in CLIS.items() if name != "python" and not Path(cmd[0]).exists()]
    if missing:
        message = f"CLIs not built: {missing} (run `make build`)"
        if os.environ.get("ONNXPIPE_REQUIRE_CLIS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def run_cli(name: str, model: Path, inputs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLIS[name], "run", str(model), "--threads", "1", "--inputs", str(inputs)],
                          capture_output=True, timeout=300)


def vector_cases() -> list[tuple[str, Path, Path, dict[str, Any]]]:
    out = []
    for spec in sorted((ROOT / "tests" / "vectors").glob("*/vector.json")):
        doc = json.loads(spec.read_text())
        model = spec.parent / doc["model"]
        if not model.exists():
            generated = model.with_name(model.stem + ".generated.onnx")
            model = generated if generated.exists() else model
        for case in doc["cases"]:
            out.append((f"{spec.parent.name}:{case['name']}", model, spec.parent / case["inputs"], doc))
    return out


VECTORS = vector_cases()
_CODE = re.compile(r"error \[([A-Z_]+)\]")


def _compare(results: dict[str, subprocess.CompletedProcess], label: str, exact: bool,
             tolerance: dict[str, tuple[float, float]]) -> None:
    py = results["python"]
    for name, res in results.items():
        assert res.returncode == py.returncode, (
            f"{label}: {name} exits {res.returncode}, python {py.returncode}\n{name}: {res.stderr.decode()[:500]}\n"
            f"python: {py.stderr.decode()[:500]}")
        if py.returncode != 0:
            codes = {n: _CODE.findall(r.stderr.decode(errors="replace"))[:1] for n, r in results.items()}
            assert codes[name] == codes["python"] and codes["python"], f"{label}: error codes differ: {codes}"
            assert res.stdout == b"" and res.stderr.decode(errors="replace").count("\n") == 1, \
                f"{label}: {name} stderr: {res.stderr[:300]!r}"
        elif exact:
            assert res.stdout == py.stdout, f"{label}: {name} stdout differs from python's:\n{res.stdout[:600]!r}\n" \
                                            f"{py.stdout[:600]!r}"
        else:
            got, want = tensor_json.loads(res.stdout.decode()), tensor_json.loads(py.stdout.decode())
            assert list(got) == list(want), f"{label}: {name} outputs {list(got)}, python {list(want)}"
            assert not mismatches(got, want, tolerance), f"{label}: {name}: {mismatches(got, want, tolerance)}"


@pytest.mark.parametrize("label, model, inputs, doc", VECTORS, ids=[v[0] for v in VECTORS])
def test_the_three_clis_agree_on_every_vector(label, model, inputs, doc):
    _available()
    results = {name: run_cli(name, model, inputs) for name in CLIS}
    assert results["python"].returncode == 0, results["python"].stderr.decode()
    vector = label.split(":")[0]
    tol = {k: (float(v["atol"]), float(v["rtol"])) for k, v in (DEFAULT_TOLERANCE | doc.get("tolerance", {})).items()}
    if vector in ORT_VERSION_DEPENDENT:
        assert results["go"].stdout == results["python"].stdout, f"{label}: go differs from python (same ORT)"
    _compare(results, label, exact=vector not in ORT_VERSION_DEPENDENT, tolerance=tol)


@pytest.mark.parametrize("doc, case", [(d, c) for _, d, c in CASES if c is not None],
                         ids=[i for i, _, c in CASES if c is not None])
def test_the_three_clis_agree_on_every_spec_case(doc, case, tmp_path):
    _available()
    inputs = tmp_path / "inputs.json"
    inputs.write_text(inputs_text(case), encoding="utf-8", errors="surrogatepass")
    results = {name: run_cli(name, ROOT / doc["model"], inputs) for name in CLIS}
    _compare(results, case["name"], exact=True, tolerance={})
