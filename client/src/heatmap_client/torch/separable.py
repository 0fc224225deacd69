"""``SeparableHeatmaps``: a batch's heatmap targets held as their profiles until they are consumed.

A DataLoader batch that carries ``SeparableHeatmaps`` instead of a dense ``(B, K, H, W)`` tensor
moves ``B * N * K * (H + W)`` float32 numbers between processes, through pinned memory and onto
the device, instead of ``B * K * H * W``; the dense tensor is made by one broadcast multiply where
it is consumed. It plugs into the places a batch travels through:

- worker -> main process: it pickles as its two profile tensors (which torch's DataLoader shares
  through shared memory, as any tensor in a batch);
- ``DataLoader(pin_memory=True)``: torch calls ``.pin_memory()`` on objects that have it, so only
  the profiles are pinned;
- ``batch["heatmaps"].to(device)``, and Lightning's and accelerate's batch transfer (which call
  ``.to(device, ...)`` on objects that have it): copies the profiles and returns the dense tensor
  expanded there.
"""

from __future__ import annotations

from typing import Any

import torch

from .expand import _as_dtype, _check_profiles, expand_profiles

__all__ = ["SeparableHeatmaps"]


class SeparableHeatmaps:
    """Dense heatmaps ``(B, K, H, W)`` held as their row and column profiles.

    Args:
        rows: ``(B, N, K, H)`` float32 row profiles.
        cols: ``(B, N, K, W)`` float32 column profiles, on the same device.
        dtype: the dense dtype :meth:`to` and :meth:`dense` make by default (``torch.float32``,
            ``torch.float16`` or ``torch.bfloat16``: the float32 product rounded once).
    """

    __slots__ = ("rows", "cols", "dtype")

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, dtype: Any = torch.float32):
        rows, cols = _check_profiles(rows, cols)
        self.rows, self.cols = _compact(rows), _compact(cols)
        self.dtype = _as_dtype(dtype)

    def __repr__(self) -> str:
        return (f"SeparableHeatmaps(shape={tuple(self.shape)}, instances={self.rows.shape[1]}, "
                f"dtype={self.dtype}, device={self.device}, nbytes={self.nbytes})")

    def __reduce__(self):
        # Only the profiles travel; the dtype goes as its name (torch.dtype pickles, but a name
        # keeps the payload plain).
        return (_rebuild, (self.rows, self.cols, str(self.dtype).removeprefix("torch.")))

    @property
    def shape(self) -> torch.Size:
        """``(B, K, H, W)`` of the dense heatmaps."""
        batch, _, keypoints, height = self.rows.shape
        return torch.Size((batch, keypoints, height, self.cols.shape[-1]))

    @property
    def instances(self) -> int:
        """N, the instances per sample that merge into each channel."""
        return self.rows.shape[1]

    @property
    def device(self) -> torch.device:
        """Where the profiles are."""
        return self.rows.device

    @property
    def nbytes(self) -> int:
        """Bytes held: the two profile tensors, never a dense tensor."""
        return self.rows.nbytes + self.cols.nbytes

    def __len__(self) -> int:
        return self.rows.shape[0]

    def pin_memory(self, device: Any = None) -> SeparableHeatmaps:
        """The profiles in page-locked host memory (what ``DataLoader(pin_memory=True)`` calls)."""
        del device  # torch's own pin_memory() ignores it since 2.3; kept for the old signature
        return SeparableHeatmaps(self.rows.pin_memory(), self.cols.pin_memory(), self.dtype)

    def is_pinned(self) -> bool:
        return self.rows.is_pinned() and self.cols.is_pinned()

    def profiles_to(self, device: Any, non_blocking: bool = False) -> SeparableHeatmaps:
        """The profiles moved to ``device``, still separable."""
        return SeparableHeatmaps(
            self.rows.to(device, non_blocking=non_blocking),
            self.cols.to(device, non_blocking=non_blocking),
            self.dtype,
        )

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The dense ``(B, K, H, W)`` tensor on a device: the profiles are copied, then expanded.

        Takes ``Tensor.to``'s forms: ``to(device)``, ``to(dtype)``, ``to(device, dtype)``,
        ``to(tensor)`` and the keywords ``device``, ``dtype``, ``non_blocking``, ``copy`` (the
        result is always a fresh tensor). ``non_blocking=True`` from pinned profiles overlaps the
        copy; the multiply is queued after it on the device's stream.
        """
        device, dtype, non_blocking = _parse_to(args, kwargs)
        device = self.device if device is None else device
        dtype = self.dtype if dtype is None else dtype
        rows = self.rows.to(device, non_blocking=non_blocking)
        cols = self.cols.to(device, non_blocking=non_blocking)
        return expand_profiles(rows, cols, dtype=dtype)

    def cuda(self, device: Any = None, non_blocking: bool = False) -> torch.Tensor:
        """``to("cuda")``: the dense tensor on a GPU."""
        return self.to(torch.device("cuda") if device is None else _as_cuda(device),
                       non_blocking=non_blocking)

    def dense(self, dtype: Any = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """The dense ``(B, K, H, W)`` tensor where the profiles are (see :func:`expand_profiles`)."""
        return expand_profiles(self.rows, self.cols, dtype=self.dtype if dtype is None else dtype,
                               out=out)


def _compact(profiles: torch.Tensor) -> torch.Tensor:
    """``profiles`` in storage of their own size: a view into a larger tensor would carry all of
    it through pickling, shared memory and pinning."""
    if profiles.is_contiguous() and profiles.untyped_storage().nbytes() == profiles.nbytes:
        return profiles
    return profiles.clone(memory_format=torch.contiguous_format)


def _rebuild(rows: torch.Tensor, cols: torch.Tensor, dtype: str) -> SeparableHeatmaps:
    return SeparableHeatmaps(rows, cols, dtype)


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
