"""The separable core of the renderer: two 1D profiles and a weight per keypoint and instance.

Every method renders a Gaussian that factorises, ``g(x, y) = gx(x) * gy(y)``, so a keypoint's
whole heatmap is fixed by its row profile ``gy`` (length H) and column profile ``gx`` (length W).
This module computes those profiles for a whole batch at once; ``dense.py`` multiplies them out and
the ``separable`` wire codec ships them as they are.

Per method, with ``u`` the keypoint in heatmap pixels (see :func:`heatmap_coordinates`):

- ``seed``: centre ``mu = int(u)``; windowed kernel sampled at integers around ``mu``.
- ``msra``: centre ``mu = int(u + 0.5)``; same window and kernel (mmpose ``MSRAHeatmap``).
- ``udp``: window placed at ``mu = int(u + 0.5)``, Gaussian evaluated at the float centre ``u``
  (mmpose ``UDPHeatmap``).
- ``dark``: Gaussian at the float centre over the whole heatmap, no window (mmpose's unbiased
  encoding).

``int`` truncates toward zero, as Python's ``int()`` and numpy's ``astype(int64)`` do. Coordinate
arithmetic is done in the keypoints' precision (float32 on the wire), like mmpose on float32
keypoints, so that truncation edges fall exactly where theirs do.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .kernels import AxisTable, axis_table
from .validate import RenderArgs, check_render_args

__all__ = [
    "Profiles",
    "heatmap_coordinates",
    "profiles_from_args",
    "render_profiles",
]


class Profiles(NamedTuple):
    """Per keypoint and instance, the two 1D profiles whose outer product is its heatmap.

    Attributes:
        rows: ``(B, N, K, H)`` float32, ``gy``; zero for keypoints that are not drawn.
        cols: ``(B, N, K, W)`` float32, ``gx``; zero for keypoints that are not drawn.
        weights: float32, ``(B, K)`` or ``(B, N, K)`` as the keypoints were given: the visibility,
            or 1 where none was given, and 0 for a drawn keypoint whose window misses the heatmap.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    weights: torch.Tensor


def heatmap_coordinates(args: RenderArgs) -> torch.Tensor:
    """Keypoints ``(B, N, K, 2)`` converted to heatmap pixels (pixel centres at integers)."""
    points = args.keypoints
    height, width = args.size
    if args.coords == "heatmap":
        return points
    if args.coords == "normalized":
        # The seed's convention: x in [-1, 1], -1 the left edge, 0.5 * (x + 1) * W.
        extent = torch.tensor([width, height], dtype=points.dtype, device=points.device)
        return (points + 1) * 0.5 * extent
    if args.input_size is None:
        raise ValueError("input_size: required when coords='pixel'")
    in_height, in_width = args.input_size
    if args.method == "udp":
        # UDP maps corner pixel to corner pixel: (input - 1) / (heatmap - 1).
        ratio = [(in_width - 1) / (width - 1), (in_height - 1) / (height - 1)]
    else:
        ratio = [in_width / width, in_height / height]
    # mmpose computes the ratio in float64 and divides float32 keypoints by its float32 rounding.
    scale = torch.tensor(ratio, dtype=torch.float64).to(points.dtype).to(points.device)
    return points / scale


def _sigma_slots(args: RenderArgs) -> tuple[tuple[float, ...], list[int]]:
    distinct = tuple(dict.fromkeys(args.sigmas))
    if len(distinct) <= 1:
        # K == 0 with sigma == []: no keypoint reads the table, any one sigma builds it.
        return distinct or (1.0,), [0]
    position = {sigma: slot for slot, sigma in enumerate(distinct)}
    return distinct, [position[sigma] for sigma in args.sigmas]


def _table_rows(
    table: AxisTable, centre: torch.Tensor, slots: list[int], device: torch.device
) -> torch.Tensor:
    """Row index ``(B, N, K)`` of each keypoint's profile in ``table``."""
    lowest = table.lowest_centre
    highest = lowest + table.rows_per_sigma - 1
    row = (centre.clamp(lowest, highest) - lowest).long()
    if len(slots) > 1:
        row = row + torch.tensor(slots, device=device) * table.rows_per_sigma
    return row


