"""What travels between the service, the batcher and the device: a checked render job, and its
rendered host arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heatmap_client.wire import Codec, WireDType

from .buffers import Lease
from .render import RenderArgs, SimccArgs

__all__ = ["RenderJob", "Rendered"]


@dataclass(frozen=True)
class RenderJob:
    """One request's checked render arguments and everything its reply needs.

    ``args`` carries the render dtype (``wire.render_as``); ``wire`` is the storage on the wire
    (fixed point renders in float32 and is quantised); a ``codec.separable`` job renders profiles
    only; a job of :class:`SimccArgs` renders SimCC labels (float32, converted to ``wire``).
    """

    args: RenderArgs | SimccArgs
    wire: WireDType
    codec: Codec
    request_id: int
    arrived: float

    @property
    def separable(self) -> bool:
        return self.codec.separable

    @property
    def simcc(self) -> bool:
        return isinstance(self.args, SimccArgs)

    @property
    def key(self) -> tuple:
        """Jobs with equal keys can be rendered as one batch (concatenated along B): the
        renderer's coalescing key (per-element sigmas concatenate along B with the keypoints)
        and the wire's."""
        return (type(self.args).__name__, self.args.coalescing_key, self.wire.name, self.separable)

    @property
    def keypoint_count(self) -> int:
        return self.args.keypoints.shape[:3].numel()


@dataclass
class Rendered:
    """Host arrays for a codec (the dense tensor, or rows then cols), weights and timings.

    Call :meth:`release` once the arrays are encoded: they may be views of a pooled buffer.
    """

    arrays: list[np.ndarray]
    weights: np.ndarray
    instances: int
    queue_us: int
    render_us: int
    coalesced_requests: int
    lease: Lease | None = None

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
