"""The three CLIs (Python, Java, Go) against each other: for every golden vector and every spec case, the same
bytes on stdout and the same exit status (and error code on stderr).

The Java and Go CLIs are built by ``make build`` (``make test`` builds them first and sets
ONNXPIPE_REQUIRE_CLIS=1, so a missing one fails instead of skipping). All three run the same ONNX Runtime C
library (the wheel's; Java's binding forwards to it: runtimes/java/native/ort_forward.c), so even the last digit
of every float agrees.
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

from tests.test_spec import CASES, inputs_text

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "bin"
CLIS = {
    "python": [sys.executable, "-m", "onnxpipe_runtime"],
    "java": [str(BIN / "onnxpipe-java")],
    "go": [str(BIN / "onnxpipe-go")],
}


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


def _compare(results: dict[str, subprocess.CompletedProcess], label: str) -> None:
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
        else:
            assert res.stdout == py.stdout, f"{label}: {name} stdout differs from python's:\n{res.stdout[:600]!r}\n" \
                                            f"{py.stdout[:600]!r}"


@pytest.mark.parametrize("label, model, inputs, doc", VECTORS, ids=[v[0] for v in VECTORS])
def test_the_three_clis_agree_on_every_vector(label, model, inputs, doc):
    _available()
    results = {name: run_cli(name, model, inputs) for name in CLIS}
    assert results["python"].returncode == 0, results["python"].stderr.decode()
    _compare(results, label)


@pytest.mark.parametrize("doc, case", [(d, c) for _, d, c in CASES if c is not None],
                         ids=[i for i, _, c in CASES if c is not None])
def test_the_three_clis_agree_on_every_spec_case(doc, case, tmp_path):
    _available()
    inputs = tmp_path / "inputs.json"
    inputs.write_text(inputs_text(case), encoding="utf-8", errors="surrogatepass")
    results = {name: run_cli(name, ROOT / doc["model"], inputs) for name in CLIS}
    _compare(results, case["name"])
