"""Requests in: every field of a ``RenderRequest`` checked and converted to a :class:`RenderJob`.

This and :mod:`.replies` are the only places that convert between protobuf messages and the
renderer. Checks that cost nothing run first, on the event loop, so a bad request never reaches
the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client.wire import (
    CODECS,
    COORDINATE_SPACES,
    DTYPES,
    METHODS,
    array_from_tensor,
)

from .device import torch_dtype
from .errors import RequestError, invalid
from .jobs import RenderJob
from .render import check_render_args

__all__ = ["ServiceLimits", "UndecodableRequest", "job_from_request", "parser"]


@dataclass(frozen=True)
class ServiceLimits:
    """Per-request limits; over them a request gets ``RESOURCE_EXHAUSTED``."""

    max_output_elements: int = 64 * 1024 * 1024
    max_request_bytes: int = 16 * 1024 * 1024
    chunk_bytes: int = 1024 * 1024
    max_side: int = 4096
    max_instances: int = 128
    # N*B*K*H*W, the element passes of a dense render (~1 s on two CPU cores at the default).
    max_work_elements: int = 1 << 30


@dataclass(frozen=True)
class UndecodableRequest:
    """Request bytes that do not parse as their message; the handler refuses them with
    INVALID_ARGUMENT (left to gRPC, a parse error would end the call with UNKNOWN)."""

    error: str
    request_id: int = 0


def parser(message_class):
    """A request deserializer that hands undecodable bytes on as an :class:`UndecodableRequest`."""

    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except DecodeError as error:
            return UndecodableRequest(str(error))

    return parse


def _name(table, value: int, field: str) -> str:
    name = table.name(value)
    if name is None:
        raise invalid(field, f"unknown value {value}")
    return name


def _known(table: dict, value: int, field: str):
    if value not in table:
        raise invalid(field, f"unknown value {value}")
    return table[value]


def _check_work(
    keypoints_shape: tuple[int, ...], request: pb.RenderRequest, limits: ServiceLimits,
    separable: bool,
):
    batch, keypoint_count = keypoints_shape[0], keypoints_shape[-2]
    instances = keypoints_shape[1] if len(keypoints_shape) == 4 else 1
    elements = batch * keypoint_count * request.height * request.width
    # The renderer holds both 1D profiles of every instance at once: bound them as well.
    profile_elements = batch * instances * keypoint_count * (request.height + request.width)
    if instances > limits.max_instances and batch * keypoint_count > 0:
        # Each instance is one more max-merge pass over the whole output on the device.
        raise RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "keypoints",
            f"{instances} instances per sample exceed the limit of {limits.max_instances}",
        )
    for count, what in ((elements, "B*K*H*W"), (profile_elements, "profile, B*N*K*(H+W)")):
        if count > limits.max_output_elements:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "keypoints",
                f"output of {count} elements ({what}) exceeds the limit of "
                f"{limits.max_output_elements}",
            )
    if not separable and instances * elements > limits.max_work_elements:
        # What the device pays: every instance is one more pass over the dense output.
        raise RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "keypoints",
            f"work of {instances * elements} element passes (N*B*K*H*W) exceeds the limit of "
            f"{limits.max_work_elements}",
        )


def job_from_request(
    request: pb.RenderRequest | UndecodableRequest, limits: ServiceLimits, arrived: float
) -> RenderJob:
    """Checks every field of ``request`` and converts it to a render job.

    Raises:
        RequestError: naming the field, INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
    """
    if isinstance(request, UndecodableRequest):
        raise invalid("request", f"not a heatmap.v1.RenderRequest ({request.error})")
    method = _name(METHODS, request.method, METHODS.field)
    coords = _name(COORDINATE_SPACES, request.coordinate_space, COORDINATE_SPACES.field)
    wire = _known(DTYPES, request.dtype, "dtype")
    codec = _known(CODECS, request.codec, "codec")
    for field in ("height", "width"):
        side = getattr(request, field)
        if side <= 0:
            raise invalid(field, f"must be > 0, got {side}")
        if side > limits.max_side:
            raise invalid(field, f"{side} exceeds the server's largest side ({limits.max_side})")
    if not request.HasField("keypoints"):
        raise invalid("keypoints", "required")
    try:
        keypoints = array_from_tensor(request.keypoints, "keypoints")
        visibility = (
            array_from_tensor(request.visibility, "visibility")
            if request.HasField("visibility")
            else None
        )
    except ValueError as error:
        raise RequestError.from_argument_error(error, request) from None
    if keypoints.ndim in (3, 4):
        _check_work(keypoints.shape, request, limits, codec.separable)
    if request.sigmas and request.sigma:
        raise invalid("sigmas", "give either sigma or sigmas, not both")
    sigma = list(request.sigmas) if request.sigmas else request.sigma
    input_size = None
    if coords == "pixel" or request.input_height or request.input_width:
        input_size = (request.input_height, request.input_width)
    try:
        args = check_render_args(
            keypoints,
            (request.height, request.width),
            sigma,
            method=method,
            coords=coords,
            input_size=input_size,
            visibility=visibility,
            dtype=torch_dtype(wire.render_as),
        )
    except ValueError as error:
        raise RequestError.from_argument_error(error, request) from None
    return RenderJob(
        args=args, wire=wire, codec=codec, request_id=request.request_id, arrived=arrived
    )
