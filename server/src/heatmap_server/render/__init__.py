"""Pure-torch Gaussian targets: no gRPC, no protobuf. Sizes are always ``(H, W)``.

``render_heatmaps`` renders a whole ``(B, K, H, W)`` stack in one call; ``render_profiles`` returns
the two 1D profiles per keypoint that the dense stack is the outer product of; ``render_simcc``
returns mmpose's SimCC labels (RTMPose). ``gaussian_radius`` and ``sigma_from_box`` give
box-sized sigmas (CenterNet, mmdet) for per-instance rendering. Every bad argument raises a
:class:`RenderArgumentError` whose ``.argument`` names it.
"""

from .batch import concatenate_render_args
from .dense import RenderResult, heatmaps_from_args, render_heatmaps
from .errors import RenderArgumentError, RenderArgumentTypeError
from .kernels import clear_table_cache, table_cache_info
from .profiles import Profiles, heatmap_coordinates, profiles_from_args, render_profiles
from .radius import RADIUS_VARIANTS, gaussian_radius, sigma_from_box
from .sigma import SIGMA_MIN
from .simcc import (
    SMOOTHINGS,
    SimccArgs,
    SimccLabels,
    check_simcc_args,
    render_simcc,
    simcc_from_args,
)
from .validate import COORDS, DTYPES, METHODS, RenderArgs, check_render_args

__all__ = [
    "COORDS",
    "DTYPES",
    "METHODS",
    "Profiles",
    "RADIUS_VARIANTS",
    "RenderArgs",
    "RenderArgumentError",
    "RenderArgumentTypeError",
    "RenderResult",
    "SIGMA_MIN",
    "SMOOTHINGS",
    "SimccArgs",
    "SimccLabels",
    "check_render_args",
    "check_simcc_args",
    "clear_table_cache",
    "concatenate_render_args",
    "gaussian_radius",
    "heatmap_coordinates",
    "heatmaps_from_args",
    "profiles_from_args",
    "render_heatmaps",
    "render_profiles",
    "render_simcc",
    "sigma_from_box",
    "simcc_from_args",
    "table_cache_info",
]
