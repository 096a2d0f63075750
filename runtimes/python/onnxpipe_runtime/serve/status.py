"""Errors a request can end with, and how they cross the wire.

Every failed RPC carries an onnxpipe error code (the runtime's INVALID_INPUT, RUNTIME, ... plus the serving
codes below) twice, so a Java or Go client can rebuild its own typed error: as the prefix ``[CODE] `` of the
gRPC status message and in the trailing metadata key ``onnxpipe-error-code``.
"""

from __future__ import annotations

import grpc

from onnxpipe_runtime.errors import PipelineError

__all__ = ["CODE_METADATA_KEY", "GRPC_STATUS", "RequestError", "from_pipeline_error"]

CODE_METADATA_KEY = "onnxpipe-error-code"

#: onnxpipe error code -> gRPC status code
GRPC_STATUS: dict[str, grpc.StatusCode] = {
    "INVALID_INPUT": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "OVERLOADED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
    "CLOSED": grpc.StatusCode.UNAVAILABLE,
    "DEADLINE": grpc.StatusCode.DEADLINE_EXCEEDED,
    "RUNTIME": grpc.StatusCode.INTERNAL,
    "MODEL_LOAD": grpc.StatusCode.INTERNAL,
    "MISSING_EXTENSION": grpc.StatusCode.INTERNAL,
}


class RequestError(Exception):
    """A request that cannot be served; ``code`` is the onnxpipe error code, the message names the cause."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def grpc_status(self) -> grpc.StatusCode:
        return GRPC_STATUS.get(self.code, grpc.StatusCode.INTERNAL)

    @property
    def details(self) -> str:
        return f"[{self.code}] {self.message}"


def from_pipeline_error(e: PipelineError) -> RequestError:
    """The runtime's error as a request error, keeping its code."""
    return RequestError(e.code, str(e))
