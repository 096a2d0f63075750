"""The gRPC sidecar: onnxpipe files over the Open Inference Protocol (KServe v2), with dynamic batching.

Needs the ``serve`` extra: ``pip install 'onnxpipe-runtime[serve]'``.

    onnxpipe serve digits.onnx --port 8001          # or: python -m onnxpipe_runtime.serve digits.onnx

    from onnxpipe_runtime.serve import Server, ServeOptions
    with Server({"digits": "digits.onnx"}, ServeOptions(port=0)) as server:
        ...                                          # clients talk to server.address

Docs: docs/serving.md (protocol, batching, errors, security), docs/scale-out.md (Triton, KServe).
"""

from onnxpipe_runtime.serve.cli import main
from onnxpipe_runtime.serve.server import ConfigError, Server, ServeOptions
from onnxpipe_runtime.serve.status import RequestError

__all__ = ["ConfigError", "RequestError", "ServeOptions", "Server", "main"]
