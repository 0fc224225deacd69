"""What travels between the service, the batcher and the device: a checked render job, and its
rendered host arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heatmap_client.wire import Codec, ReplyLayout, WireDType
from heatmap_render import RenderArgs, SimccArgs

from .buffers import Lease

__all__ = ["RenderJob", "Rendered"]


@dataclass(frozen=True)
class RenderJob:
    """One request's checked render arguments and its reply's layout.

    ``args`` carries the render dtype (``wire.render_as``: fixed point renders in float32 and is
    quantised to the wire's storage); the layout's family says what is rendered (dense heatmaps,
    their profiles, or SimCC labels) and what the reply holds.
    """

    args: RenderArgs | SimccArgs
    layout: ReplyLayout
    request_id: int
    arrived: float

    @property
    def wire(self) -> WireDType:
        return self.layout.wire

    @property
    def codec(self) -> Codec:
        return self.layout.codec

    @property
    def work(self) -> int:
        """What it costs the device, in element passes (see ``ReplyLayout.work``)."""
        return self.layout.work

    @property
    def key(self) -> tuple:
        """Jobs with equal keys can be rendered as one batch (concatenated along B): the
        renderer's coalescing key (per-element sigmas concatenate along B with the keypoints),
        the layout's family and the wire dtype."""
        return (type(self.layout), self.args.coalescing_key, self.wire.name)

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
    queue_us: int
    render_us: int
    coalesced_requests: int
    lease: Lease | None = None

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
