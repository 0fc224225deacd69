"""What a reply to one request holds, computed from the request alone, once, for both ends.

A :class:`ReplyLayout` gives a reply's header fields, the arrays its payload decodes to (shapes and
dtypes, in payload order), its byte counts and the work it costs. The server budgets, limits and
frames a reply by it; the client bounds what it reads and decodes by it; so the two ends cannot
disagree about a reply's size. There is one layout per target and codec family:

- :class:`HeatmapLayout`: dense heatmaps ``(B, K, H, W)`` in the wire dtype (codecs ``zstd``,
  ``none``);
- :class:`ProfilesLayout`: their float32 profiles ``rows (B, N, K, H)`` then ``cols (B, N, K, W)``
  (codec ``separable``);
- :class:`ProfileTableLayout`: the same profiles as tables of the distinct ones and an index per
  profile (codec ``profile_table``), whose sizes the reply's header gives;
- :class:`SimccLayout`: SimCC's x labels ``(B, [N,] K, Wx)`` then y labels ``(B, [N,] K, Hy)``.

A new codec or target is one class here (and its entry in :func:`layout_of`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from heatmap.v1 import heatmap_pb2 as pb

from .codecs import CODECS, Codec
from .dtypes import WIRE_DTYPES, WireDType
from .tensors import FLOAT32_LE, UINT32_LE
from .vocabulary import TARGETS, ArgumentError

__all__ = [
    "MAX_UNARY_REPLY_BYTES",
    "PROFILE_ELEMENT_PASSES",
    "SIMCC_ELEMENT_PASSES",
    "HeatmapLayout",
    "ProfileTableLayout",
    "ProfilesLayout",
    "ReplyLayout",
    "SimccLayout",
    "compressed_bound",
    "layout_of",
]


# The largest reply that travels as one message (RenderUnary): its payload bound plus its weights.
# Profiles and the compressed sparse heatmaps of real batches fit (a few KB to ~1 MB; the bound of
# a B=32, K=17, 64x48 dense float32 tensor is 6.8 MB); larger replies stream in chunks, so that a
# reader that stalls holds one chunk, not the reply.
MAX_UNARY_REPLY_BYTES = 8 << 20

# What a reply message holds beside its payload and weights (header, timings, field tags), at most.
MESSAGE_FRAMING_BYTES = 4 << 10

# Work is counted in dense element passes (one multiply-and-store into a heatmap). A profile
# element costs up to eight (udp and dark evaluate a float64 exponential per element; tabled
# methods gather); a SimCC label element two (a gathered row, converted to the wire dtype).
PROFILE_ELEMENT_PASSES = 8
SIMCC_ELEMENT_PASSES = 2


def compressed_bound(decoded_bytes: int) -> int:
    """Most payload bytes a compressed encoding of ``decoded_bytes`` may take (zstd's own bound,
    ~0.4% plus a frame's overhead, with room for the frames of a slab-parallel encoding)."""
    return decoded_bytes + (decoded_bytes >> 7) + (64 << 10)


@dataclass(frozen=True)
class ReplyLayout:
    """A reply's shapes, bytes and work.

    Attributes:
        codec, wire: the request's codec and wire dtype.
        lead: the keypoints' shape without its last axis, ``(B, K)`` or ``(B, N, K)``: also the
            weights' shape.
        height, width: the heatmap's ``(H, W)`` (heatmap targets; 0 for SimCC).
    """

    codec: Codec
    wire: WireDType
    lead: tuple[int, ...]
    height: int = 0
    width: int = 0

    target: ClassVar[str] = "heatmap"

    @property
    def batch(self) -> int:
        return self.lead[0]

    @property
    def instances(self) -> int:
        """N, the instances per sample (1 for ``(B, K, 2)`` keypoints)."""
        return self.lead[1] if len(self.lead) == 3 else 1

    @property
    def keypoints(self) -> int:
        """K, the keypoints per instance."""
        return self.lead[-1]

    @functools.cached_property
    def points(self) -> int:
        """B * N * K, every keypoint of every instance."""
        return math.prod(self.lead)

    def arrays(self, header: pb.TensorHeader | None = None) -> list[tuple[tuple[int, ...],
                                                                           np.dtype]]:
        """The arrays the payload decodes to, in payload order: ``(shape, dtype)`` each (where
        they depend on the data, as the reply's ``header`` says, or at their largest)."""
        raise NotImplementedError

    def header_shapes(self) -> dict:
        """The header's shape fields (``shape``, and ``y_labels_shape`` for SimCC)."""
        raise NotImplementedError

    def payload_header(self, arrays: list[np.ndarray]) -> dict:
        """The header fields that describe these payload arrays (the server's side)."""
        return self.header_shapes()

    def decoded_bytes_for(self, header: pb.TensorHeader) -> int:
        """The bytes the payload a reply's ``header`` describes decodes to.

        Raises:
            ValueError: when the header describes more than this request can need.
        """
        return self.decoded_bytes

    @property
    def work(self) -> int:
        """What rendering it costs the device, in element passes."""
        raise NotImplementedError

    @property
    def output_elements(self) -> int:
        """The elements ``--max-output-elements`` bounds: the largest array the render holds."""
        raise NotImplementedError

    @functools.cached_property
    def decoded_bytes(self) -> int:
        """The payload's bytes once decoded (at most, where the header gives the sizes)."""
        return sum(math.prod(shape) * dtype.itemsize for shape, dtype in self.arrays())

    @property
    def weights_bytes(self) -> int:
        return self.points * 4

    @property
    def held_bytes(self) -> int:
        """Host bytes the rendered reply holds until it is sent: the decoded payload and the
        float32 weights (the server's reply budget counts these)."""
        return self.decoded_bytes + self.weights_bytes

    @functools.cached_property
    def max_payload(self) -> int:
        """The most payload bytes a reply can carry: a reader holds no more than this."""
        decoded = self.decoded_bytes
        return compressed_bound(decoded) if self.codec.checksummed else decoded

    @property
    def max_message_bytes(self) -> int:
        """The largest message the whole reply can make: payload bound, weights and framing."""
        return self.max_payload + self.weights_bytes + MESSAGE_FRAMING_BYTES

    @property
    def fits_one_message(self) -> bool:
        """Whether the reply travels as one message (``RenderUnary``) whatever it compresses to."""
        return self.max_payload + self.weights_bytes <= MAX_UNARY_REPLY_BYTES


@dataclass(frozen=True)
class HeatmapLayout(ReplyLayout):
    """Dense heatmaps ``(B, K, H, W)`` in the wire dtype's storage."""

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.batch, self.keypoints, self.height, self.width

    def arrays(self, header: pb.TensorHeader | None = None) -> list[tuple[tuple[int, ...],
                                                                           np.dtype]]:
        return [(self.shape, self.wire.storage)]

    def header_shapes(self) -> dict:
        return {"shape": list(self.shape)}

    @property
    def work(self) -> int:
        # Every instance is one more max-merge pass over the dense output.
        return self.points * self.height * self.width

    @property
    def output_elements(self) -> int:
        return max(math.prod(self.shape), self.points * (self.height + self.width))


@dataclass(frozen=True)
class ProfilesLayout(HeatmapLayout):
    """The dense heatmaps' profiles: float32 ``rows (B, N, K, H)``, then ``cols (B, N, K, W)``."""

    def arrays(self, header: pb.TensorHeader | None = None) -> list[tuple[tuple[int, ...],
                                                                           np.dtype]]:
        rows = (self.batch, self.instances, self.keypoints)
        return [((*rows, self.height), FLOAT32_LE), ((*rows, self.width), FLOAT32_LE)]

    @property
    def work(self) -> int:
        return self.points * (self.height + self.width) * PROFILE_ELEMENT_PASSES

    @property
    def output_elements(self) -> int:
        return self.points * (self.height + self.width)


@dataclass(frozen=True)
class ProfileTableLayout(ProfilesLayout):
    """The profiles as tables of distinct rows and an index per profile: float32
    ``row_table (R, H)``, ``col_table (C, W)``, then uint32 ``row_index`` and ``col_index``
    ``(B, N, K)``; ``R`` and ``C`` (at most ``B * N * K``) travel in the header."""

    def arrays(self, header: pb.TensorHeader | None = None) -> list[tuple[tuple[int, ...],
                                                                           np.dtype]]:
        rows, cols = (self.points, self.points) if header is None else (
            header.table_rows, header.table_cols)
        index = (self.batch, self.instances, self.keypoints)
        return [((rows, self.height), FLOAT32_LE), ((cols, self.width), FLOAT32_LE),
                (index, UINT32_LE), (index, UINT32_LE)]

    def payload_header(self, arrays: list[np.ndarray]) -> dict:
        return {**self.header_shapes(), "table_rows": arrays[0].shape[0],
                "table_cols": arrays[1].shape[0]}

    def decoded_bytes_for(self, header: pb.TensorHeader) -> int:
        if max(header.table_rows, header.table_cols) > self.points:
            raise ValueError(
                f"header: tables of {header.table_rows} and {header.table_cols} profiles, more "
                f"than the {self.points} the request has"
            )
        return sum(math.prod(shape) * dtype.itemsize for shape, dtype in self.arrays(header))


@dataclass(frozen=True)
class SimccLayout(ReplyLayout):
    """SimCC labels: x ``(*lead, Wx)`` then y ``(*lead, Hy)`` in the wire dtype's storage.

    Attributes:
        label_width, label_height: ``Wx = round(W_in * r)`` and ``Hy = round(H_in * r)`` (half to
            even, as mmpose).
    """

    label_width: int = 0
    label_height: int = 0

    target: ClassVar[str] = "simcc"

    def arrays(self, header: pb.TensorHeader | None = None) -> list[tuple[tuple[int, ...],
                                                                           np.dtype]]:
        storage = self.wire.storage
        return [((*self.lead, self.label_width), storage),
                ((*self.lead, self.label_height), storage)]

    def header_shapes(self) -> dict:
        (x_shape, _), (y_shape, _) = self.arrays()
        return {"shape": list(x_shape), "y_labels_shape": list(y_shape)}

    @property
    def work(self) -> int:
        return self.points * (self.label_width + self.label_height) * SIMCC_ELEMENT_PASSES

    @property
    def output_elements(self) -> int:
        return self.points * (self.label_width + self.label_height)


def _known(table: dict, value: int, field: str):
    if value not in table:
        raise ArgumentError(field, f"unknown value {value}")
    return table[value]


def layout_of(request: pb.RenderRequest) -> ReplyLayout:
    """The layout of the reply ``request`` asks for.

    Raises:
        ArgumentError: naming the request field that makes no reply, in this order: an unknown
            ``target``, ``dtype`` or ``codec``; for SimCC, no ``simcc``, codec ``separable`` or a
            ``simcc.split_ratio`` that is not a finite number > 0; no ``keypoints``, or
            ``keypoints.shape`` not ``[B, K, 2]`` or ``[B, N, K, 2]`` with sides >= 0.
    """
    target = TARGETS.name(request.target)
    if target is None:
        raise ArgumentError(TARGETS.field, f"unknown value {request.target}")
    wire = _known(WIRE_DTYPES, request.dtype, "dtype")
    codec = _known(CODECS, request.codec, "codec")
    simcc = target == SimccLayout.target
    if simcc:
        if not request.HasField("simcc"):
            raise ArgumentError("simcc", "required with target simcc")
        if codec.separable:
            raise ArgumentError("codec", "SimCC labels travel as zstd or none")
        ratio = request.simcc.split_ratio
        if not (math.isfinite(ratio) and ratio > 0):
            raise ArgumentError(
                "simcc.split_ratio", f"must be a finite number > 0, got {ratio!r}"
            )
    if not request.HasField("keypoints"):
        raise ArgumentError("keypoints", "required")
    shape = tuple(request.keypoints.shape)
    if len(shape) not in (3, 4) or shape[-1] != 2 or min(shape) < 0:
        raise ArgumentError(
            "keypoints", f"expected shape [B, K, 2] or [B, N, K, 2], got {list(shape)}",
            at="keypoints.shape",
        )
    lead = shape[:-1]
    if simcc:
        ratio = request.simcc.split_ratio
        return SimccLayout(
            codec, wire, lead, label_width=round(request.input_width * ratio),
            label_height=round(request.input_height * ratio),
        )
    family = _FAMILIES.get(codec.name, HeatmapLayout)
    return family(codec, wire, lead, height=request.height, width=request.width)


# The heatmap target's layouts by codec (the dense ones by default).
_FAMILIES = {"separable": ProfilesLayout, "profile_table": ProfileTableLayout}
