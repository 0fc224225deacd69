"""Requests out: a ``RenderRequest`` from keypoints and :class:`RenderOptions`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatmap.v1 import heatmap_pb2 as pb

from .codecs import codec_by_name
from .dtypes import dtype_by_name
from .tensors import tensor_from_array
from .vocabulary import COORDINATE_SPACES, METHODS

if TYPE_CHECKING:  # the options check their names against this package's tables
    from ..options import RenderOptions

__all__ = ["build_request"]


def build_request(
    keypoints: Any,
    options: RenderOptions,
    *,
    visibility: Any = None,
    request_id: int = 0,
) -> pb.RenderRequest:
    """The ``RenderRequest`` for ``keypoints`` ``(B, K, 2)`` or ``(B, N, K, 2)`` rendered as
    ``options`` say; ``visibility`` ``(B, K)`` or ``(B, N, K)`` (the server checks the shapes)."""
    height, width = options.size
    request = pb.RenderRequest(
        request_id=request_id,
        keypoints=tensor_from_array(keypoints, "keypoints"),
        height=height,
        width=width,
        method=METHODS.proto(options.method),
        coordinate_space=COORDINATE_SPACES.proto(options.coords),
        dtype=dtype_by_name(options.dtype).proto,
        codec=codec_by_name(options.codec).proto,
    )
    if isinstance(options.sigma, tuple):
        request.sigmas.extend(options.sigma)
    else:
        request.sigma = options.sigma
    if visibility is not None:
        request.visibility.CopyFrom(tensor_from_array(visibility, "visibility"))
    if options.input_size is not None:
        request.input_height, request.input_width = options.input_size
    return request
