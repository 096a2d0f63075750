"""The ``onnxpipe`` command: export, inspect, run, verify, score, serve, triton-repo.

Exit codes: 0 ok, 1 a verification mismatch, 2 bad input / bad model / failed export (one line on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from onnxpipe_runtime import cli as rcli
from onnxpipe_runtime.pipeline import Pipeline

from onnxpipe.errors import OnnxpipeError

_DELEGATED = {
    "serve": ("onnxpipe_runtime.serve", "serve exported pipelines over gRPC (KServe v2 / Open Inference Protocol)"),
    "triton-repo": ("onnxpipe_runtime.triton_repo", "write a Triton model repository for a pipeline"),
}


def load_factory(spec: str) -> dict[str, Any]:
    """``MODULE:FACTORY`` -> export_pipeline keyword arguments (a dict, or (pre, model, post, example_inputs,
    dynamic_axes))."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise rcli.CliError(f"export: expected MODULE:FACTORY (e.g. examples.digits:factory), got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise rcli.CliError(f"export: cannot import module {module_name!r}: {e}") from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise rcli.CliError(f"export: {module_name!r} has no callable {attr!r}")
    result = factory()
    if isinstance(result, dict):
        return dict(result)
    if isinstance(result, tuple) and len(result) == 5:
        pre, model, post, example_inputs, dynamic_axes = result
        return {"pre": pre, "model": model, "post": post, "example_inputs": example_inputs,
                "dynamic_axes": dynamic_axes}
    raise rcli.CliError(
        f"export: {spec} returned {type(result).__name__}; expected a dict of export_pipeline arguments or "
        "(pre, model, post, example_inputs, dynamic_axes)"
    )


def cmd_export(args: argparse.Namespace) -> int:
    from onnxpipe.export import export_pipeline

    kwargs = load_factory(args.factory)
    if args.no_verify:
        kwargs["verify"] = False
    if args.exporter:
        kwargs["exporter"] = args.exporter
    if args.opset:
        kwargs["opset"] = args.opset
    pre, model, post = kwargs.pop("pre", None), kwargs.pop("model", None), kwargs.pop("post", None)
    result = export_pipeline(pre, model, post, path=args.output, **kwargs)
    ver = result.report["verification"]
    status = f"passed on {len(ver['cases'])} input sets" if ver["status"] == "passed" else "NOT RUN (--no-verify)"
    print(f"wrote {result.path} ({result.report['file_size']:,} bytes); verification {status}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import onnx

    from onnxpipe._graph import op_counts

    with Pipeline.load(args.model) as pipe:
        doc = rcli.signature_doc(pipe)
    doc["op_counts"] = op_counts(onnx.load(str(args.model), load_external_data=False))
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    rcli.print_signature(doc)
    print("  ops by stage:")
    for stage, counts in doc["op_counts"].items():
        top = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"    {stage or '(unprefixed)'}: {sum(counts.values())} nodes: {top}")
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from onnxpipe._optimize import optimize
    from onnxpipe.errors import GateError

    try:
        report = optimize(
            args.model, validation=args.validation, calibration=args.calibration, gate=args.gate,
            candidates=args.candidates.split(",") if args.candidates else None, path_out=args.output,
            batch_sizes=[int(b) for b in args.batches.split(",")] if args.batches else (1, 8),
            threads=args.threads, portable=args.portable,
        )
    except GateError as e:
        if e.report is not None:
            print(e.report.table())
        raise
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
        if report.path_out is None:
            print(f"nothing written: the fp32 file {str(args.model)!r} is already the fastest that passes the gate")
        else:
            print(f"wrote {report.path_out} ({report.chosen}) in {report.seconds:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxpipe", description="Export pre-processing + model + post-processing as one verified ONNX file.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="export MODULE:FACTORY to one ONNX file (verified)")
    p.add_argument("factory", help="MODULE:FACTORY returning export_pipeline arguments")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--no-verify", action="store_true", help="skip export-time verification (not recommended)")
    p.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"])
    p.add_argument("--opset", type=int)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("inspect", help="signature, manifest, op counts by stage and size")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("optimize", help="a faster file: fusions and int8 for the model stage, under an accuracy gate")
    p.add_argument("model", type=Path, help="a file written by onnxpipe export")
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the optimized file")
    p.add_argument("--validation", type=Path, required=True,
                   help="held-out inputs for the gate: tensor JSON (one object or a list) or a folder of files")
    p.add_argument("--calibration", type=Path, help="inputs to calibrate static int8 on (default: --validation)")
    p.add_argument("--gate", help="e.g. 'cosine>=0.99,agreement>=0.99' (defaults: cosine/agreement 0.99, "
                                  "detection recall/precision 0.98)")
    p.add_argument("--candidates", help="comma-separated, some of: fp32-fused, int8-dynamic, int8-dynamic-pc, "
                                        "int8-static, int8-weights, mixed (default: all)")
    p.add_argument("--batches", help="batch sizes to measure latency at (default: 1,8)")
    p.add_argument("--threads", type=int, help="threads per session (default: the CPUs this container may use)")
    p.add_argument("--portable", action="store_true",
                   help="standard ONNX only in the model stage (QDQ int8, no com.microsoft ops)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_optimize)
    rcli.add_run(sub)
    rcli.add_verify(sub)
    rcli.add_score(sub)
    for name, (_, text) in _DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        module = importlib.import_module(_DELEGATED[argv[0]][0])
        return int(module.main(argv[1:]))
    args = build_parser().parse_args(argv)
    if not args.quiet:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("onnxpipe: %(message)s"))
        logger = logging.getLogger("onnxpipe")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        return rcli.run_command(args)
    except OnnxpipeError as e:
        print(f"onnxpipe: error [{e.code}]: {e}", file=sys.stderr)
        return rcli.EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
