"""float32 tensors in protobuf messages: shape plus little-endian bytes in C order (Triton's way)."""

from __future__ import annotations

from typing import Any

import numpy as np

from heatmap.v1 import heatmap_pb2 as pb

__all__ = [
    "FLOAT32_LE",
    "array_from_tensor",
    "tensor_from_array",
]

FLOAT32_LE = np.dtype("<f4")


def tensor_from_array(array: Any, name: str) -> pb.Tensor:
    """Packs an array-like as a float32 ``Tensor`` message (converting the dtype when needed)."""
    try:
        values = np.ascontiguousarray(array, dtype=FLOAT32_LE)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numbers, got {type(array).__name__}") from None
    return pb.Tensor(shape=values.shape, data=values.tobytes())


def array_from_tensor(tensor: pb.Tensor, name: str) -> np.ndarray:
    """Unpacks a float32 ``Tensor`` message into a fresh, writable array.

    Raises:
        ValueError: naming ``name`` when the shape is negative or the byte count does not match it.
    """
    shape = tuple(tensor.shape)
    if any(side < 0 for side in shape):
        raise ValueError(f"{name}.shape: sides must be >= 0, got {list(shape)}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    expected = count * FLOAT32_LE.itemsize
    if len(tensor.data) != expected:
        raise ValueError(
            f"{name}.data: {len(tensor.data)} bytes do not match shape {list(shape)} "
            f"({expected} bytes of float32)"
        )
    return np.frombuffer(tensor.data, dtype=FLOAT32_LE).reshape(shape).astype(np.float32)
