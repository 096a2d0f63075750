"""One version number: VERSION, read by every build (Python packages, Maven, Go)."""

from __future__ import annotations

import re
from pathlib import Path

import onnxpipe
import onnxpipe_runtime

ROOT = Path(__file__).resolve().parents[1]
VERSION = (ROOT / "VERSION").read_text().strip()


def test_python_packages_share_the_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION)
    assert onnxpipe.__version__ == VERSION
    assert onnxpipe_runtime.__version__ == VERSION


def test_java_and_go_builds_use_the_version():
    pom = (ROOT / "runtimes" / "java" / "pom.xml").read_text()
    java_mk = (ROOT / "runtimes" / "java" / "Makefile").read_text()
    # Maven: ${revision} set from VERSION by the Makefile; the pom's fallback must agree
    assert f"<version>{VERSION}</version>" in pom or (
        "<version>${revision}</version>" in pom and f"<revision>{VERSION}</revision>" in pom
        and "/VERSION)" in java_mk)
    go_sources = "\n".join(p.read_text() for p in (ROOT / "runtimes" / "go").rglob("*.go"))
    go_mk = (ROOT / "runtimes" / "go" / "Makefile").read_text()
    assert f'"{VERSION}"' in go_sources or ("-X" in go_mk and "/VERSION" in go_mk)
