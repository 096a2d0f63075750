"""The public Python API is typed (py.typed) and mypy-clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
                           "--no-incremental", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_sdk_is_mypy_clean():
    res = run_mypy(*sorted(str(p) for p in (ROOT / "exporter").rglob("*.py")), cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_runtime_is_mypy_clean():
    res = run_mypy("onnxpipe_runtime", "--exclude", "onnxpipe_runtime/serve/_proto", cwd=ROOT / "runtimes" / "python")
    assert res.returncode == 0, res.stdout + res.stderr
