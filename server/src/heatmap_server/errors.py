"""Refusals as gRPC statuses: a code, the request field at fault and what was wrong, with a
``google.rpc.BadRequest`` that carries the field as data."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client.wire import FIELDS_OF_ARGUMENT, TARGETS, ArgumentError
from heatmap_render import RenderArgumentError

__all__ = ["RequestError", "field_of_argument", "invalid"]


def field_of_argument(argument: str, request: pb.RenderRequest | None = None) -> str:
    """The request field a renderer argument travels in (``size`` -> ``height``); ``sigma``
    travels in ``sigmas`` per keypoint, ``sigma_map`` per batch, ``simcc.sigma_x`` (and
    ``sigma_y``) for SimCC labels."""
    if argument == "sigma" and request is not None:
        if TARGETS.name(request.target) == "simcc":
            return "simcc.sigma_x"
        if request.HasField("sigma_map"):
            return "sigma_map"
        if len(request.sigmas):
            return "sigmas"
    fields = FIELDS_OF_ARGUMENT.get(argument)
    return fields[0] if fields else argument


class RequestError(Exception):
    """A request the service refuses: a status code, the field at fault and what was wrong."""

    def __init__(self, code: grpc.StatusCode, field: str, description: str):
        super().__init__(f"{field}: {description}")
        self.code = code
        self.field = field
        self.description = description

    @classmethod
    def from_argument_error(
        cls, error: ArgumentError | RenderArgumentError, request: pb.RenderRequest | None = None
    ) -> RequestError:
        """An INVALID_ARGUMENT for an error that carries its ``argument`` as data (the wire's
        tensor checks and the renderer's)."""
        at, _, message = str(error).partition(": ")
        argument = error.argument
        field = field_of_argument(argument, request)
        if at.startswith(argument + "."):
            field += at[len(argument) :]  # the part at fault: keypoints.shape
        return cls(grpc.StatusCode.INVALID_ARGUMENT, field, message or str(error))

    def to_status(self, prefix: str = "") -> grpc.Status:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=self.field, description=self.description
        )
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        status = status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=prefix + str(self), details=[detail]
        )
        return rpc_status.to_status(status)


def invalid(field: str, description: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, field, description)
