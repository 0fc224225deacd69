"""How checked arguments join and split along B, for the batcher's coalescing.

A checked-arguments type (``RenderArgs``, ``SimccArgs``) names its per-sample fields, tensors
whose first axis is B (or None), and has a hashable ``coalescing_key`` for everything else; jobs
with equal keys concatenate along B, and a render's result slices back along B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar, TypeVar

import torch

from .errors import RenderArgumentError

__all__ = [
    "PerSampleFields",
    "concatenate_render_args",
]

Args = TypeVar("Args", bound="PerSampleFields")


class PerSampleFields:
    """Mixin for frozen dataclasses with a ``keypoints`` ``(B, ...)`` tensor.

    Subclasses set ``PER_SAMPLE_FIELDS`` (``"keypoints"`` first) and ``coalescing_key``. A
    ``visibility`` of None means all ones; any other per-sample field that is None in one part is
    None in every part with the same key.
    """

    PER_SAMPLE_FIELDS: ClassVar[tuple[str, ...]] = ("keypoints",)

    @property
    def batch(self) -> int:
        return self.keypoints.shape[0]

    def take(self: Args, rows: slice) -> Args:
        """The samples ``rows`` (a slice along B) of every per-sample field."""
        return replace(self, **{
            name: None if getattr(self, name) is None else getattr(self, name)[rows]
            for name in self.PER_SAMPLE_FIELDS
        })

    def to(self: Args, device: torch.device | str) -> Args:
        """Every per-sample field moved to ``device`` (``self`` when already there)."""
        device = torch.device(device)
        if self.keypoints.device == device:
            return self
        return replace(self, **{
            name: None if getattr(self, name) is None else getattr(self, name).to(device)
            for name in self.PER_SAMPLE_FIELDS
        })


def concatenate_render_args(parts: Sequence[Args]) -> Args:
    """One checked-arguments value whose samples are ``parts``' samples in order.

    Works for every type with :class:`PerSampleFields` (``RenderArgs``, ``SimccArgs``).

    Raises:
        RenderArgumentError: (``"args"``) when there are no parts or their coalescing keys or
            types differ.
    """
    if not parts:
        raise RenderArgumentError("args", "nothing to concatenate")
    first = parts[0]
    if any(type(part) is not type(first) or part.coalescing_key != first.coalescing_key
           for part in parts[1:]):
        raise RenderArgumentError("args", "parts with different coalescing keys do not concatenate")
    if len(parts) == 1:
        return first
    joined = {}
    for name in first.PER_SAMPLE_FIELDS:
        values = [getattr(part, name) for part in parts]
        if all(value is None for value in values):
            joined[name] = None
        elif name == "visibility":
            joined[name] = torch.cat([
                value if value is not None
                else torch.ones(part.keypoints.shape[:-1], dtype=torch.float32,
                                device=part.keypoints.device)
                for part, value in zip(parts, values)
            ])
        elif any(value is None for value in values):
            raise RenderArgumentError("args", f"{name} is given in some parts and not in others")
        else:
            joined[name] = torch.cat(values)
    return replace(first, **joined)
