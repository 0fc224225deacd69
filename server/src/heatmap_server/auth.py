"""Optional bearer-token authentication: a server interceptor, constant-time comparison.

Every RPC but the health service needs ``authorization: Bearer <token>``; health stays open so
that load balancers and orchestrators can probe. The token is never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc

__all__ = ["BearerTokenInterceptor", "read_token"]

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def read_token(path: str) -> str:
    """The token in ``path`` (surrounding whitespace dropped); an empty file is an error."""
    with open(path, encoding="utf-8") as handle:
        token = handle.read().strip()
    if not token:
        raise ValueError(f"auth_token_file: {path} is empty")
    return token


def _deny(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def abort(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

    async def abort_stream(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        yield  # pragma: no cover - makes this an async generator, as streaming handlers are

    codecs = dict(
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **codecs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **codecs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **codecs)
    return grpc.stream_stream_rpc_method_handler(abort_stream, **codecs)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with ``authorization: Bearer <token>``.

    Args:
        token: the expected token.
        on_denied: called with the method name of every refused call (for metrics).
    """

    def __init__(self, token: str, on_denied: Callable[[str], None] = lambda method: None):
        self._expected = f"Bearer {token}".encode()
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        given = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
        if hmac.compare_digest(given, self._expected):
            return handler
        self._on_denied(method)
        return _deny(handler)
