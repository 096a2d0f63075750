"""The gRPC sidecar: onnxpipe files over the Open Inference Protocol (KServe v2), with dynamic batching.

Needs the ``serve`` extra: ``pip install 'onnxpipe-runtime[serve]'``.

    onnxpipe serve digits.onnx --port 8001          # or: python -m onnxpipe_runtime.serve digits.onnx

    from onnxpipe_runtime.serve import Server, ServeOptions
    with Server({"digits": "digits.onnx"}, ServeOptions(port=0)) as server:
        ...                                          # clients talk to server.address

Docs: docs/serving.md (protocol, batching, errors, security), docs/scale-out.md (Triton, KServe).
grpc is imported on first use, so ``serve.batching`` (shared with ``triton_repo``) works without the extra.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onnxpipe_runtime.serve.server import ConfigError, Server, ServeOptions
    from onnxpipe_runtime.serve.status import RequestError

__all__ = ["ConfigError", "RequestError", "ServeOptions", "Server", "main"]

_LAZY = {
    "ConfigError": "onnxpipe_runtime.serve.server",
    "Server": "onnxpipe_runtime.serve.server",
    "ServeOptions": "onnxpipe_runtime.serve.server",
    "RequestError": "onnxpipe_runtime.serve.status",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def main(argv: Sequence[str] | None = None) -> int:
    """``onnxpipe serve ...`` (argv without the subcommand); see ``onnxpipe serve --help``."""
    try:
        from onnxpipe_runtime.serve.cli import main as cli_main
    except ImportError as e:
        print(
            f"onnxpipe serve: [MISSING_EXTENSION] the server needs the serve extra: "
            f"pip install 'onnxpipe-runtime[serve]' ({e})",
            file=sys.stderr,
        )
        return 2
    return cli_main(argv)
