"""What the Java and Go runtimes cost over the raw ONNX Runtime API of the same language.

    python -m examples.bench_runtimes        # run both harnesses, rewrite their section of docs/benchmarks.md

Each language runs digits and MiniLM at batch 1 and 8 through onnxpipe (``Pipeline.run`` / ``Pipeline.Run``:
input checks, parameter defaults, output conversion) and through the raw API on the same file, with the same
session options and one intra-op thread, interleaved in one run so drift hits both sides alike:
``make -C runtimes/go bench`` (``go test -bench``) and ``make -C runtimes/java bench`` (a plain harness).
Target: at most 5 % overhead. Rewrites only ``<!-- bench:runtimes:begin -->`` .. ``end -->``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from examples.bench import write_section
from onnxpipe_runtime.accelerators import cpu_name

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:runtimes:begin -->", "<!-- bench:runtimes:end -->"
HARNESSES = {"Go": ["make", "-s", "-C", "runtimes/go", "bench"], "Java": ["make", "-s", "-C", "runtimes/java", "bench"]}


def run(name: str, cmd: list[str]) -> list[str]:
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench_runtimes: {name} harness failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    table = [line for line in res.stdout.splitlines() if line.startswith("|") or line.startswith("note:")]
    print("\n".join(table) + f"\n   ({time.perf_counter() - start:.0f} s)", flush=True)
    return table


def main() -> int:
    sections = []
    for name, cmd in HARNESSES.items():
        sections += [f"### {name}", "", *run(name, cmd), ""]
    text = "\n".join([
        "## Runtime overhead: onnxpipe vs the raw ONNX Runtime API, Java and Go",
        "",
        f"One run on {cpu_name()}, 1 intra-op thread, p50 per call; onnxpipe and the raw API alternate in one "
        "process on the same file and session options (`python -m examples.bench_runtimes`). Target: ≤ 5 %.",
        "",
        *sections,
    ]).rstrip()
    write_section(text, begin=BEGIN, end=END)
    print(f"wrote docs/benchmarks.md (section {BEGIN})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
