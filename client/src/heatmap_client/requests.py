"""Requests out: a ``RenderRequest`` from keypoints and :class:`RenderOptions` (heatmaps) or
:class:`SimccOptions` (SimCC labels).

The options resolved their names to proto values once, when they were made; a request copies
them. What the options cannot know, the keypoints' own shape, is checked here, before anything is
sent, naming the argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from heatmap.v1 import heatmap_pb2 as pb

from .options import RenderOptions, SimccOptions
from .wire.tensors import double_tensor_from_array, tensor_from_array
from .wire.vocabulary import ArgumentError

__all__ = ["build_request", "build_simcc_request", "keypoints_tensor"]


def keypoints_tensor(keypoints: Any) -> pb.Tensor:
    """``keypoints`` ``(B, K, 2)`` or ``(B, N, K, 2)`` as the float32 tensor message they travel in.

    Raises:
        ArgumentError: naming ``keypoints``, for values that are not real numbers (strings,
            complex numbers, objects) or a shape that is neither; a one-sample ``(K, 2)`` array
            is told to add its batch axis.
    """
    values = _detached(keypoints)
    if not isinstance(values, np.ndarray):
        try:
            values = np.asarray(values)
        except (TypeError, ValueError):
            raise ArgumentError(
                "keypoints", f"expected an array of numbers, got {type(keypoints).__name__}"
            ) from None
    if values.dtype.kind not in "iuf":
        raise ArgumentError(
            "keypoints", f"expected real numbers, got an array of dtype {values.dtype}"
        )
    message = tensor_from_array(values, "keypoints")
    shape = tuple(message.shape)
    if len(shape) not in (3, 4) or shape[-1] != 2:
        raise ArgumentError(
            "keypoints",
            f"expected shape (B, K, 2) or (B, N, K, 2), got {shape}{_shape_hint(shape)}",
            at="keypoints.shape",
        )
    return message


def _shape_hint(shape: tuple[int, ...]) -> str:
    """What a keypoints array of the wrong shape most likely is, and how to pass it."""
    if len(shape) == 2 and shape[-1] == 2:
        return "; one sample's (K, 2) keypoints are a batch of one: pass keypoints[None]"
    if len(shape) == 2 and shape[-1] % 3 == 0:
        return ("; flat COCO (x, y, v) triplets reshape to (B, K, 3): pass [..., :2] as "
                "keypoints and [..., 2] as visibility")
    if len(shape) == 2 and shape[-1] % 2 == 0:
        return "; flat (x, y) pairs reshape to (B, K, 2)"
    if len(shape) in (3, 4) and shape[-1] == 3:
        return "; (x, y, v) triplets: pass [..., :2] as keypoints and [..., 2] as visibility"
    return ""


def _detached(values: Any) -> Any:
    """A torch tensor as numpy (detached and on the CPU), anything else as it is."""
    detach = getattr(values, "detach", None)
    if detach is not None and hasattr(values, "numpy"):
        return detach().cpu().numpy()
    return values


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
        ArgumentError: naming ``keypoints`` (see :func:`keypoints_tensor`), or ``sigma`` when
            there is none or two.
    """
    request = pb.RenderRequest(
        request_id=request_id, keypoints=keypoints_tensor(keypoints), **options.request_fields
    )
    if sigma_map is not None:
        if options.sigma is not None:
            raise ArgumentError(
                "sigma", "give either a shared sigma or a per-batch array, not both"
            )
        request.sigma_map.CopyFrom(double_tensor_from_array(_detached(sigma_map), "sigma"))
    elif options.sigma is None:
        raise ArgumentError("sigma", "required: a number, (K,), or an array per batch")
    if visibility is not None:
        request.visibility.CopyFrom(tensor_from_array(_detached(visibility), "visibility"))
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
    request = pb.RenderRequest(
        request_id=request_id, keypoints=keypoints_tensor(keypoints), **options.request_fields
    )
    if visibility is not None:
        request.visibility.CopyFrom(tensor_from_array(_detached(visibility), "visibility"))
    return request

