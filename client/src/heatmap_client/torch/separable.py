"""``SeparableHeatmaps``: a batch's heatmap targets held as their profiles until they are consumed.

A DataLoader batch that carries ``SeparableHeatmaps`` instead of a dense ``(B, K, H, W)`` tensor
moves ``B * N * K * (H + W)`` float32 numbers between processes, through pinned memory and onto
the device, instead of ``B * K * H * W``; the dense tensor is made by one broadcast multiply where
it is consumed. It plugs into the places a batch travels through:

- worker -> main process: it pickles as its profiles (which torch's DataLoader passes through
  shared memory, as any tensor in a batch);
- ``DataLoader(pin_memory=True)``: torch calls ``.pin_memory()`` on objects that have it, so only
  the profiles are pinned;
- ``batch["heatmaps"].to(device)``, and Lightning's and accelerate's batch transfer (which call
  ``.to(device, ...)`` on objects that have it): copies the profiles and returns the dense tensor
  expanded there.

Rows and columns live side by side in one ``(B, N, K, H + W)`` tensor: every tensor in a batch
costs a shared-memory segment and a file descriptor passed to the main process (about 0.25 ms
each way on a small CPU), a pinned allocation and a copy, so one tensor rather than two.
"""

from __future__ import annotations

from typing import Any

import torch

from heatmap_render import expand_profiles
from heatmap_render.expand import check_profiles
from heatmap_render.inputs import check_dtype

__all__ = ["SeparableHeatmaps"]


class SeparableHeatmaps:
    """Dense heatmaps ``(B, K, H, W)`` held as their row and column profiles.

    Args:
        rows: ``(B, N, K, H)`` float32 row profiles.
        cols: ``(B, N, K, W)`` float32 column profiles, on the same device.
        dtype: the dense dtype :meth:`to` and :meth:`dense` make by default (``torch.float32``,
            ``torch.float16`` or ``torch.bfloat16``: the float32 product rounded once).

    Attributes:
        profiles: ``(B, N, K, H + W)`` float32, the rows then the columns (a copy of them).
        height: ``H``.
    """

    __slots__ = ("dtype", "height", "profiles")

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, dtype: Any = torch.float32):
        rows, cols = check_profiles(rows, cols)
        self.profiles = torch.cat([rows, cols], dim=-1)
        self.height = rows.shape[-1]
        self.dtype = check_dtype(dtype)

    @classmethod
    def _packed(cls, profiles: torch.Tensor, height: int, dtype: Any) -> SeparableHeatmaps:
        if profiles.dim() != 4 or profiles.dtype != torch.float32 or not (
            0 <= height <= profiles.shape[-1]
        ):
            raise ValueError(f"profiles: expected (B, N, K, H + W) float32 with H = {height}, "
                             f"got {tuple(profiles.shape)} {profiles.dtype}")
        heatmaps = cls.__new__(cls)
        heatmaps.profiles, heatmaps.height = profiles, height
        heatmaps.dtype = check_dtype(dtype)
        return heatmaps

    def __repr__(self) -> str:
        return (f"SeparableHeatmaps(shape={tuple(self.shape)}, instances={self.instances}, "
                f"dtype={self.dtype}, device={self.device}, nbytes={self.nbytes})")

    def __reduce__(self):
        # Only the profiles travel; the dtype goes as its name.
        return (_rebuild, (self.profiles, self.height, str(self.dtype).removeprefix("torch.")))

    @property
    def rows(self) -> torch.Tensor:
        """``(B, N, K, H)`` float32, a view."""
        return self.profiles[..., : self.height]

    @property
    def cols(self) -> torch.Tensor:
        """``(B, N, K, W)`` float32, a view."""
        return self.profiles[..., self.height :]

    @property
    def shape(self) -> torch.Size:
        """``(B, K, H, W)`` of the dense heatmaps."""
        batch, _, keypoints, length = self.profiles.shape
        return torch.Size((batch, keypoints, self.height, length - self.height))

    @property
    def instances(self) -> int:
        """N, the instances per sample that merge into each channel."""
        return self.profiles.shape[1]

    @property
    def device(self) -> torch.device:
        """Where the profiles are."""
        return self.profiles.device

    @property
    def nbytes(self) -> int:
        """Bytes held: the profiles, never a dense tensor."""
        return self.profiles.nbytes

    def __len__(self) -> int:
        return self.profiles.shape[0]

    def pin_memory(self, device: Any = None) -> SeparableHeatmaps:
        """The profiles in page-locked host memory (what ``DataLoader(pin_memory=True)`` calls)."""
        del device  # torch's own Tensor.pin_memory() no longer takes one; kept for old callers
        return SeparableHeatmaps._packed(self.profiles.pin_memory(), self.height, self.dtype)

    def is_pinned(self) -> bool:
        return self.profiles.is_pinned()

    def profiles_to(self, device: Any, non_blocking: bool = False) -> SeparableHeatmaps:
        """The profiles moved to ``device``, still separable."""
        moved = self.profiles.to(device, non_blocking=non_blocking)
        return SeparableHeatmaps._packed(moved, self.height, self.dtype)

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The dense ``(B, K, H, W)`` tensor on a device: the profiles are copied, then expanded.

        Takes ``Tensor.to``'s forms: ``to(device)``, ``to(dtype)``, ``to(device, dtype)``,
        ``to(tensor)`` and the keywords ``device``, ``dtype``, ``non_blocking``, ``copy`` (the
        result is always a fresh tensor). ``non_blocking=True`` from pinned profiles overlaps the
        copy; the multiply is queued after it on the device's stream.
        """
        device, dtype, non_blocking = _parse_to(args, kwargs)
        moved = self.profiles.to(self.device if device is None else device,
                                 non_blocking=non_blocking)
        return expand_profiles(moved[..., : self.height], moved[..., self.height :],
                               dtype=self.dtype if dtype is None else dtype)

    def cuda(self, device: Any = None, non_blocking: bool = False) -> torch.Tensor:
        """``to("cuda")``: the dense tensor on a GPU."""
        return self.to(torch.device("cuda") if device is None else _as_cuda(device),
                       non_blocking=non_blocking)

    def dense(self, dtype: Any = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """The dense ``(B, K, H, W)`` tensor where the profiles are (:func:`expand_profiles`)."""
        return expand_profiles(self.rows, self.cols, dtype=self.dtype if dtype is None else dtype,
                               out=out)


def _rebuild(profiles: torch.Tensor, height: int, dtype: str) -> SeparableHeatmaps:
    return SeparableHeatmaps._packed(profiles, height, dtype)


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
