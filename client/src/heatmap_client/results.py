"""What a render returns: dense heatmaps (:class:`RenderResult`), the profiles they are the
outer product of (:class:`ProfilesResult`) or SimCC labels (:class:`SimccResult`), with the
server's :class:`Timings`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .wire.codecs import gather_rows, rebuild_dense

__all__ = ["ProfilesResult", "RenderResult", "SimccResult", "Timings"]


def _torch():
    """torch, imported when a result is asked for as tensors (the client never needs it)."""
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch() needs torch: pip install 'heatmap-client[torch]'") from None
    return torch


@dataclass(frozen=True)
class Timings:
    """Server-side microseconds for one request, and how many requests shared its device call."""

    queue_us: int
    render_us: int
    encode_us: int
    total_us: int
    coalesced_requests: int


@dataclass
class RenderResult:
    """One rendered batch.

    Attributes:
        heatmaps: ``(B, K, H, W)`` numpy array, float32 unless ``keep_dtype`` was asked for; then
            the wire storage: float16 as float16, ``uint16`` / ``uint8`` fixed point as those
            integers (``v = q / 65535`` or ``q / 255``), and bfloat16 as its raw ``uint16`` bits
            (numpy has no bfloat16; :meth:`to_torch` views them as ``torch.bfloat16``).
        weights: float32 ``(B, K)`` or ``(B, N, K)``.
        dtype: the wire dtype's name.
        timings: the server's :class:`Timings`.
        wire_bytes: payload bytes received for the heatmaps.
    """

    heatmaps: np.ndarray
    weights: np.ndarray
    dtype: str
    timings: Timings
    wire_bytes: int
    request_id: int = field(default=0)

    def to_torch(self):
        """``(heatmaps, weights)`` as torch tensors sharing memory (bfloat16 bits become
        bfloat16)."""
        torch = _torch()
        heatmaps = torch.from_numpy(self.heatmaps)
        if self.dtype == "bfloat16" and self.heatmaps.dtype == np.uint16:
            heatmaps = heatmaps.view(torch.bfloat16)
        return heatmaps, torch.from_numpy(self.weights)


class ProfilesResult:
    """One batch as its 1D profiles: ``heatmap[b, k] = max_n rows[b, n, k, :, None] *
    cols[b, n, k, None, :]``.

    The profiles arrive as tables of the distinct ones and an index per keypoint (``seed`` and
    ``msra``, codec ``profile_table``), or one per keypoint (codec ``separable``); ``rows`` and
    ``cols`` are gathered from the tables when first read.

    Attributes:
        rows: ``(B, N, K, H)`` float32; ``N`` is 1 for ``(B, K, 2)`` keypoints.
        cols: ``(B, N, K, W)`` float32.
        tables: ``(row_table (R, H), col_table (C, W), row_index (B, N, K), col_index (B, N, K))``
            float32 tables and integer indices (for a ``separable`` reply, one row per profile).
        weights: float32 ``(B, K)`` or ``(B, N, K)``, as :class:`RenderResult`'s.
        timings: the server's :class:`Timings`.
        wire_bytes: payload bytes received for the profiles.
    """

    def __init__(self, *, weights: np.ndarray, timings: Timings, wire_bytes: int,
                 request_id: int = 0, rows: np.ndarray | None = None,
                 cols: np.ndarray | None = None, tables: tuple | None = None):
        if (tables is None) == (rows is None or cols is None):
            raise ValueError("ProfilesResult: give rows and cols, or tables")
        self.weights, self.timings, self.wire_bytes = weights, timings, wire_bytes
        self.request_id = request_id
        self._rows, self._cols, self._tables = rows, cols, tables

    def __repr__(self) -> str:
        return f"ProfilesResult(shape={self.shape}, wire_bytes={self.wire_bytes})"

    @property
    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._tables is None:
            lead = self._rows.shape[:3]
            identity = np.arange(int(np.prod(lead)), dtype=np.uint32).reshape(lead)
            self._tables = (self._rows.reshape(-1, self._rows.shape[-1]),
                            self._cols.reshape(-1, self._cols.shape[-1]), identity, identity)
        return self._tables

    @property
    def rows(self) -> np.ndarray:
        if self._rows is None:
            row_table, _, row_index, _ = self._tables
            self._rows = gather_rows(row_table, row_index)
        return self._rows

    @property
    def cols(self) -> np.ndarray:
        if self._cols is None:
            _, col_table, _, col_index = self._tables
            self._cols = gather_rows(col_table, col_index)
        return self._cols

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, K, H, W)`` of the dense heatmaps."""
        row_table, col_table, row_index, _ = self.tables
        batch, _, keypoints = row_index.shape
        return batch, keypoints, row_table.shape[1], col_table.shape[1]

    def dense(self, out: np.ndarray | None = None) -> np.ndarray:
        """The dense float32 heatmaps ``(B, K, H, W)``, equal to ``render(...)``'s bit for bit."""
        if out is not None and (out.shape != self.shape or out.dtype != np.float32):
            raise ValueError(f"out: expected a float32 array of shape {self.shape}")
        return rebuild_dense(self.rows, self.cols, out)


@dataclass
class SimccResult:
    """One batch of SimCC labels (mmpose ``SimCCLabel.encode``'s, RTMPose).

    Attributes:
        x_labels: float32 ``(B, K, Wx)`` or ``(B, N, K, Wx)``, ``Wx = round(W_in * split_ratio)``.
        y_labels: float32 ``(B, K, Hy)`` or ``(B, N, K, Hy)``, ``Hy = round(H_in * split_ratio)``.
        weights: float32 ``(B, K)`` or ``(B, N, K)``: mmpose's ``keypoint_weights``.
        dtype: the wire dtype's name (the labels are float32 either way).
        timings: the server's :class:`Timings`.
        wire_bytes: payload bytes received for both labels.
    """

    x_labels: np.ndarray
    y_labels: np.ndarray
    weights: np.ndarray
    dtype: str
    timings: Timings
    wire_bytes: int
    request_id: int = field(default=0)

    def to_torch(self):
        """``(x_labels, y_labels, weights)`` as torch tensors sharing memory."""
        torch = _torch()
        arrays = (self.x_labels, self.y_labels, self.weights)
        return tuple(torch.from_numpy(array) for array in arrays)
