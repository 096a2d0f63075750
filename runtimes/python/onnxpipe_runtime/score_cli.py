"""``score``: the command-line front of offline scoring (``score.py``, ``spark.py``).

    python -m onnxpipe_runtime score digits.onnx --input images.parquet --output scores.parquet
    onnxpipe score digits.onnx --input images.parquet --output scores.parquet --engine spark --master 'local[2]'

Kept apart from ``score.py`` so that the CLI starts without pyarrow (an optional extra) until ``score`` runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_score", "cmd_score"]


def add_score(sub: Any) -> None:
    p = sub.add_parser("score", help="score a table (Parquet or JSON Lines) row by row; outputs become columns")
    p.add_argument("model", type=Path)
    p.add_argument("--input", required=True, help="a .parquet file or folder, or a .jsonl file (spark: also a URL)")
    p.add_argument("--output", required=True, help="a .parquet or .jsonl path (spark: a folder, or a URL)")
    p.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="local: stream in this process (default); spark: Apache Spark (pip extra [spark])")
    p.add_argument("--batch-size", type=int, default=64, help="rows per pipeline run (default 64)")
    p.add_argument("--columns", default="", metavar="INPUT=COLUMN,...",
                   help="read an input from another column (default: the column named like the input)")
    p.add_argument("--keep", default="", metavar="COLUMN,...", help="input columns copied to the output (ids)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="an optional input (threshold) for every row, e.g. score_threshold=0.3")
    p.add_argument("--on-error", choices=["fail", "skip", "null"], default="fail",
                   help="a bad row: fail the job (default); null: write it with null outputs and an 'error' "
                        "column; skip: leave it out and list it in OUTPUT.errors.jsonl")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads (local default: the CPUs this process may use; spark: the task's CPUs)")
    p.add_argument("--master", default=None, help="spark master URL, e.g. local[2] (default: spark-submit's, "
                                                  "else local[*])")
    p.add_argument("--no-progress", action="store_true", help="no progress or summary on stderr")
    from onnxpipe_runtime.cli import add_accelerator_options  # (cli imports this module first)

    add_accelerator_options(p)
    p.set_defaults(func=cmd_score)


def _pairs(text: str, what: str) -> dict[str, str]:
    from onnxpipe_runtime.cli import CliError

    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise CliError(f"{what} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def cmd_score(args: argparse.Namespace) -> int:
    from onnxpipe_runtime.cli import CliError

    options: dict[str, Any] = {
        "batch_size": args.batch_size,
        "columns": _pairs(args.columns, "--columns"),
        "params": {k: json.loads(v) if v[:1] in "[-0123456789." else v
                   for item in args.param for k, v in _pairs(item, "--param").items()},
        "keep": [c.strip() for c in args.keep.split(",") if c.strip()],
        "on_error": args.on_error,
        "threads": args.threads,
        "load": {"accelerator": args.accelerator, "precision": args.precision},
    }
    try:
        if args.engine == "spark":
            from onnxpipe_runtime.spark import score_with_spark

            score_with_spark(args.model, args.input, args.output, master=args.master,
                             progress=not args.no_progress, **options)
        else:
            from onnxpipe_runtime.score import score_file

            if args.master:
                raise CliError("--master is for --engine spark")
            score_file(args.model, args.input, args.output, progress=not args.no_progress, **options)
    except ImportError as e:
        extra = "spark" if args.engine == "spark" else "score"
        raise CliError(f"score --engine {args.engine} needs {e.name or e}: pip install 'onnxpipe-runtime[{extra}]'") from e
    return 0
