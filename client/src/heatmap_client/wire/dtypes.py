"""The one table of wire dtypes, and their exact numpy conversions to and from float32.

numpy has no bfloat16, so bfloat16 travels and is held as its raw ``uint16`` bits; converting it
to float32 is a 16-bit shift, exact. Fixed-point dtypes store ``round_half_even(v * scale)``.
Server (torch, on its device) and client (numpy) produce the same bits for the same float32 input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vocabulary import DTYPE_NAMES

__all__ = [
    "WIRE_DTYPES",
    "WireDType",
    "dequantize",
    "dtype_by_name",
    "quantize",
]


@dataclass(frozen=True)
class WireDType:
    """A heatmap element type as it travels.

    Attributes:
        name: as users write it (``DTYPE_NAMES``); ``proto`` its enum value.
        storage: the little-endian numpy dtype of the bytes (bfloat16: its ``uint16`` bits).
        render_as: the floating dtype the renderer produces before conversion (fixed point renders
            in float32 and is quantised from it).
        scale: ``v = q / scale`` for fixed point; None for floating types.
        largest: the largest value it holds: 1 for fixed point, the largest finite value for
            floating types (a larger one would arrive as inf, or clipped).
    """

    name: str
    storage: np.dtype
    render_as: str
    scale: int | None = None
    largest: float = 1.0

    def holds(self, peak: float) -> bool:
        """Whether values up to ``peak`` arrive as they were rendered (finite, unclipped)."""
        return peak <= self.largest

    def range_text(self) -> str:
        """What it holds, for an error message."""
        if self.scale is not None:
            return f"{self.name} holds values up to 1"
        return f"{self.name} holds finite values up to {self.largest:.6g}"

    @property
    def proto(self) -> int:
        return DTYPE_NAMES.proto(self.name)

    @property
    def itemsize(self) -> int:
        return self.storage.itemsize


_WIRE_DTYPES = (
    WireDType("float32", np.dtype("<f4"), "float32", largest=float(np.finfo(np.float32).max)),
    WireDType("float16", np.dtype("<f2"), "float16", largest=float(np.finfo(np.float16).max)),
    # bfloat16's largest finite value, (2 - 2**-7) * 2**127.
    WireDType("bfloat16", np.dtype("<u2"), "bfloat16", largest=(2 - 2**-7) * 2.0**127),
    WireDType("uint16", np.dtype("<u2"), "float32", scale=65535),
    WireDType("uint8", np.dtype("u1"), "float32", scale=255),
)
_BY_NAME = {wire.name: wire for wire in _WIRE_DTYPES}
# By proto value, UNSPECIFIED (0) included.
WIRE_DTYPES: dict[int, WireDType] = {0: _BY_NAME[DTYPE_NAMES.default]}
WIRE_DTYPES.update({wire.proto: wire for wire in _WIRE_DTYPES})


def dtype_by_name(name: str) -> WireDType:
    """The wire dtype called ``name``: float32, float16, bfloat16, uint16 or uint8.

    Raises:
        ArgumentError: a ``ValueError`` naming ``dtype``.
    """
    return WIRE_DTYPES[DTYPE_NAMES.proto(name)]


def _bfloat16_bits(values: np.ndarray) -> np.ndarray:
    # Round to nearest even on the 16 bits that are dropped (heatmaps hold no NaN).
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    return ((bits + rounding) >> 16).astype(np.uint16)


def quantize(values: np.ndarray, wire: WireDType) -> np.ndarray:
    """float32 values -> the storage array of ``wire`` (what the server sends for them)."""
    if wire.name == "float32":
        return np.ascontiguousarray(values, dtype=np.float32)
    if wire.name == "float16":
        return values.astype(np.float16)
    if wire.name == "bfloat16":
        return _bfloat16_bits(values)
    scaled = np.multiply(values, np.float32(wire.scale), dtype=np.float32)
    return np.rint(scaled).astype(wire.storage)


def dequantize(stored: np.ndarray, wire: WireDType, out: np.ndarray | None = None) -> np.ndarray:
    """The storage array of ``wire`` -> float32 (into ``out`` when given)."""
    if out is None:
        out = np.empty(stored.shape, dtype=np.float32)
    if wire.name == "bfloat16":
        np.left_shift(stored, 16, out=out.view(np.uint32), dtype=np.uint32)
    elif wire.scale is not None:
        np.divide(stored, np.float32(wire.scale), out=out, dtype=np.float32)
    else:
        np.copyto(out, stored, casting="same_kind")
    return out
