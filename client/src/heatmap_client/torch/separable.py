"""``SeparableHeatmaps``: a batch's heatmap targets held factorised until they are consumed.

A DataLoader batch that carries ``SeparableHeatmaps`` instead of a dense ``(B, K, H, W)`` tensor
moves, between processes, through pinned memory and onto the device, only the targets' distinct
row and column profiles and an index per keypoint: the windowed methods draw every profile from a
kernel table, so a batch holds a few dozen distinct ones per axis (tens of KB where the dense
tensor is tens of MB); ``udp`` and ``dark`` hold one per keypoint (``B * N * K * (H + W)``
numbers). The dense tensor is made by a gather and one broadcast multiply where it is consumed:

- worker -> main process: it pickles as one flat tensor, which torch's DataLoader passes through
  shared memory as any tensor in a batch (every tensor costs a segment and a file descriptor, so
  the collate puts the weights in the same storage);
- ``DataLoader(pin_memory=True)`` calls ``.pin_memory()``, which pins that tensor alone;
- ``batch["heatmaps"].to(device)``, and Lightning's and accelerate's batch transfer (which call
  ``.to(device, ...)``): copies it and returns the dense tensor made there.

It is a ``torch.Tensor`` of shape ``(B, K, H, W)`` (a wrapper subclass without storage of its
own), so code that looks at a batch's tensors (accelerate's ``find_batch_size``, ``len``,
``.shape``) takes it as one, and any other torch operation on it (``F.mse_loss(pred, heatmaps)``,
``heatmaps[0]``, ``.float()``, ``.numpy()``) works on its dense form, made then on its device.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils._pytree import tree_map

from heatmap_render import expand_profiles
from heatmap_render.expand import check_profiles
from heatmap_render.inputs import check_dtype

__all__ = ["SeparableHeatmaps"]


def _tables(packed: torch.Tensor, meta: tuple[int, ...]):
    """``(row_table, col_table, row_index, col_index)`` as views of the flat ``packed``."""
    batch, instances, keypoints, height, width, rows, cols = meta
    points = batch * instances * keypoints
    ends = [rows * height, rows * height + cols * width]
    ends += [ends[1] + points, ends[1] + 2 * points]
    lead = (batch, instances, keypoints)
    return (packed[: ends[0]].view(rows, height), packed[ends[0]: ends[1]].view(cols, width),
            packed[ends[1]: ends[2]].view(torch.int32).view(lead),
            packed[ends[2]: ends[3]].view(torch.int32).view(lead))


def packed_size(lead: tuple[int, int, int], size: tuple[int, int], rows: int, cols: int) -> int:
    """float32 elements a :class:`SeparableHeatmaps` of these dimensions holds."""
    return rows * size[0] + cols * size[1] + 2 * math.prod(lead)


class SeparableHeatmaps(torch.Tensor):
    """Dense heatmaps ``(B, K, H, W)`` held as tables of distinct row and column profiles and an
    index per keypoint and instance.

    Args:
        rows: ``(B, N, K, H)`` float32 row profiles.
        cols: ``(B, N, K, W)`` float32 column profiles, on the same device.
        dtype: the dense dtype :meth:`to` and :meth:`dense` make by default (``torch.float32``,
            ``torch.float16`` or ``torch.bfloat16``: the float32 product rounded once).

    :meth:`from_table` makes one from the tables themselves (what the service and the local
    renderer give for ``seed`` and ``msra``).

    Attributes:
        packed: one flat float32 tensor: the row table ``(R, H)``, the column table ``(C, W)``,
            then the row and column indices ``(B, N, K)`` as int32 bits.
    """

    __slots__ = ("_meta", "packed")
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, rows: torch.Tensor, cols: torch.Tensor, dtype: Any = torch.float32):
        rows, cols = check_profiles(rows, cols)
        lead = tuple(rows.shape[:3])
        count = math.prod(lead)
        identity = torch.arange(count, dtype=torch.int32, device=rows.device).view(lead)
        return cls.from_table(rows.reshape(count, -1), identity, cols.reshape(count, -1),
                              identity, dtype=dtype)

    @classmethod
    def from_table(cls, row_table: torch.Tensor, row_index: torch.Tensor,
                   col_table: torch.Tensor, col_index: torch.Tensor,
                   dtype: Any = torch.float32, out: torch.Tensor | None = None):
        """From distinct profiles ``row_table (R, H)``, ``col_table (C, W)`` (float32) and the
        indices ``(B, N, K)`` into them; ``out``: a flat float32 tensor of :func:`packed_size`
        elements to pack them into (e.g. shared memory, or a view beside the weights)."""
        lead = tuple(row_index.shape)
        meta = (*lead, row_table.shape[1], col_table.shape[1], row_table.shape[0],
                col_table.shape[0])
        size = packed_size(lead, (meta[3], meta[4]), meta[5], meta[6])
        packed = torch.empty(size, dtype=torch.float32, device=row_table.device) \
            if out is None else out
        if packed.dtype != torch.float32 or tuple(packed.shape) != (size,):
            raise ValueError(f"out: expected a flat float32 tensor of {size} elements")
        for part, values in zip(_tables(packed, meta), (row_table, col_table, row_index,
                                                        col_index)):
            part.copy_(values)
        return cls._wrap(packed, meta, dtype)

    @classmethod
    def _wrap(cls, packed: torch.Tensor, meta: tuple[int, ...], dtype: Any):
        batch, _, keypoints, height, width = meta[:5]
        heatmaps = torch.Tensor._make_wrapper_subclass(
            cls, (batch, keypoints, height, width), dtype=check_dtype(dtype),
            device=packed.device,
        )
        heatmaps.packed, heatmaps._meta = packed, meta
        return heatmaps

    def __repr__(self) -> str:
        return (f"SeparableHeatmaps(shape={tuple(self.shape)}, instances={self.instances}, "
                f"dtype={self.dtype}, device={self.device}, nbytes={self.nbytes})")

    def __reduce_ex__(self, protocol: int):
        # Only the packed tables travel (a torch pickler shares their storage); the dtype as text.
        return (_rebuild, (self.packed, self._meta, str(self.dtype).removeprefix("torch.")))

    @property
    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(row_table (R, H), col_table (C, W), row_index, col_index (B, N, K) int32)``."""
        return _tables(self.packed, self._meta)

    @property
    def rows(self) -> torch.Tensor:
        """``(B, N, K, H)`` float32 row profiles (gathered from the table)."""
        row_table, _, row_index, _ = self.tables
        return row_table.index_select(0, row_index.reshape(-1)).view(*row_index.shape, -1)

    @property
    def cols(self) -> torch.Tensor:
        """``(B, N, K, W)`` float32 column profiles (gathered from the table)."""
        _, col_table, _, col_index = self.tables
        return col_table.index_select(0, col_index.reshape(-1)).view(*col_index.shape, -1)

    @property
    def profiles(self) -> torch.Tensor:
        """``(B, N, K, H + W)`` float32, the rows then the columns side by side."""
        return torch.cat([self.rows, self.cols], dim=-1)

    @property
    def instances(self) -> int:
        """N, the instances per sample that merge into each channel."""
        return self._meta[1]

    @property
    def nbytes(self) -> int:
        """Bytes held: the tables and indices, never a dense tensor."""
        return self.packed.nbytes

    def pin_memory(self, device: Any = None) -> SeparableHeatmaps:
        """The tables in page-locked host memory (what ``DataLoader(pin_memory=True)`` calls)."""
        del device  # torch's own Tensor.pin_memory() no longer takes one; kept for old callers
        return SeparableHeatmaps._wrap(self.packed.pin_memory(), self._meta, self.dtype)

    def is_pinned(self, device: Any = None) -> bool:
        return self.packed.is_pinned()

    def profiles_to(self, device: Any, non_blocking: bool = False) -> SeparableHeatmaps:
        """The tables moved to ``device``, still separable."""
        moved = self.packed.to(device, non_blocking=non_blocking)
        return SeparableHeatmaps._wrap(moved, self._meta, self.dtype)

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The dense ``(B, K, H, W)`` tensor on a device: the tables are copied, then expanded.

        Takes ``Tensor.to``'s forms: ``to(device)``, ``to(dtype)``, ``to(device, dtype)``,
        ``to(tensor)`` and the keywords ``device``, ``dtype``, ``non_blocking``, ``copy`` (the
        result is always a fresh tensor). ``non_blocking=True`` from pinned tables overlaps the
        copy; the gather and the multiply are queued after it on the device's stream.
        """
        device, dtype, non_blocking = _parse_to(args, kwargs)
        moved = self if device is None else self.profiles_to(device, non_blocking=non_blocking)
        return moved.dense(dtype=dtype)

    def cuda(self, device: Any = None, non_blocking: bool = False) -> torch.Tensor:
        """``to("cuda")``: the dense tensor on a GPU."""
        return self.to(torch.device("cuda") if device is None else _as_cuda(device),
                       non_blocking=non_blocking)

    def cpu(self) -> torch.Tensor:
        """The dense tensor on the CPU."""
        return self.to("cpu")

    def float(self) -> torch.Tensor:  # noqa: A003 - Tensor's own name
        """The dense float32 tensor where the tables are."""
        return self.dense(dtype=torch.float32)

    def half(self) -> torch.Tensor:
        return self.dense(dtype=torch.float16)

    def bfloat16(self) -> torch.Tensor:
        return self.dense(dtype=torch.bfloat16)

    def numpy(self, *, force: bool = False):
        """The dense tensor as a numpy array (on the CPU)."""
        return self.cpu().numpy(force=force)

    def dense(self, dtype: Any = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """The dense ``(B, K, H, W)`` tensor where the tables are (:func:`expand_profiles`)."""
        return expand_profiles(self.rows, self.cols, dtype=self.dtype if dtype is None else dtype,
                               out=out)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        # Any other operation sees the dense tensor, made on the tables' device.
        def dense(value):
            return value.dense() if isinstance(value, SeparableHeatmaps) else value

        return func(*tree_map(dense, args), **tree_map(dense, kwargs or {}))


def _rebuild(packed: torch.Tensor, meta: tuple[int, ...], dtype: str) -> SeparableHeatmaps:
    return SeparableHeatmaps._wrap(packed, meta, dtype)


def _as_cuda(device: Any) -> torch.device:
    return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)


_TO_KEYWORDS = {"device", "dtype", "non_blocking", "copy", "memory_format"}


def _parse_to(args: tuple, kwargs: dict) -> tuple[torch.device | None, torch.dtype | None, bool]:
    unknown = set(kwargs) - _TO_KEYWORDS
    if unknown:
        raise TypeError(f"to(): unexpected keyword argument {sorted(unknown)[0]!r}")
    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    non_blocking = bool(kwargs.get("non_blocking", False))
    memory_format = kwargs.get("memory_format", torch.preserve_format)
    if memory_format not in (torch.preserve_format, torch.contiguous_format):
        raise ValueError(f"memory_format: the dense tensor is contiguous, got {memory_format}")
    positional = list(args)
    if positional and isinstance(positional[0], torch.Tensor):
        other = positional.pop(0)
        device, dtype = other.device, other.dtype
    elif positional and not isinstance(positional[0], torch.dtype):
        device = positional.pop(0)
    if positional and isinstance(positional[0], torch.dtype):
        dtype = positional.pop(0)
    if positional and isinstance(positional[0], bool):
        non_blocking = positional.pop(0)
        if positional and isinstance(positional[0], bool):
            positional.pop(0)  # copy: the result is always new
    if positional:
        raise TypeError(f"to(): unexpected arguments {positional!r}")
    if isinstance(device, int):
        device = torch.device("cuda", device)  # as Tensor.to(0) means the first GPU
    return (None if device is None else torch.device(device)), dtype, non_blocking
