"""Command-line runs with the runtime alone: ``python -m onnxpipe_runtime run|inspect|verify|score ...``.

The SDK's ``onnxpipe`` command reuses these subcommands and adds ``export``. Exit statuses come from the
contract's error table (``spec/errors.json``): 0 ok, 1 a verification mismatch, 2 a usage error, 3 bad input
(INVALID_INPUT, TOO_LARGE), 4 a file that cannot load (MODEL_LOAD, MISSING_EXTENSION), 5 a run failure (RUNTIME,
CLOSED); every failure is one line on stderr, ``<program>: error [CODE]: <message>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from onnxpipe_runtime import signature as sig_mod
from onnxpipe_runtime import tensor_json
from onnxpipe_runtime.errors import EXIT_STATUS, InputError, PipelineError, exit_status
from onnxpipe_runtime.pipeline import Pipeline
from onnxpipe_runtime.score_cli import add_score
from onnxpipe_runtime.vectors import load_set, mismatches

EXIT_MISMATCH = EXIT_STATUS["MISMATCH"]
EXIT_USAGE = EXIT_STATUS["USAGE"]
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `yes | head` leaves, for a reader that stopped reading


class CliError(Exception):
    """A usage problem reported as one line on stderr with exit code 2."""


def add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run a pipeline on tensor-JSON inputs; prints outputs as tensor JSON")
    p.add_argument("model", type=Path)
    p.add_argument("--inputs", type=Path, help="tensor JSON file of named inputs (docs/tensor-json.md)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input from a .npy file")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: CPUs this process may use)")
    add_accelerator_options(p)
    p.add_argument("--indent", type=int, default=None, help="pretty-print the JSON")
    p.set_defaults(func=cmd_run)


def add_accelerator_options(p: Any) -> None:
    """``--accelerator`` and ``--precision``, shared by run and serve (docs/accelerators.md)."""
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "openvino", "auto"],
                   help="where the model stage runs: cpu (default), openvino (extra onnxpipe-runtime[openvino]) "
                        "or auto (the fastest that passes the accuracy gate)")
    p.add_argument("--precision", default=None, choices=["f32", "bf16"],
                   help="model-stage precision on the accelerator (default f32; bf16 needs AVX-512 BF16 or AMX)")


def add_verify(sub: Any) -> None:
    p = sub.add_parser("verify", help="check a pipeline against the vectors embedded at export, a vector folder, "
                                      "or inputs + expected")
    p.add_argument("model", type=Path)
    p.add_argument("--vectors", type=Path, help="a vector folder with vector.json (docs/vectors.md)")
    p.add_argument("--inputs", type=Path, help="tensor JSON inputs")
    p.add_argument("--expected", type=Path, help="tensor JSON expected outputs")
    p.add_argument("--atol", type=float, default=None)
    p.add_argument("--rtol", type=float, default=None)
    p.set_defaults(func=cmd_verify)


def add_inspect(sub: Any) -> None:
    p = sub.add_parser("inspect", help="print a pipeline's signature and manifest")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=cmd_inspect)


def read_inputs(args: argparse.Namespace) -> dict[str, np.ndarray]:
    inputs: dict[str, np.ndarray] = {}
    if args.inputs is not None:
        inputs.update(tensor_json.load(args.inputs))
    for item in args.input:
        name, sep, file = item.partition("=")
        if not sep or not name:
            raise CliError(f"--input {item!r}: expected NAME=FILE.npy")
        try:
            inputs[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CliError(f"--input {name}: cannot read {file!r} as .npy ({e})") from e
    if args.inputs is None and not args.input:
        raise CliError("no inputs: give --inputs FILE.json and/or --input NAME=FILE.npy")
    return inputs


def cmd_run(args: argparse.Namespace) -> int:
    inputs = read_inputs(args)
    with Pipeline.load(args.model, threads=args.threads, accelerator=args.accelerator,
                       precision=args.precision) as pipe:
        outputs = pipe.run(inputs)
    sys.stdout.write(tensor_json.dumps(outputs, indent=args.indent) + "\n")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.vectors is not None:
        vs = load_set(args.vectors)
        cases = [(c.name, c.inputs, c.expected) for c in vs.cases]
        tol = dict(vs.tolerance)
    elif args.inputs is not None and args.expected is not None:
        cases = [(args.inputs.name, tensor_json.load(args.inputs), tensor_json.load(args.expected))]
        tol = {}
    elif args.inputs is None and args.expected is None:
        with Pipeline.load(args.model) as pipe:
            embedded = pipe.embedded_vectors()
        if embedded is None:
            raise CliError(f"verify: {args.model} has no embedded vectors; give --vectors DIR, or --inputs FILE.json "
                           "with --expected FILE.json")
        cases = [("embedded example", embedded["inputs"], embedded["expected"])]
        tol = dict(embedded["tolerance"])
    else:
        raise CliError("verify: give --vectors DIR, or --inputs FILE.json with --expected FILE.json")
    if args.atol is not None or args.rtol is not None:
        tol = {k: (args.atol if args.atol is not None else 0.0, args.rtol if args.rtol is not None else 0.0)
               for k in ("float32", "float64")}
    failed = 0
    with Pipeline.load(args.model) as pipe:
        for name, inputs, expected in cases:
            problems = mismatches(pipe.run(inputs), expected, tol)
            status = "ok" if not problems else "MISMATCH"
            print(f"{name}: {status}")
            for p in problems:
                print(f"  {p}")
            failed += bool(problems)
    print(f"{len(cases) - failed} passed, {failed} failed")
    return EXIT_MISMATCH if failed else 0


def signature_doc(pipe: Pipeline) -> dict[str, Any]:
    return {
        "path": str(pipe.path),
        "file_size": pipe.path.stat().st_size,
        "signature": pipe.signature.to_dict(),
        "verification": sig_mod.verification_status(pipe.manifest),
        "manifest": pipe.manifest.to_dict() if pipe.manifest is not None else None,
    }


def print_signature(doc: dict[str, Any]) -> None:
    sig = doc["signature"]
    man = doc.get("manifest") or {}
    print(f"{doc['path']}  ({doc['file_size']:,} bytes, signature from {sig['source']})")
    if not man:
        print("  no onnxpipe manifest (plain ONNX): inputs and outputs as ONNX Runtime reports them, no labels, "
              "no verification")
    if man:
        print(f"  pipeline {man.get('name')!r}, onnxpipe {man.get('sdk_version')}, opset {man.get('opset')}, "
              f"{man.get('precision')}, exporter {man.get('exporter')}")
    print("  inputs:")
    for s in sig["inputs"]:
        opt = f"  (optional, default {s['default']})" if s.get("optional") else ""
        print(f"    {s['name']}: {s['dtype']} {_shape(s['shape'])}{opt}")
    print("  outputs:")
    for s in sig["outputs"]:
        print(f"    {s['name']}: {s['dtype']} {_shape(s['shape'])}")
    if sig.get("labels"):
        labels = sig["labels"]
        more = f" ... ({len(labels)} in all)" if len(labels) > 12 else ""
        print(f"  labels: {', '.join(labels[:12])}{more}")
    if sig.get("domains"):
        print(f"  custom-op domains: {', '.join(sig['domains'])}")
    for st in man.get("stages", []):
        print(f"  stage {st['name']} [{st['kind']}]: {st['description']} ({st['nodes']} nodes)")
    if man:
        status = doc["verification"]
        cases = len((man.get("verification") or {}).get("cases", []))
        print({"passed": f"  verification: passed on {cases} input sets",
               "failed": "  verification: FAILED at export (do not deploy this file)",
               "not run": "  verification: NOT VERIFIED (exported with verify=False)"}[status])
        optimization = man.get("optimization")
        if isinstance(optimization, dict):
            model = (optimization.get("stages") or {}).get("model") or {}
            gate = optimization.get("gate") or {}
            metrics = ", ".join(f"{k} {v}" for k, v in (gate.get("metrics") or {}).items())
            print(f"  optimization: {optimization.get('chosen')} (model stage: {model.get('method')}); pre/post unchanged")
            print(f"    gate {gate.get('rule')} vs the fp32 file on {gate.get('validation_cases')} case(s): {metrics}")
            print(f"    from {(optimization.get('source') or {}).get('name')}, measured on "
                  f"{(optimization.get('measured_on') or {}).get('cpu')} with {(optimization.get('measured_on') or {}).get('threads')} "
                  "thread(s)")


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def cmd_inspect(args: argparse.Namespace) -> int:
    with Pipeline.load(args.model) as pipe:
        doc = signature_doc(pipe)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print_signature(doc)
    return 0


def _check_named_files(args: argparse.Namespace) -> None:
    """A file named on the command line that does not exist is a usage error (spec/errors.json: USAGE), the same
    in every CLI; a file that exists but cannot be read or parsed keeps its own code."""
    for option in ("model", "inputs", "expected", "vectors"):
        path = getattr(args, option, None)
        if isinstance(path, Path) and not path.exists():
            what = "MODEL" if option == "model" else f"--{option}"
            raise CliError(f"{what} {str(path)!r}: no such file or directory")


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed subcommand, turning expected failures into one line on stderr and their code's exit status."""
    try:
        _check_named_files(args)
        status = int(args.func(args))
        sys.stdout.flush()  # here, so a closed pipe is caught below rather than at exit
        return status
    except BrokenPipeError:
        # the reader went away (`onnxpipe inspect FILE | head`): no traceback, and nothing more to write;
        # stdout goes to /dev/null so the interpreter's own flush at exit cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (CliError, PipelineError, InputError) as e:
        code = getattr(e, "code", "USAGE")
        print(f"onnxpipe: error [{code}]: {e}", file=sys.stderr)
        return exit_status(code) if code != "USAGE" else EXIT_USAGE


def build_parser(prog: str = "python -m onnxpipe_runtime") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run onnxpipe pipelines (numpy + onnxruntime).")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run(sub)
    add_inspect(sub)
    add_verify(sub)
    add_score(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
