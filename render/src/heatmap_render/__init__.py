"""heatmap-render: exact, vectorised Gaussian targets for pose and landmark training, pure torch.

Sizes are always ``(H, W)`` (mmpose configs write ``(W, H)``); keypoints are ``(x, y)``.

- :func:`render_heatmaps`: a whole ``(B, K, H, W)`` stack in one call (methods ``seed``, ``msra``,
  ``udp``, ``dark``).
- :func:`render_profiles`: the two 1D profiles per keypoint that the dense stack is the outer
  product of, and :func:`expand_profiles`, which multiplies them out where they are consumed.
- :func:`render_simcc`: mmpose's SimCC labels (RTMPose).
- :func:`gaussian_radius` and :func:`sigma_from_box`: box-sized sigmas (CenterNet, mmdet) for
  per-instance rendering.

Every bad argument raises a :class:`RenderArgumentError` (a ``ValueError``) whose ``.argument``
names it. Nothing here imports gRPC or protobuf; the heatmap service renders with this package.
"""

from .batch import concatenate_render_args
from .coordinates import heatmap_coordinates
from .dense import Heatmaps, heatmaps_from_args, render_heatmaps
from .errors import RenderArgumentError, RenderArgumentTypeError
from .expand import expand_profiles
from .inputs import DTYPES
from .kernels import clear_table_cache, table_cache_info
from .profiles import (
    Profiles,
    ProfileTable,
    profile_table_from_args,
    profiles_from_args,
    render_profiles,
)
from .radius import RADIUS_VARIANTS, SIGMA_RULES, gaussian_radius, sigma_from_box
from .sigma import SIGMA_MIN
from .simcc import (
    SMOOTHINGS,
    SimccArgs,
    SimccLabels,
    check_simcc_args,
    render_simcc,
    simcc_from_args,
)
from .validate import COORDS, METHODS, RenderArgs, check_render_args

__all__ = [
    "COORDS",
    "DTYPES",
    "Heatmaps",
    "METHODS",
    "ProfileTable",
    "Profiles",
    "RADIUS_VARIANTS",
    "RenderArgs",
    "RenderArgumentError",
    "RenderArgumentTypeError",
    "SIGMA_MIN",
    "SIGMA_RULES",
    "SMOOTHINGS",
    "SimccArgs",
    "SimccLabels",
    "__version__",
    "check_render_args",
    "check_simcc_args",
    "clear_table_cache",
    "concatenate_render_args",
    "expand_profiles",
    "gaussian_radius",
    "heatmap_coordinates",
    "heatmaps_from_args",
    "profile_table_from_args",
    "profiles_from_args",
    "render_heatmaps",
    "render_profiles",
    "render_simcc",
    "sigma_from_box",
    "simcc_from_args",
    "table_cache_info",
]

__version__ = "0.2.0"
