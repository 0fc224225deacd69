"""The separable core of the renderer: two 1D profiles and a weight per keypoint and instance.

Every method renders a Gaussian that factorises, ``g(x, y) = gx(x) * gy(y)``, so a keypoint's
whole heatmap is fixed by its row profile ``gy`` (length H) and column profile ``gx`` (length W).
This module computes those profiles for a whole batch at once, one axis at a time; ``expand.py``
multiplies them out, and the service ships them as they are, or as a table of the distinct
profiles and an index per keypoint (:func:`profile_table_from_args`).

Per method, with ``u`` the keypoint in heatmap pixels (see ``coordinates.py``):

- ``seed``: centre ``mu = int(u)``; windowed kernel sampled at integers around ``mu``.
- ``msra``: centre ``mu = int(u + 0.5)``; same window and kernel (mmpose ``MSRAHeatmap``).
- ``udp``: window placed at ``mu = int(u + 0.5)``, Gaussian evaluated at the float centre ``u``
  (mmpose ``UDPHeatmap``).
- ``dark``: Gaussian at the float centre over the whole heatmap, no window (mmpose's unbiased
  encoding).

``int`` truncates toward zero, as Python's ``int()`` and numpy's ``astype(int64)`` do.

Sigma is one value, one per keypoint, or one per sample, instance and keypoint
(``RenderArgs.sample_sigmas``). Per-element sigmas with few distinct values (real data: a handful
of box sizes or classes) still render from cached tables, one block per distinct value; many
distinct values are evaluated directly at the request's own centres, with the same formula, window
by window (``direct.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .coordinates import heatmap_coordinates
from .direct import dark_axes, udp_from_distances, windowed_axes
from .kernels import PLAN_MAX_ELEMENTS, plan_elements, window_plan
from .validate import RenderArgs, check_render_args

__all__ = [
    "compact_table",
    "ProfileTable",
    "Profiles",
    "TABLE_MAX_SIGMAS",
    "profile_table_from_args",
    "profiles_from_args",
    "render_profiles",
]

# Per-element sigmas render from a table while they have at most this many distinct values.
TABLE_MAX_SIGMAS = 16


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


class ProfileTable(NamedTuple):
    """The profiles as tables of distinct rows and an index per keypoint and instance:
    ``rows[b, n, k] = row_table[row_index[b, n, k]]``, ``cols`` likewise.

    The windowed methods draw every profile from a kernel table, so a batch holds a few dozen
    distinct profiles per axis whatever its size; ``udp`` and ``dark`` (whose profiles depend on
    the sub-pixel centre) give one row per keypoint.

    Attributes:
        row_table: ``(R, H)`` float32; row_index: ``(B, N, K)`` int64.
        col_table: ``(C, W)`` float32; col_index: ``(B, N, K)`` int64.
        weights: as :class:`Profiles`'.
    """

    row_table: torch.Tensor
    row_index: torch.Tensor
    col_table: torch.Tensor
    col_index: torch.Tensor
    weights: torch.Tensor


class _Axis(NamedTuple):
    """One axis of a batch, rendered: rows of ``table`` (a plan's, or the profiles themselves)
    at ``index`` ``(B, N, K)``."""

    table: torch.Tensor
    index: torch.Tensor
    from_plan: bool  # table is a shared kernel table (few distinct rows), not one per keypoint

    def profiles(self) -> torch.Tensor:
        if not self.from_plan:  # one row per profile, in order: the table is the profiles
            return self.table.view(*self.index.shape, self.table.shape[1])
        return self.table.index_select(0, self.index.reshape(-1)).view(
            *self.index.shape, self.table.shape[1]
        )


def _table_sigmas(args: RenderArgs) -> tuple[tuple[float, ...], torch.Tensor | None] | None:
    """The sigmas a table is built for and each element's slot in them, or None for direct.

    Shared sigmas: ``(args.sigmas, None)`` (slots are the keypoint index, built into the plan).
    Per element: the sorted distinct values and the ``(B, N, K)`` index of each, if few.
    """
    if args.sample_sigmas is None:
        return args.sigmas, None
    distinct, inverse = torch.unique(args.sample_sigmas, return_inverse=True)
    if distinct.numel() > TABLE_MAX_SIGMAS:
        return None
    return tuple(distinct.tolist()), inverse


def _windowed(args: RenderArgs, coords: torch.Tensor, draw_ok: torch.Tensor | None):
    """Both axes of ``seed``, ``msra`` and ``udp``, and whether each keypoint is outside."""
    kind = "offset" if args.method == "udp" else "window"
    centre = coords if args.method == "seed" else coords + 0.5
    tabled = _table_sigmas(args)
    if tabled is not None and plan_elements(tabled[0], args.size) <= PLAN_MAX_ELEMENTS:
        sigmas, slots = tabled
        plan = window_plan(sigmas, kind, args.size, coords.device, coords.dtype)
        offsets = plan.offsets if slots is None else plan.offsets[slots.to(coords.device)]
        # Both axes at once: .long() truncates toward zero, like int(); clamping first keeps far
        # centres in range. Rows of the stacked tables (y's after x's).
        rows = torch.clamp(centre, plan.lowest, plan.highest).long() + offsets
        outside = torch.take(plan.outside, rows).any(dim=-1)
        hidden = outside if draw_ok is None else outside | ~draw_ok
        rows[hidden] = plan.empty  # not drawn: both axes' empty rows
        (x_axis, y_axis), base = plan.axes, plan.y_base
        axes = [_Axis(x_axis.table, rows[..., 0], True),
                _Axis(y_axis.table, rows[..., 1] - base, True)]
        if kind == "offset":  # udp: the plan holds distances; a row per sub-pixel centre
            axes = [_own_rows(udp_from_distances(args, coords, centre, axis, plane.table,
                                                 plane.index), coords.shape[:-1])
                    for axis, plane in enumerate(axes)]
        return axes, outside
    # A table too large to keep, or for too many distinct sigmas: each keypoint's own window.
    tables, outside = windowed_axes(args, kind, coords, centre, draw_ok)
    return [_own_rows(table, centre.shape[:-1]) for table in tables], outside


def _own_rows(table: torch.Tensor, shape: torch.Size) -> _Axis:
    """An axis whose table holds one row per profile, in order."""
    return _Axis(table, torch.arange(table.shape[0], device=table.device).view(shape), False)


def _dark(args: RenderArgs, coords: torch.Tensor, draw_ok: torch.Tensor | None):
    tables, outside = dark_axes(args, coords, draw_ok)
    return [_own_rows(table, coords.shape[:-1]) for table in tables], outside


def _render_axes(args: RenderArgs) -> tuple[list[_Axis], torch.Tensor]:
    """Both axes (x then y) of a checked batch, and its weights."""
    coords = heatmap_coordinates(args)
    draw_ok = None if args.visibility is None else args.visibility >= 0.5
    method = _dark if args.method == "dark" else _windowed
    axes, outside = method(args, coords, draw_ok)
    if args.visibility is None:
        weights = (~outside).to(torch.float32)
    else:
        weights = torch.where(draw_ok & outside, 0.0, args.visibility)
    if not args.has_instances:
        weights = weights.squeeze(1)
    return axes, weights


def profiles_from_args(args: RenderArgs) -> Profiles:
    """:func:`render_profiles` on already checked arguments."""
    (cols, rows), weights = _render_axes(args)
    return Profiles(rows=rows.profiles(), cols=cols.profiles(), weights=weights)


def compact_table(table: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``table`` that ``index`` uses, in table order, and ``index`` into those.

    A mark per table row and a running count, no sort: a kernel table has a few dozen rows per
    sigma, so this costs two passes over the index.
    """
    flat = index.reshape(-1)
    used = torch.zeros(table.shape[0], dtype=torch.bool, device=table.device)
    used.index_fill_(0, flat, True)
    position = torch.cumsum(used, 0) - 1
    return table[used], position.index_select(0, flat).view(index.shape)


def profile_table_from_args(args: RenderArgs, compact: bool = True) -> ProfileTable:
    """The batch's profiles as a :class:`ProfileTable`, on already checked arguments.

    Args:
        compact: cut shared kernel tables down to the rows the batch uses; without it they are
            the whole tables, for a caller that cuts them per part of the batch
            (:func:`compact_table`).
    """
    (cols, rows), weights = _render_axes(args)
    if compact:
        row_table, row_index = compact_table(rows.table, rows.index) if rows.from_plan \
            else (rows.table, rows.index)
        col_table, col_index = compact_table(cols.table, cols.index) if cols.from_plan \
            else (cols.table, cols.index)
    else:
        row_table, row_index, col_table, col_index = rows.table, rows.index, cols.table, cols.index
    return ProfileTable(row_table, row_index, col_table, col_index, weights)


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
        size: ``(H, W)`` of the heatmap (mmpose configs write ``(W, H)``).
        sigma: in heatmap pixels; broadcasts against ``keypoints.shape[:-1]``: a scalar, ``(K,)``
            per keypoint, ``(B, N, 1)`` per instance, ``(B, 1, 1)`` per sample, ``(B, N, K)``
            (for ``(B, K, 2)`` keypoints: ``(K,)``, ``(B, 1)``, ``(B, K)``).
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

