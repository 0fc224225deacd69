"""Lightweight client for the heatmap rendering service.

``HeatmapClient(target).render(keypoints, size=(H, W), sigma=2.0)`` returns a :class:`RenderResult`
with numpy ``heatmaps`` ``(B, K, H, W)`` and ``weights``; ``render_profiles`` returns the two 1D
profiles per keypoint that those heatmaps are the outer product of. Importing this package never
imports torch: loader processes that only need numpy stay light (``heatmap_client.torch`` holds
the DataLoader helpers). :mod:`heatmap_client.wire` is the wire format, for servers and tools.

The names below load on first use, so that ``import heatmap_client.wire`` (what the server
imports) loads the wire alone, not the clients above it.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:  # what the lazy names are, for type checkers and readers
    from ._aio import AsyncHeatmapClient
    from ._client import HeatmapClient
    from ._errors import HeatmapError
    from .off_map import OffMapWarning
    from .options import RenderOptions, SimccOptions
    from .results import ProfilesResult, RenderResult, SimccResult, Timings
    from .wire.vocabulary import ArgumentError

__all__ = [
    "ArgumentError",
    "AsyncHeatmapClient",
    "HeatmapClient",
    "HeatmapError",
    "OffMapWarning",
    "ProfilesResult",
    "RenderOptions",
    "RenderResult",
    "SimccOptions",
    "SimccResult",
    "Timings",
    "__version__",
]

__version__ = "0.2.0"

# Public name -> the module that defines it.
_HOMES = {
    "ArgumentError": ".wire.vocabulary",
    "AsyncHeatmapClient": "._aio",
    "HeatmapClient": "._client",
    "HeatmapError": "._errors",
    "OffMapWarning": ".off_map",
    "ProfilesResult": ".results",
    "RenderOptions": ".options",
    "RenderResult": ".results",
    "SimccOptions": ".options",
    "SimccResult": ".results",
    "Timings": ".results",
}


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(home, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
