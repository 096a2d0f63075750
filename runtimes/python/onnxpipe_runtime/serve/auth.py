"""Bearer-token check on every RPC except the standard health service (probes carry no secrets)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

from onnxpipe_runtime.serve.status import CODE_METADATA_KEY

__all__ = ["TokenInterceptor", "TOKEN_ENV"]

TOKEN_ENV = "ONNXPIPE_TOKEN"
_OPEN_PREFIX = "/grpc.health.v1.Health/"


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` with UNAUTHENTICATED."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("token: expected a non-empty string")
        self._expected = f"Bearer {token}".encode()

    def _allowed(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(_OPEN_PREFIX):
            return True
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(given, self._expected)
        return False

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or self._allowed(handler_call_details):
            return handler
        return _deny(handler)


def _deny(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    def abort(_request: Any, context: grpc.ServicerContext) -> Any:
        # set_code, not context.abort: an exception kept by grpcio would hold the payload until a full GC
        context.set_trailing_metadata(((CODE_METADATA_KEY, "UNAUTHENTICATED"),))
        context.set_code(grpc.StatusCode.UNAUTHENTICATED)
        context.set_details(
            "[UNAUTHENTICATED] missing or wrong bearer token: send metadata 'authorization: Bearer <token>' "
            f"(the server's --token, --token-file or ${TOKEN_ENV})"
        )
        return b""

    def abort_stream(request: Any, context: grpc.ServicerContext) -> Any:
        abort(request, context)
        return iter(())

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream)
    # no deserializer: an unauthenticated payload is never parsed
    return grpc.unary_unary_rpc_method_handler(abort)
