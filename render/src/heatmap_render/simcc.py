"""SimCC labels (mmpose ``SimCCLabel``, RTMPose): two 1D labels per keypoint, no heatmap.

For a split ratio ``r`` and an input of ``(H_in, W_in)`` pixels, the x label has
``Wx = round(W_in r)`` bins and the y label ``Hy = round(H_in r)`` (half to even, as
``np.around``). Per keypoint, with ``mu = np.around(x r)`` (half to even) per axis:

- ``smoothing="gaussian"``: ``exp(-(i - mu)^2 / (2 sigma^2))`` over every bin ``i`` of the axis,
  divided by ``sigma sqrt(2 pi)`` when ``normalize``; sigma is ``(sigma_x, sigma_y)`` in bins,
  mmpose's order. Weight 0 when, on either axis, ``mu - 3 sigma >= L`` or ``mu + 3 sigma + 1 < 0``
  (mmpose's 3-sigma rule).
- ``smoothing="standard"``: one-hot ``1 - w`` at ``mu`` and ``w / (L - 1)`` in every other bin,
  with ``w = label_smooth_weight``; weight 0 when ``mu`` lies outside ``[0, L)`` on either axis.

A keypoint whose visibility is below 0.5 is not drawn (all-zero labels) and keeps its visibility
as weight. The Gaussian labels depend only on the integer centre, so they come from a cached table
of every centre that can be drawn (one gather per call), built in float64 and rounded once.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from .batch import PerSampleFields
from .direct import BLOCK_ELEMENTS
from .errors import RenderArgumentError
from .inputs import as_tensor, check_hw, check_keypoints, check_visibility, drawn_finite
from .kernels import PLAN_MAX_ELEMENTS, cached_table
from .sigma import check_sigma_values

__all__ = [
    "SMOOTHINGS",
    "SimccArgs",
    "SimccLabels",
    "check_sigma_order",
    "check_simcc_args",
    "render_simcc",
    "simcc_from_args",
]

SMOOTHINGS = ("gaussian", "standard")


class SimccLabels(NamedTuple):
    """SimCC labels, float32, on the keypoints' device.

    Attributes:
        x_labels: ``(B, [N,] K, round(W_in * split_ratio))``.
        y_labels: ``(B, [N,] K, round(H_in * split_ratio))``.
        weights: ``(B, [N,] K)``: the visibility (1 where none was given), 0 for a drawn keypoint
            that falls off the labels (see the module's rules).
    """

    x_labels: torch.Tensor
    y_labels: torch.Tensor
    weights: torch.Tensor


@dataclass(frozen=True)
class SimccArgs(PerSampleFields):
    """Checked :func:`render_simcc` arguments.

    Per sample: ``keypoints`` ``(B, N, K, 2)`` float32/64 in input pixels and ``visibility``
    ``(B, N, K)`` float32 or None. Shared: ``input_size`` ``(H_in, W_in)``, ``sigma``
    ``(sigma_x, sigma_y)``, and the rest; ``label_size`` is ``(Hy, Wx)``.
    """

    keypoints: torch.Tensor
    visibility: torch.Tensor | None
    has_instances: bool
    input_size: tuple[int, int]
    sigma: tuple[float, float]
    split_ratio: float
    smoothing: str
    label_smooth_weight: float
    normalize: bool

    PER_SAMPLE_FIELDS: ClassVar[tuple[str, ...]] = ("keypoints", "visibility")

    @property
    def label_size(self) -> tuple[int, int]:
        """``(Hy, Wx)``: the y and x label lengths."""
        in_height, in_width = self.input_size
        return round(in_height * self.split_ratio), round(in_width * self.split_ratio)

    @property
    def coalescing_key(self) -> tuple:
        """Everything that is not per sample, hashable: jobs with equal keys concatenate along B."""
        _, instances, num_keypoints, _ = self.keypoints.shape
        return (
            "simcc", self.input_size, self.sigma, self.split_ratio, self.smoothing,
            self.label_smooth_weight, self.normalize, self.keypoints.dtype, self.has_instances,
            instances, num_keypoints,
        )


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RenderArgumentError(name, f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise RenderArgumentError(name, f"must be finite, got {value!r}")
    return number


def _check_simcc_sigma(sigma: Any, input_size: tuple[int, int],
                       label_size: tuple[int, int]) -> tuple[float, float]:
    if isinstance(sigma, bool):
        raise RenderArgumentError(
            "sigma", f"expected a number or (sigma_x, sigma_y), got {sigma!r}"
        )
    named = isinstance(sigma, Mapping)
    if named:
        if set(sigma) != {"x", "y"}:
            raise RenderArgumentError(
                "sigma", f"a mapping names both axes, {{'x': ..., 'y': ...}}, got {sorted(sigma)}"
            )
        sigma = (sigma["x"], sigma["y"])
    if isinstance(sigma, numbers.Real):
        values = torch.tensor([float(sigma)] * 2, dtype=torch.float64)
    else:
        values = as_tensor("sigma", sigma).detach().to("cpu", torch.float64)
        if tuple(values.shape) != (2,):
            raise RenderArgumentError(
                "sigma",
                f"expected a number or (sigma_x, sigma_y), got shape {tuple(values.shape)}",
            )
    check_sigma_values(values, float(max(label_size)), "the longer label's length")
    sigma_x, sigma_y = values.tolist()
    if not named:
        check_sigma_order((sigma_x, sigma_y), input_size)
    return sigma_x, sigma_y


def check_sigma_order(sigma: tuple[float, float], input_size: tuple[int, int]) -> None:
    """Refuses a ``(sigma_x, sigma_y)`` pair whose larger value lies along the input's shorter
    side: the mirror image of every RTMPose config (``(4.9, 5.66)`` for 256x192), and what a pair
    reversed like this package's (H, W) sizes, or an ``input_size`` written in mmpose's (W, H)
    order, looks like. Both are valid numbers that give wrong labels without an error, so the
    ambiguity is refused; ``sigma={"x": ..., "y": ...}`` states the axes and passes.

    Raises:
        RenderArgumentError: naming ``sigma``.
    """
    (sigma_x, sigma_y), (height, width) = sigma, input_size
    if sigma_x == sigma_y or height == width or (sigma_x > sigma_y) == (width > height):
        return
    raise RenderArgumentError(
        "sigma", f"{(sigma_x, sigma_y)} is (sigma_x, sigma_y), mmpose's order, and its larger "
        f"value is along the shorter side of input_size {input_size} (H, W): one of the two "
        "looks reversed (sizes here are (H, W); sigma stays (x, y)); if both are meant, pass "
        f"sigma={{'x': {sigma_x!r}, 'y': {sigma_y!r}}}"
    )


def check_simcc_args(
    keypoints: Any,
    input_size: Any,
    sigma: Any,
    *,
    split_ratio: Any = 2.0,
    smoothing: str = "gaussian",
    label_smooth_weight: Any = 0.0,
    normalize: Any = True,
    visibility: Any = None,
) -> SimccArgs:
    """Checks and normalises the arguments of :func:`render_simcc`.

    Raises:
        RenderArgumentError: a ``ValueError`` whose ``.argument`` names the argument.
        RenderArgumentTypeError: also a ``TypeError``, for arguments that are not arrays at all.
    """
    if smoothing not in SMOOTHINGS:
        raise RenderArgumentError(
            "smoothing", f"expected one of {', '.join(SMOOTHINGS)}, got {smoothing!r}"
        )
    if not isinstance(normalize, (bool, np.bool_)):
        raise RenderArgumentError("normalize", f"expected True or False, got {normalize!r}")
    weight = _check_number("label_smooth_weight", label_smooth_weight)
    if not 0.0 <= weight <= 1.0:
        raise RenderArgumentError("label_smooth_weight", f"must lie in [0, 1], got {weight!r}")
    if smoothing == "gaussian" and weight > 0:
        raise RenderArgumentError(
            "label_smooth_weight", "only used with smoothing='standard' (as in mmpose)"
        )
    ratio = _check_number("split_ratio", split_ratio)
    if ratio <= 0:
        raise RenderArgumentError("split_ratio", f"must be > 0, got {split_ratio!r}")
    points, has_instances = check_keypoints(keypoints)
    in_height, in_width = check_hw("input_size", input_size)
    label_size = (round(in_height * ratio), round(in_width * ratio))
    if min(label_size) < 1:
        raise RenderArgumentError(
            "split_ratio",
            f"{ratio!r} gives labels of (Hy, Wx) = {label_size} bins for input_size "
            f"{(in_height, in_width)}; each needs at least 1",
        )
    checked_visibility = check_visibility(visibility, points, has_instances)
    return SimccArgs(
        keypoints=drawn_finite(points, checked_visibility),
        visibility=checked_visibility,
        has_instances=has_instances,
        input_size=(in_height, in_width),
        sigma=_check_simcc_sigma(sigma, (in_height, in_width), label_size),
        split_ratio=ratio,
        smoothing=smoothing,
        label_smooth_weight=weight,
        normalize=bool(normalize),
    )


def _gaussian_rows(centres: torch.Tensor, sigma: float, length: int, normalize: bool):
    """float32 ``(M, length)`` labels of integer ``centres`` ``(M, 1)`` float64, in float64."""
    bins = torch.arange(length, dtype=torch.float64, device=centres.device)
    rows = torch.exp(-((bins - centres) ** 2) / (2 * sigma**2))
    if normalize:
        rows = rows / (sigma * math.sqrt(2 * math.pi))
    return rows.to(torch.float32)


def _centre_range(sigma: float, length: int) -> tuple[int, int]:
    """Integer centres beyond ``[lowest, highest]`` are outside by the 3-sigma rule."""
    reach = math.ceil(3 * sigma)
    return -reach - 2, length + reach + 1


def _gaussian_table(sigma: float, length: int, normalize: bool, device: torch.device):
    """Rows for every centre in :func:`_centre_range`, then one all-zero row (built on the CPU,
    so every device gathers the very same values)."""
    lowest, highest = _centre_range(sigma, length)
    centres = torch.arange(lowest, highest + 1, dtype=torch.float64)[:, None]
    rows = _gaussian_rows(centres, sigma, length, normalize)
    return torch.cat([rows, torch.zeros((1, length), dtype=torch.float32)]).to(device)


def _gaussian_axis(centre: torch.Tensor, sigma: float, length: int, normalize: bool,
                   drawn: torch.Tensor) -> torch.Tensor:
    """Labels ``(B, N, K, length)`` for integer centres ``(B, N, K)`` (float64, clamped)."""
    lowest, highest = _centre_range(sigma, length)
    centre = centre.clamp(lowest, highest)
    rows = highest - lowest + 1
    if rows * length > PLAN_MAX_ELEMENTS:
        # Too long a table to keep: each label row at its own centre, the float64 scratch in
        # blocks of at most BLOCK_ELEMENTS.
        centres, drawn_rows = centre.reshape(-1, 1), drawn.reshape(-1, 1)
        labels = torch.empty((centres.shape[0], length), dtype=torch.float32,
                             device=centre.device)
        step = max(1, BLOCK_ELEMENTS // length)
        for start in range(0, centres.shape[0], step):
            block = slice(start, start + step)
            labels[block] = _gaussian_rows(centres[block], sigma, length, normalize) \
                * drawn_rows[block]
        return labels.view(*centre.shape, length)
    key = ("simcc", sigma, length, normalize, str(centre.device))
    table = cached_table(key, lambda: _gaussian_table(sigma, length, normalize, centre.device))
    index = torch.where(drawn, (centre - lowest).long(), rows)  # the last row is all zeros
    return table.index_select(0, index.reshape(-1)).view(*centre.shape, length)


def _standard_axis(centre: torch.Tensor, length: int, smooth: float,
                   drawn: torch.Tensor) -> torch.Tensor:
    """One-hot ``1 - smooth`` at the centre, ``smooth / (L - 1)`` elsewhere, zeros if not drawn."""
    # Computed in Python's float64 and rounded once to float32, as mmpose stores them.
    other = smooth / max(length - 1, 1)
    labels = torch.full((*centre.shape, length), other, dtype=torch.float32, device=centre.device)
    index = centre.clamp(0, length - 1).long()[..., None]
    labels.scatter_(-1, index, 1.0 - smooth)
    return labels * drawn[..., None]


def simcc_from_args(args: SimccArgs) -> SimccLabels:
    """:func:`render_simcc` on already checked arguments."""
    label_height, label_width = args.label_size
    lengths = (label_width, label_height)  # x runs along Wx, y along Hy
    limit = float(8 * max(lengths) + 16)  # beyond it every rule says outside; keeps inf away
    # mmpose: np.around(keypoints * ratio) in the keypoints' precision, half to even.
    centres = torch.round((args.keypoints * args.split_ratio).clamp_(-limit, limit))
    centres = centres.to(torch.float64)
    if args.smoothing == "gaussian":
        outside = torch.zeros(centres.shape[:-1], dtype=torch.bool, device=centres.device)
        for axis, (length, sigma) in enumerate(zip(lengths, args.sigma)):
            mu = centres[..., axis]
            outside |= (mu - 3 * sigma >= length) | (mu + 3 * sigma + 1 < 0)
    else:
        lengths_tensor = torch.tensor(lengths, dtype=torch.float64, device=centres.device)
        outside = ((centres < 0) | (centres >= lengths_tensor)).any(dim=-1)
    drawn = ~outside if args.visibility is None else (args.visibility >= 0.5) & ~outside
    labels = []
    for axis, (length, sigma) in enumerate(zip(lengths, args.sigma)):
        if args.smoothing == "gaussian":
            labels.append(_gaussian_axis(centres[..., axis], sigma, length, args.normalize, drawn))
        else:
            labels.append(_standard_axis(centres[..., axis], length, args.label_smooth_weight,
                                         drawn))
    if args.visibility is None:
        weights = (~outside).to(torch.float32)
    else:
        weights = torch.where((args.visibility >= 0.5) & outside, 0.0, args.visibility)
    x_labels, y_labels = labels
    if not args.has_instances:
        x_labels, y_labels, weights = x_labels.squeeze(1), y_labels.squeeze(1), weights.squeeze(1)
    return SimccLabels(x_labels=x_labels, y_labels=y_labels, weights=weights)


def render_simcc(
    keypoints: Any,
    input_size: tuple[int, int],
    sigma: Any,
    *,
    split_ratio: float = 2.0,
    smoothing: str = "gaussian",
    label_smooth_weight: float = 0.0,
    normalize: bool = True,
    visibility: Any = None,
) -> SimccLabels:
    """mmpose's ``SimCCLabel.encode`` for a whole batch in one vectorised call.

    Args:
        keypoints: ``(B, K, 2)`` or ``(B, N, K, 2)`` (x, y) in input-image pixels.
        input_size: ``(H_in, W_in)`` of the input image (mmpose configs write ``(w, h)``).
        sigma: a number, or ``(sigma_x, sigma_y)`` in label bins, mmpose's order (RTMPose at
            256x192 uses ``(4.9, 5.66)``), or ``{"x": ..., "y": ...}``; unused by
            ``smoothing="standard"`` but still checked. A pair whose larger value lies along the
            input's shorter side is refused as ambiguous (see :func:`check_sigma_order`).
        split_ratio: label bins per input pixel (mmpose ``simcc_split_ratio``).
        smoothing: ``"gaussian"`` or ``"standard"`` (mmpose ``smoothing_type``).
        label_smooth_weight: in ``[0, 1]``, only with ``smoothing="standard"``.
        normalize: divide Gaussian labels by ``sigma * sqrt(2 pi)``.
        visibility: ``(B, K)`` or ``(B, N, K)``; a keypoint is drawn when it is at least 0.5.

    Returns:
        :class:`SimccLabels` ``(x_labels (B, [N,] K, Wx), y_labels (B, [N,] K, Hy), weights)``
        with ``(Hy, Wx) = (round(H_in * split_ratio), round(W_in * split_ratio))``.

    Raises:
        RenderArgumentError: naming the argument (``keypoints``, ``input_size``, ``sigma``,
            ``split_ratio``, ``smoothing``, ``label_smooth_weight``, ``normalize``,
            ``visibility``).
    """
    args = check_simcc_args(
        keypoints, input_size, sigma, split_ratio=split_ratio, smoothing=smoothing,
        label_smooth_weight=label_smooth_weight, normalize=normalize, visibility=visibility,
    )
    return simcc_from_args(args)
