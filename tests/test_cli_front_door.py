"""Issue 13 §7 and §10 for the runtime CLI (`python -m onnxpipe_runtime`): hostile inputs files end in one
line on stderr and the contract's exit status, never a traceback; a reader that closes the pipe early
(`inspect FILE | head`) is no error; a plain ONNX file is said to be one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "tests" / "vectors" / "digits" / "model.onnx"
PLAIN = ROOT / "tests" / "fixtures" / "plain.onnx"


def _cli(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxpipe_runtime", *args], stdout=stdout, stderr=subprocess.PIPE,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("name,content,code", [
    ("nested", b"[" * 100_000 + b"]" * 100_000, "INVALID_INPUT"),
    ("nested-data", b'{"image": {"dtype": "uint8", "shape": [1], "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}",
     "INVALID_INPUT"),
    ("utf8", b'{"image": {"dtype": "uint8", "shape": [1], "data": ["\xff\xfe"]}}', "INVALID_INPUT"),
    ("huge-shape", b'{"image": {"dtype": "uint8", "shape": [0, 4294967296, 4294967296, 3], "data": []}}', "TOO_LARGE"),
])
def test_hostile_inputs_file_is_one_line(tmp_path, name, content, code):
    path = tmp_path / f"{name}.json"
    path.write_bytes(content)
    out = _cli("run", str(DIGITS), "--inputs", str(path))
    err = out.stderr.decode("utf-8", "replace")
    assert out.returncode == 3 and out.stdout == b"", (out.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"onnxpipe: error [{code}]: "), err


def test_inspect_into_a_closed_pipe_is_quiet():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line, as with `| head -0`
    try:
        out = _cli("inspect", "--json", str(DIGITS), stdout=write)
    finally:
        os.close(write)
    assert b"Traceback" not in out.stderr and b"BrokenPipeError" not in out.stderr, out.stderr.decode()
    assert out.returncode == 141


def test_inspect_into_head_is_quiet():
    shell = f"{sys.executable} -m onnxpipe_runtime inspect {DIGITS} | head -1"
    out = subprocess.run(["bash", "-c", shell], capture_output=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and b"Traceback" not in out.stderr, out.stderr.decode()
    assert out.stdout.decode().startswith(str(DIGITS))


def test_inspect_says_plain_onnx():
    out = _cli("inspect", str(PLAIN))
    assert out.returncode == 0, out.stderr.decode()
    assert "no onnxpipe manifest (plain ONNX)" in out.stdout.decode()
