"""The exception the client raises for a failed call."""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from .wire.vocabulary import ARGUMENT_OF_FIELD

__all__ = ["HeatmapError"]

_DETAILS_KEY = "grpc-status-details-bin"

# gRPC's own words when this end refuses a message over its limits (the peer's say "SERVER:").
_RECEIVED_TOO_LARGE = "CLIENT: Received message larger than max"
_SENT_TOO_LARGE = "CLIENT: Sent message larger than max"


def _size_refusal(code: grpc.StatusCode, details: str) -> str:
    """gRPC's refusal of a message over this client's limits, said in terms of its settings."""
    if code != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return details
    if _RECEIVED_TOO_LARGE in details:
        return (f"reply: a message larger than any reply to this client's requests can be, "
                f"refused unread ({details}); max_request_bytes sets the bound")
    if _SENT_TOO_LARGE in details:
        return (f"request: larger than max_request_bytes ({details}); raise it with the "
                "server's --max-request-bytes")
    return details


def _field_at_fault(error: grpc.RpcError) -> str | None:
    """The request field a server's ``google.rpc.BadRequest`` names, if it sent one."""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != _DETAILS_KEY:
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request) and bad_request.field_violations:
                return bad_request.field_violations[0].field
    return None


class HeatmapError(Exception):
    """A failed call.

    Attributes:
        code: the ``grpc.StatusCode``.
        message: the server's explanation; for bad input it names the argument at fault in the
            caller's own words (``"size: must be > 0"`` where the request field was ``height``).
        argument: that argument (``size``, ``sigma``, ``input_size``, ...), or None.
    """

    def __init__(self, code: grpc.StatusCode, message: str, argument: str | None = None):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.argument = argument

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> HeatmapError:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = (error.details() if hasattr(error, "details") else str(error)) or ""
        details = _size_refusal(code, details)
        field = _field_at_fault(error)
        argument = None
        if field is not None:
            # A part of a field (``keypoints.shape``) is at fault in the argument it belongs to.
            head, dot, part = field.partition(".")
            if field in ARGUMENT_OF_FIELD or head not in ARGUMENT_OF_FIELD:
                argument = ARGUMENT_OF_FIELD.get(field, field)
                details = details.replace(f"{field}: ", f"{argument}: ", 1)
            else:
                argument = ARGUMENT_OF_FIELD[head]
                details = details.replace(f"{field}: ", f"{argument}{dot}{part}: ", 1)
        return cls(code or grpc.StatusCode.UNKNOWN, details, argument)
