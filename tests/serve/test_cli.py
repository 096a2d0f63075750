"""`onnxpipe serve` / `onnxpipe triton-repo` reach this package through the SDK's command (argv without the
subcommand), and `python -m onnxpipe_runtime.serve` works without the SDK."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BASIC

from onnxpipe_runtime.triton_repo import main as triton_main

ONNXPIPE = shutil.which("onnxpipe", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(ONNXPIPE is None, reason="the onnxpipe SDK command is not installed in this environment")
@pytest.mark.parametrize("sub,needle", [("serve", "--max-delay-ms"), ("triton-repo", "--ops-library")])
def test_sdk_command_dispatches(sub, needle):
    out = subprocess.run([ONNXPIPE, sub, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert needle in out.stdout


def test_sdk_triton_repo_writes(tmp_path):
    if ONNXPIPE is None:
        assert triton_main([str(BASIC), str(tmp_path)]) == 0
    else:
        subprocess.run([ONNXPIPE, "triton-repo", str(BASIC), str(tmp_path)], check=True, capture_output=True, timeout=60)
    assert (tmp_path / "basic" / "config.pbtxt").is_file() and (tmp_path / "basic" / "1" / "model.onnx").is_file()


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "onnxpipe_runtime.serve", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "usage: onnxpipe serve" in out.stdout
