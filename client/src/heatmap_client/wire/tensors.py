"""float32 tensors in protobuf messages: shape plus little-endian C-order bytes (Triton's way)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from heatmap.v1 import heatmap_pb2 as pb

from .vocabulary import ArgumentError

__all__ = [
    "FLOAT32_LE",
    "FLOAT64_LE",
    "UINT32_LE",
    "array_from_double_tensor",
    "array_from_tensor",
    "double_tensor_from_array",
    "tensor_from_array",
]

FLOAT32_LE = np.dtype("<f4")
FLOAT64_LE = np.dtype("<f8")
UINT32_LE = np.dtype("<u4")


def tensor_from_array(array: Any, name: str) -> pb.Tensor:
    """Packs an array-like as a float32 ``Tensor`` message (converting the dtype when needed)."""
    try:
        values = np.ascontiguousarray(array, dtype=FLOAT32_LE)
    except (TypeError, ValueError):
        raise ArgumentError(name, f"expected numbers, got {type(array).__name__}") from None
    return pb.Tensor(shape=values.shape, data=values.tobytes())


def double_tensor_from_array(array: Any, name: str) -> pb.DoubleTensor:
    """Packs an array-like as a float64 ``DoubleTensor`` message (converting when needed)."""
    try:
        values = np.ascontiguousarray(array, dtype=FLOAT64_LE)
    except (TypeError, ValueError):
        raise ArgumentError(name, f"expected numbers, got {type(array).__name__}") from None
    return pb.DoubleTensor(shape=values.shape, data=values.tobytes())


def _unpack(tensor: pb.Tensor | pb.DoubleTensor, dtype: np.dtype, name: str) -> np.ndarray:
    shape = tuple(tensor.shape)
    if any(side < 0 for side in shape):
        raise ArgumentError(name, f"sides must be >= 0, got {list(shape)}", at=f"{name}.shape")
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge shape cannot wrap
    if len(tensor.data) != expected:
        raise ArgumentError(
            name,
            f"{len(tensor.data)} bytes do not match shape {list(shape)} "
            f"({expected} bytes of {dtype.name})",
            at=f"{name}.data",
        )
    try:
        values = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    except ValueError:  # an empty tensor with sides numpy cannot index, e.g. (0, 2**62, 2)
        raise ArgumentError(name, f"{list(shape)} is too large", at=f"{name}.shape") from None
    if dtype.isnative:
        return values.copy()  # writable, and not a view of the message's bytes
    return values.astype(dtype.newbyteorder("="))


def array_from_tensor(tensor: pb.Tensor, name: str) -> np.ndarray:
    """Unpacks a float32 ``Tensor`` message into a fresh, writable array.

    Raises:
        ArgumentError: a ``ValueError`` naming ``name`` when the shape is negative or the byte
            count does not match it.
    """
    return _unpack(tensor, FLOAT32_LE, name)


def array_from_double_tensor(tensor: pb.DoubleTensor, name: str) -> np.ndarray:
    """Unpacks a float64 ``DoubleTensor`` message into a fresh, writable array.

    Raises:
        ArgumentError: as :func:`array_from_tensor`.
    """
    return _unpack(tensor, FLOAT64_LE, name)
