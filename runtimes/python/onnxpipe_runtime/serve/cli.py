"""``onnxpipe serve MODEL [MODEL ...]`` / ``python -m onnxpipe_runtime.serve``: run the sidecar until SIGTERM."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from onnxpipe_runtime.cli import add_accelerator_options
from onnxpipe_runtime.errors import PipelineError
from onnxpipe_runtime.serve.auth import TOKEN_ENV
from onnxpipe_runtime.serve.server import ConfigError, Server, ServeOptions

__all__ = ["main", "parser"]

PROG = "onnxpipe serve"


def parser() -> argparse.ArgumentParser:
    d = ServeOptions()
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Serve onnxpipe files over gRPC (KServe v2 / Open Inference Protocol) with dynamic batching.",
        epilog="SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit 0. Docs: docs/serving.md",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", type=Path, help="an exported .onnx file (model name: its stem)")
    p.add_argument("--name", action="append", default=None, metavar="NAME",
                   help="model name instead of the file stem; once per MODEL, in order")
    p.add_argument("--host", default=d.host, help=f"address to bind (default {d.host}; 0.0.0.0 exposes the server)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}; 0: any free port)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help=f"rows per merged run (default {d.max_batch})")
    p.add_argument("--max-delay-ms", type=float, default=d.max_delay_ms,
                   help=f"longest a request waits for others to batch with (default {d.max_delay_ms})")
    p.add_argument("--no-batching", action="store_true", help="run every request on its own")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help=f"requests waiting per model before RESOURCE_EXHAUSTED (default {d.max_queue})")
    p.add_argument("--max-message-mb", type=int, default=d.max_message_mb,
                   help=f"largest request or response (default {d.max_message_mb})")
    p.add_argument("--max-elements", type=int, default=d.max_elements,
                   help=f"elements in one request and in one merged batch (default {d.max_elements:,}); "
                        "more is RESOURCE_EXHAUSTED [TOO_LARGE], refused before allocating")
    p.add_argument("--max-string-bytes", type=int, default=d.max_string_bytes,
                   help=f"UTF-8 bytes of all strings in one request and one batch (default {d.max_string_bytes:,})")
    p.add_argument("--token-file", type=Path, default=None,
                   help="file holding the bearer token required on every RPC but health (surrounding whitespace "
                        f"ignored); or set ${TOKEN_ENV}")
    p.add_argument("--token", default=None,
                   help="the token itself: visible to every local user in /proc/PID/cmdline and ps; prefer "
                        f"--token-file or ${TOKEN_ENV}")
    p.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain: serve TLS")
    p.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    p.add_argument("--threads", type=int, default=None,
                   help="total ONNX Runtime threads (default: the CPUs the container allows, or $ONNXPIPE_THREADS)")
    add_accelerator_options(p)
    p.add_argument("--workers", type=int, default=d.workers,
                   help=f"model runs at once, sharing --threads (default {d.workers})")
    p.add_argument("--grace-s", type=float, default=d.grace_s,
                   help=f"on SIGTERM, how long in-flight requests may take (default {d.grace_s})")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _names(models: Sequence[Path], names: Sequence[str] | None) -> dict[str, Path]:
    if names is not None and len(names) != len(models):
        raise ConfigError(f"--name given {len(names)} time(s) for {len(models)} model(s); give one per MODEL or none")
    chosen = list(names) if names is not None else [m.stem for m in models]
    out: dict[str, Path] = {}
    for name, path in zip(chosen, models):
        if not name:
            raise ConfigError(f"model {str(path)!r}: empty name")
        if name in out:
            raise ConfigError(f"model name {name!r} is used twice ({out[name]} and {path}); pick names with --name")
        out[name] = path
    return out


def _token(args: argparse.Namespace) -> tuple[str | None, str]:
    """The bearer token and where it came from: --token, --token-file, then $ONNXPIPE_TOKEN."""
    given = [n for n in ("token", "token_file") if getattr(args, n) is not None]
    if len(given) > 1:
        raise ConfigError("--token and --token-file: give one or the other")
    if args.token is not None:
        return args.token, "--token"
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--token-file {str(args.token_file)!r}: cannot read it ({e})") from e
        if not token:
            raise ConfigError(f"--token-file {str(args.token_file)!r}: the file is empty")
        return token, "--token-file"
    from_env = os.environ.get(TOKEN_ENV) or None
    return from_env, f"${TOKEN_ENV}" if from_env else ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; 0 after a clean drain, 2 when it cannot start."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed by argparse
        return int(e.code) if isinstance(e.code, int) else 2
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s onnxpipe serve: %(message)s")
    log = logging.getLogger("onnxpipe.serve")
    try:
        token, token_from = _token(args)
        options = ServeOptions(
            host=args.host, port=args.port, batching=not args.no_batching, max_batch=args.max_batch,
            max_delay_ms=args.max_delay_ms, max_queue=args.max_queue, max_message_mb=args.max_message_mb,
            max_elements=args.max_elements, max_string_bytes=args.max_string_bytes, token=token, tls_cert=args.tls_cert, tls_key=args.tls_key, threads=args.threads, workers=args.workers,
            grace_s=args.grace_s, accelerator=args.accelerator, precision=args.precision,
        )
        server = Server(_names(args.models, args.name), options).start()
    except (ConfigError, PipelineError) as e:
        print(f"{PROG}: [{e.code}] {e}", file=sys.stderr)
        return 2
    if token_from == "--token":
        log.warning("--token is visible to other local users (/proc/%d/cmdline, ps); prefer --token-file or $%s",
                    os.getpid(), TOKEN_ENV)
    if not _is_loopback(options.host) and token is None:
        log.warning("listening on %s without --token: anyone who can reach the port can run the models", options.host)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        scheme = "TLS" if options.tls_cert else "plaintext"
        print(f"{PROG}: listening on {server.address} ({scheme}); models: {', '.join(server.models)}", flush=True)
        while not stop.wait(0.1):
            pass
        log.info("stopping: finishing in-flight requests (up to %g s)", options.grace_s)
        server.stop()
        log.info("stopped")
        return 0
    finally:
        server.stop(0.0)
        for s, h in previous.items():
            signal.signal(s, h)
