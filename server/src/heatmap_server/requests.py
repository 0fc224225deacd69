"""Requests in: every field of a ``RenderRequest`` checked and converted to a :class:`RenderJob`.

This and :mod:`.pipeline` are the only places that convert between protobuf messages and the
renderer. Checks that cost nothing run first, on the event loop, so a bad request never reaches
the device; what a request costs (its output, its work) comes from its reply layout, the one the
client bounds its reading by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client.wire import (
    COORDINATE_SPACES,
    METHODS,
    PROFILE_ELEMENT_PASSES,
    SIMCC_ELEMENT_PASSES,
    SMOOTHINGS,
    ArgumentError,
    ReplyLayout,
    SimccLayout,
    array_from_double_tensor,
    array_from_tensor,
    layout_of,
)
from heatmap_render import RenderArgumentError, check_render_args, check_simcc_args

from .errors import RequestError, invalid
from .jobs import RenderJob

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


def _exhausted(description: str) -> RequestError:
    return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, "keypoints", description)


def _check_cost(layout: ReplyLayout, limits: ServiceLimits) -> None:
    """The request's output and work against the limits, before anything is rendered."""
    if layout.instances > limits.max_instances and layout.batch * layout.keypoints > 0:
        # Each instance is one more max-merge pass over the whole output on the device.
        raise _exhausted(
            f"{layout.instances} instances per sample exceed the limit of {limits.max_instances}"
        )
    if layout.output_elements > limits.max_output_elements:
        raise _exhausted(
            f"output of {layout.output_elements} elements exceeds the limit of "
            f"{limits.max_output_elements} (B*K*H*W dense, B*N*K*(H+W) as profiles, "
            "B*N*K*(Wx+Hy) as SimCC labels)"
        )
    if layout.work > limits.max_work_elements:
        raise _exhausted(
            f"work of {layout.work} element passes exceeds the limit of "
            f"{limits.max_work_elements} (element passes: N*B*K*H*W dense, "
            f"{PROFILE_ELEMENT_PASSES}*B*N*K*(H+W) as profiles, "
            f"{SIMCC_ELEMENT_PASSES}*B*N*K*(Wx+Hy) as SimCC labels)"
        )


def _layout(request: pb.RenderRequest) -> ReplyLayout:
    try:
        return layout_of(request)
    except ArgumentError as error:
        raise RequestError.from_argument_error(error, request) from None


def _tensors(request: pb.RenderRequest):
    """The keypoints and visibility (or None) as float32 arrays."""
    try:
        keypoints = array_from_tensor(request.keypoints, "keypoints")
        visibility = (
            array_from_tensor(request.visibility, "visibility")
            if request.HasField("visibility")
            else None
        )
    except ArgumentError as error:
        raise RequestError.from_argument_error(error, request) from None
    return keypoints, visibility


def _sigma(request: pb.RenderRequest):
    """``sigma``, ``sigmas`` or ``sigma_map``: exactly one of them."""
    if request.HasField("sigma_map"):
        if request.sigma or request.sigmas:
            raise invalid("sigma_map", "give one of sigma, sigmas or sigma_map")
        try:
            return array_from_double_tensor(request.sigma_map, "sigma")
        except ArgumentError as error:
            raise RequestError.from_argument_error(error, request) from None
    if request.sigmas and request.sigma:
        raise invalid("sigmas", "give either sigma or sigmas, not both")
    return list(request.sigmas) if request.sigmas else request.sigma


def job_from_request(
    request: pb.RenderRequest | UndecodableRequest, limits: ServiceLimits, arrived: float
) -> RenderJob:
    """Checks every field of ``request`` and converts it to a render job.

    Raises:
        RequestError: naming the field, INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
    """
    if isinstance(request, UndecodableRequest):
        raise invalid("request", f"not a heatmap.v1.RenderRequest ({request.error})")
    layout = _layout(request)
    if isinstance(layout, SimccLayout):
        return _simcc_job(request, layout, limits, arrived)
    if request.HasField("simcc"):
        raise invalid("simcc", "only used with target simcc")
    method = _name(METHODS, request.method, METHODS.field)
    coords = _name(COORDINATE_SPACES, request.coordinate_space, COORDINATE_SPACES.field)
    for field in ("height", "width"):
        side = getattr(request, field)
        if side <= 0:
            raise invalid(field, f"must be > 0, got {side}")
        if side > limits.max_side:
            raise invalid(field, f"{side} exceeds the server's largest side ({limits.max_side})")
    keypoints, visibility = _tensors(request)
    _check_cost(layout, limits)
    sigma = _sigma(request)
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
            dtype=layout.wire.render_as,
        )
    except RenderArgumentError as error:
        raise RequestError.from_argument_error(error, request) from None
    return RenderJob(args=args, layout=layout, request_id=request.request_id, arrived=arrived)


# Fields a SimCC request does not use: refused rather than ignored.
_NOT_FOR_SIMCC = ("height", "width", "sigma", "method", "coordinate_space")


def _check_simcc_fields(request: pb.RenderRequest, limits: ServiceLimits) -> str:
    """Checks what the renderer cannot see (unused fields, label lengths); returns the
    smoothing's name."""
    for field in _NOT_FOR_SIMCC:
        if getattr(request, field):
            raise invalid(field, "not used with target simcc (see simcc and input_size)")
    if request.sigmas or request.HasField("sigma_map"):
        field = "sigmas" if request.sigmas else "sigma_map"
        raise invalid(field, "not used with target simcc (see simcc.sigma_x, sigma_y)")
    params = request.simcc
    smoothing = _name(SMOOTHINGS, params.smoothing, SMOOTHINGS.field)
    for field in ("sigma_x", "sigma_y"):
        value = getattr(params, field)
        if not (math.isfinite(value) and value > 0):
            raise invalid(f"simcc.{field}", f"must be a finite number > 0, got {value!r}")
    # Bounded here, before the renderer multiplies them out: the labels' lengths are its sides.
    for side in (request.input_height, request.input_width):
        length = side * params.split_ratio  # finite: a huge one fails the first test
        if side > 0 and (length > limits.max_side + 1 or round(length) > limits.max_side):
            raise invalid(
                "simcc.split_ratio",
                f"{params.split_ratio!r} x input side {side} gives labels longer than the "
                f"server's largest side ({limits.max_side})",
            )
    return smoothing


def _simcc_job(
    request: pb.RenderRequest, layout: SimccLayout, limits: ServiceLimits, arrived: float
) -> RenderJob:
    """A SimCC (``target="simcc"``) request as a render job of ``SimccArgs``."""
    smoothing = _check_simcc_fields(request, limits)
    keypoints, visibility = _tensors(request)
    params = request.simcc
    try:
        args = check_simcc_args(
            keypoints,
            (request.input_height, request.input_width),
            {"x": params.sigma_x, "y": params.sigma_y},  # named axes on the wire
            split_ratio=params.split_ratio,
            smoothing=smoothing,
            label_smooth_weight=params.label_smooth_weight,
            normalize=params.normalize,
            visibility=visibility,
        )
    except RenderArgumentError as error:
        raise RequestError.from_argument_error(error, request) from None
    _check_cost(layout, limits)
    normalized = args.smoothing == "gaussian" and args.normalize
    peak = 1 / (min(args.sigma) * math.sqrt(2 * math.pi)) if normalized else 1.0
    if not layout.wire.holds(peak):
        # Fixed point would clip or wrap, float16 would carry inf in an OK reply.
        raise invalid("dtype", f"{layout.wire.range_text()}; these labels peak at {peak:.6g}")
    return RenderJob(args=args, layout=layout, request_id=request.request_id, arrived=arrived)
