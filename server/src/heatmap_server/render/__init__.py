"""Pure-torch Gaussian heatmap rendering: no gRPC, no protobuf.

``render_heatmaps`` renders a whole ``(B, K, H, W)`` stack in one call; ``render_profiles`` returns
the two 1D profiles per keypoint that the dense stack is the outer product of.
"""

from .dense import RenderResult, heatmaps_from_args, render_heatmaps
from .kernels import clear_table_cache, table_cache_info
from .profiles import Profiles, heatmap_coordinates, profiles_from_args, render_profiles
from .validate import COORDS, DTYPES, METHODS, RenderArgs, check_render_args

__all__ = [
    "COORDS",
    "DTYPES",
    "METHODS",
    "Profiles",
    "RenderArgs",
    "RenderResult",
    "check_render_args",
    "clear_table_cache",
    "heatmap_coordinates",
    "heatmaps_from_args",
    "profiles_from_args",
    "render_heatmaps",
    "render_profiles",
    "table_cache_info",
]
