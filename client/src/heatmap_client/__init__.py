"""Lightweight client for the heatmap rendering service.

``HeatmapClient(target).render(keypoints, size=(H, W), sigma=2.0)`` returns a :class:`RenderResult`
with numpy ``heatmaps`` ``(B, K, H, W)`` and ``weights``. Importing this package never imports
torch: loader processes that only need numpy stay light (``heatmap_client.torch`` holds the
DataLoader helpers).
"""

from ._aio import AsyncHeatmapClient
from ._client import HeatmapClient
from ._errors import HeatmapError
from ._messages import RenderResult, Timings

__all__ = [
    "AsyncHeatmapClient",
    "HeatmapClient",
    "HeatmapError",
    "RenderResult",
    "Timings",
    "__version__",
]

__version__ = "0.1.0"
