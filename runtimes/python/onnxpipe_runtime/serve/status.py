"""Errors a request can end with, and how they cross the wire.

Every failed RPC carries an onnxpipe error code (the runtime's INVALID_INPUT, RUNTIME, ... plus the serving
codes below) twice, so a Java or Go client can rebuild its own typed error: as the prefix ``[CODE] `` of the
gRPC status message and in the trailing metadata key ``onnxpipe-error-code``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from onnxpipe_runtime.errors import PipelineError

if TYPE_CHECKING:
    import grpc

__all__ = ["CODE_METADATA_KEY", "GRPC_STATUS", "RequestError", "from_pipeline_error"]

CODE_METADATA_KEY = "onnxpipe-error-code"

#: onnxpipe error code -> gRPC status code name (grpc.StatusCode.<name>)
GRPC_STATUS: dict[str, str] = {
    "INVALID_INPUT": "INVALID_ARGUMENT",
    "NOT_FOUND": "NOT_FOUND",
    "OVERLOADED": "RESOURCE_EXHAUSTED",
    "UNAUTHENTICATED": "UNAUTHENTICATED",
    "CLOSED": "UNAVAILABLE",
    "DEADLINE": "DEADLINE_EXCEEDED",
    "RUNTIME": "INTERNAL",
    "MODEL_LOAD": "INTERNAL",
    "MISSING_EXTENSION": "INTERNAL",
}


class RequestError(Exception):
    """A request that cannot be served; ``code`` is the onnxpipe error code, the message names the cause."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def grpc_status(self) -> grpc.StatusCode:
        import grpc  # here, so batching (and triton_repo) work without the serve extra

        return getattr(grpc.StatusCode, GRPC_STATUS.get(self.code, "INTERNAL"))

    @property
    def details(self) -> str:
        return f"[{self.code}] {self.message}"


def from_pipeline_error(e: PipelineError) -> RequestError:
    """The runtime's error as a request error, keeping its code."""
    return RequestError(e.code, str(e))
