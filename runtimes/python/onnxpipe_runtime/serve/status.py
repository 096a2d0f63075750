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

__all__ = ["CODE_METADATA_KEY", "GRPC_STATUS", "MAX_DETAILS_BYTES", "RequestError", "clip", "from_pipeline_error"]

CODE_METADATA_KEY = "onnxpipe-error-code"
#: a status message travels in a trailer (gRPC's default metadata limit is 8 KiB, and non-ASCII is
#: percent-encoded at up to 3x): longer messages are cut here, so the client still gets the onnxpipe code
MAX_DETAILS_BYTES = 1024
#: the longest client-given name (model, input, output, datatype) echoed in a message
MAX_ECHO_CHARS = 200

#: onnxpipe error code -> gRPC status code name (grpc.StatusCode.<name>)
GRPC_STATUS: dict[str, str] = {
    "INVALID_INPUT": "INVALID_ARGUMENT",
    "TOO_LARGE": "RESOURCE_EXHAUSTED",
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
        """``[CODE] message``, at most MAX_DETAILS_BYTES of UTF-8."""
        text = f"[{self.code}] {self.message}"
        raw = text.encode("utf-8")
        if len(raw) <= MAX_DETAILS_BYTES:
            return text
        return raw[: MAX_DETAILS_BYTES - 20].decode("utf-8", "ignore") + f" ... ({len(raw):,} bytes)"


def clip(value: object, quote: bool = True) -> str:
    """``repr`` (or ``str``) of a client-given value, cut to MAX_ECHO_CHARS: a 20,000-character name cannot fill
    the trailer."""
    text = repr(value) if quote else str(value)
    if len(text) <= MAX_ECHO_CHARS:
        return text
    size = f"{len(value):,} chars" if isinstance(value, (str, bytes)) else f"{len(text):,} chars as text"
    return f"{text[:MAX_ECHO_CHARS]}... ({size})"


def from_pipeline_error(e: PipelineError) -> RequestError:
    """The runtime's error as a request error, keeping its code."""
    return RequestError(e.code, str(e))
