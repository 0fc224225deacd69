"""The one exception the client raises."""

from __future__ import annotations

import grpc

__all__ = ["HeatmapError"]


class HeatmapError(Exception):
    """A failed call: ``code`` is the ``grpc.StatusCode``, ``message`` the server's explanation
    (for bad input it starts with the field at fault, e.g. ``"sigma: must be ..."``)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> HeatmapError:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")
