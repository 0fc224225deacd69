"""Lightweight client for the heatmap rendering service.

``HeatmapClient(target).render(keypoints, size=(H, W), sigma=2.0)`` returns a :class:`RenderResult`
with numpy ``heatmaps`` ``(B, K, H, W)`` and ``weights``; ``render_profiles`` returns the two 1D
profiles per keypoint that those heatmaps are the outer product of. Importing this package never
imports torch: loader processes that only need numpy stay light (``heatmap_client.torch`` holds
the DataLoader helpers). :mod:`heatmap_client.wire` is the wire format, for servers and tools.
"""

from ._aio import AsyncHeatmapClient
from ._client import HeatmapClient
from ._errors import HeatmapError
from .options import RenderOptions, SimccOptions
from .results import ProfilesResult, RenderResult, SimccResult, Timings
from .wire.vocabulary import ArgumentError

__all__ = [
    "ArgumentError",
    "AsyncHeatmapClient",
    "HeatmapClient",
    "HeatmapError",
    "ProfilesResult",
    "RenderOptions",
    "RenderResult",
    "SimccOptions",
    "SimccResult",
    "Timings",
    "__version__",
]

__version__ = "0.1.0"
