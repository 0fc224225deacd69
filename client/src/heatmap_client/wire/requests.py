"""Requests out: a ``RenderRequest`` from keypoints and :class:`RenderOptions` (heatmaps) or
:class:`SimccOptions` (SimCC labels)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatmap.v1 import heatmap_pb2 as pb

from .codecs import codec_by_name
from .dtypes import dtype_by_name
from .tensors import double_tensor_from_array, tensor_from_array
from .vocabulary import COORDINATE_SPACES, METHODS, SMOOTHINGS, TARGETS, ArgumentError

if TYPE_CHECKING:  # the options check their names against this package's tables
    from ..options import RenderOptions, SimccOptions

__all__ = ["build_request", "build_simcc_request"]


def build_request(
    keypoints: Any,
    options: RenderOptions,
    *,
    visibility: Any = None,
    sigma_map: Any = None,
    request_id: int = 0,
) -> pb.RenderRequest:
    """The ``RenderRequest`` for ``keypoints`` ``(B, K, 2)`` or ``(B, N, K, 2)`` rendered as
    ``options`` say; ``visibility`` ``(B, K)`` or ``(B, N, K)`` (the server checks the shapes).

    ``sigma_map``: this batch's own sigma, an array that broadcasts against
    ``keypoints.shape[:-1]`` (``(B, N, 1)`` per instance, ...), sent as float64; only when
    ``options.sigma`` is None.

    Raises:
        ArgumentError: naming ``sigma`` when there is none or two.
    """
    height, width = options.size
    request = pb.RenderRequest(
        request_id=request_id,
        keypoints=tensor_from_array(keypoints, "keypoints"),
        height=height,
        width=width,
        method=METHODS.proto(options.method),
        coordinate_space=COORDINATE_SPACES.proto(options.coords),
        dtype=dtype_by_name(options.dtype).proto,
        codec=codec_by_name(options.wire_codec).proto,
    )
    if sigma_map is not None:
        if options.sigma is not None:
            raise ArgumentError(
                "sigma", "give either a shared sigma or a per-batch array, not both"
            )
        request.sigma_map.CopyFrom(double_tensor_from_array(sigma_map, "sigma"))
    elif options.sigma is None:
        raise ArgumentError("sigma", "required: a number, (K,), or an array per batch")
    elif isinstance(options.sigma, tuple):
        request.sigmas.extend(options.sigma)
    else:
        request.sigma = options.sigma
    if visibility is not None:
        request.visibility.CopyFrom(tensor_from_array(visibility, "visibility"))
    if options.input_size is not None:
        request.input_height, request.input_width = options.input_size
    return request


def build_simcc_request(
    keypoints: Any,
    options: SimccOptions,
    *,
    visibility: Any = None,
    request_id: int = 0,
) -> pb.RenderRequest:
    """The SimCC (``target="simcc"``) request for ``keypoints`` ``(B, K, 2)`` or ``(B, N, K, 2)`` in
    input-image pixels; ``visibility`` ``(B, K)`` or ``(B, N, K)``."""
    sigma_x, sigma_y = options.sigma
    request = pb.RenderRequest(
        request_id=request_id,
        keypoints=tensor_from_array(keypoints, "keypoints"),
        input_height=options.input_size[0],
        input_width=options.input_size[1],
        dtype=dtype_by_name(options.dtype).proto,
        codec=codec_by_name(options.codec).proto,
        target=TARGETS.proto("simcc"),
        simcc=pb.SimccParameters(
            split_ratio=options.split_ratio,
            smoothing=SMOOTHINGS.proto(options.smoothing),
            label_smooth_weight=options.label_smooth_weight,
            normalize=options.normalize,
            sigma_x=sigma_x,
            sigma_y=sigma_y,
        ),
    )
    if visibility is not None:
        request.visibility.CopyFrom(tensor_from_array(visibility, "visibility"))
    return request