def _windowed(args: RenderArgs, coords: torch.Tensor, draw_ok: torch.Tensor):
    """Profiles of ``seed``, ``msra`` and ``udp``: table gathers keyed by the integer centre."""
    device = coords.device
    height, width = args.size
    distinct, slots = _sigma_slots(args)
    centre = torch.trunc(coords) if args.method == "seed" else torch.trunc(coords + 0.5)
    kind = "offset" if args.method == "udp" else "window"
    tables = [axis_table(distinct, kind, length, device) for length in (width, height)]
    rows = [_table_rows(t, centre[..., axis], slots, device) for axis, t in enumerate(tables)]
    outside = tables[0].outside[rows[0]] | tables[1].outside[rows[1]]
    drawn = draw_ok & ~outside
    profiles = []
    for axis, table in enumerate(tables):
        row = torch.where(drawn, rows[axis], table.empty_row)
        length = table.rows.shape[1]  # not -1: view() cannot infer it when B, N or K is 0
        gathered = table.rows.index_select(0, row.reshape(-1)).view(*row.shape, length)
        if kind == "offset":
            # UDP: exp(-(d - f)^2 / (2 sigma^2)) with d the distance from the kernel centre and
            # f = u - mu the sub-pixel offset. +inf outside the window gives exactly 0.
            fraction = (coords[..., axis] - centre[..., axis]).to(torch.float64)
            two_var = _two_variance(args, device)
            gathered = torch.exp(-((gathered - fraction[..., None]) ** 2) / two_var)
            gathered = gathered.to(torch.float32)
        profiles.append(gathered)
    return profiles, outside


def _two_variance(args: RenderArgs, device: torch.device) -> torch.Tensor:
    """``2 sigma^2`` in float64, broadcastable against ``(B, N, K, L)``."""
    sigma = torch.tensor(args.sigmas, dtype=torch.float64, device=device)
    return (2 * sigma**2)[:, None]


def _dark(args: RenderArgs, coords: torch.Tensor, draw_ok: torch.Tensor):
    """Profiles of ``dark``: the Gaussian at the float centre over the whole axis.

    There is no window to tabulate (the centre is continuous), but the work is O(K * (H + W)),
    negligible beside the O(K * H * W) product.
    """
    device = coords.device
    height, width = args.size
    radii = [3 * sigma for sigma in args.sigmas]  # in float64, then rounded, as mmpose's radius
    radius = torch.tensor(radii, dtype=torch.float64).to(coords.dtype).to(device)[:, None]
    # mmpose tests the 3-sigma box in the keypoints' precision: left >= W, right < 0.
    lengths = torch.tensor([width, height], dtype=coords.dtype, device=device)
    left = coords - radius
    right = coords + radius + 1
    outside = ((left >= lengths) | (right < 0)).any(dim=-1)
    drawn = draw_ok & ~outside
    two_var = _two_variance(args, device)
    profiles = []
    for axis, length in enumerate((width, height)):
        pixels = torch.arange(length, dtype=torch.float64, device=device)
        centre = coords[..., axis].to(torch.float64)[..., None]
        profile = torch.exp(-((pixels - centre) ** 2) / two_var).to(torch.float32)
        profiles.append(profile * drawn[..., None])
    return profiles, outside


def profiles_from_args(args: RenderArgs) -> Profiles:
    """:func:`render_profiles` on already checked arguments."""
    coords = heatmap_coordinates(args)
    draw_ok = args.visibility >= 0.5
    if args.method == "dark":
        (cols, rows), outside = _dark(args, coords, draw_ok)
    else:
        (cols, rows), outside = _windowed(args, coords, draw_ok)
    weights = torch.where(draw_ok & outside, 0.0, args.visibility)
    if not args.has_instances:
        weights = weights.squeeze(1)
    return Profiles(rows=rows, cols=cols, weights=weights)


def render_profiles(
    keypoints: Any,
    size: tuple[int, int],
    sigma: Any,
    *,
    method: str = "msra",
    coords: str = "heatmap",
    input_size: tuple[int, int] | None = None,
    visibility: Any = None,
) -> Profiles:
    """Renders the 1D profiles of every keypoint without their dense product.

    ``heatmap[b, k] = max_n rows[b, n, k, :, None] * cols[b, n, k, None, :]`` is exactly what
    :func:`render_heatmaps` returns in float32.

    Args:
        keypoints: ``(B, K, 2)`` or ``(B, N, K, 2)`` (x, y), torch tensor or numpy array.
        size: ``(H, W)`` of the heatmap.
        sigma: a scalar, or one value per keypoint ``(K,)``.
        method: ``seed``, ``msra``, ``udp`` or ``dark``.
        coords: ``heatmap``, ``pixel`` (needs ``input_size``) or ``normalized``.
        input_size: ``(H_in, W_in)`` of the input image, for ``coords="pixel"``.
        visibility: ``(B, K)`` or ``(B, N, K)``; a keypoint is drawn when it is at least 0.5.

    Returns:
        :class:`Profiles` on the keypoints' device.
    """
    args = check_render_args(
        keypoints,
        size,
        sigma,
        method=method,
        coords=coords,
        input_size=input_size,
        visibility=visibility,
        dtype=torch.float32,
    )
    return profiles_from_args(args)
