"""Dense heatmaps: the outer product of each keypoint's two profiles, max-merged over instances.

The output is written exactly once per instance by one broadcast multiply (``expand.py``, the same
code that expands profiles on the training device), so the cost is close to the floor of touching
``B * K * H * W`` elements. Low-precision outputs are the float32 product rounded once to the output
dtype (``render(..., dtype=float16) == render(...).half()``, bit for bit).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .expand import check_out, expand_into
from .profiles import profiles_from_args
from .validate import RenderArgs, check_render_args

__all__ = [
    "Heatmaps",
    "heatmaps_from_args",
    "render_heatmaps",
]


class Heatmaps(NamedTuple):
    """Heatmaps ``(B, K, H, W)`` in the requested dtype and float32 weights (see ``Profiles``)."""

    heatmaps: torch.Tensor
    weights: torch.Tensor


def render_heatmaps(
    keypoints: Any,
    size: tuple[int, int],
    sigma: Any,
    *,
    method: str = "msra",
    coords: str = "heatmap",
    input_size: tuple[int, int] | None = None,
    visibility: Any = None,
    dtype: Any = torch.float32,
    out: torch.Tensor | None = None,
) -> Heatmaps:
    """Renders Gaussian heatmaps for a batch of keypoints in one vectorised call.

    Args:
        keypoints: ``(B, K, 2)`` or ``(B, N, K, 2)`` (x, y), torch tensor or numpy array.
        size: ``(H, W)`` of the heatmap (mmpose configs write ``(W, H)``).
        sigma: in heatmap pixels; broadcasts against ``keypoints.shape[:-1]``: a scalar, ``(K,)``
            per keypoint, ``(B, N, 1)`` per instance, ``(B, 1, 1)`` per sample, ``(B, N, K)``
            (for ``(B, K, 2)`` keypoints: ``(K,)``, ``(B, 1)``, ``(B, K)``); at least
            ``SIGMA_MIN`` and at most ``max(H, W)``.
        method: ``seed``, ``msra`` (default), ``udp`` or ``dark``; see ``profiles.py``.
        coords: ``heatmap`` (default), ``pixel`` (needs ``input_size``) or ``normalized``.
        input_size: ``(H_in, W_in)`` of the input image, for ``coords="pixel"``.
        visibility: ``(B, K)`` or ``(B, N, K)``; a keypoint is drawn when it is at least 0.5.
        dtype: ``torch.float32`` (default), ``torch.float16`` or ``torch.bfloat16`` (or their
            names).
        out: optional contiguous ``(B, K, H, W)`` tensor of ``dtype`` on the keypoints' device,
            written in place and returned; reusing one avoids page-faulting a fresh tensor.

    Returns:
        :class:`Heatmaps` ``(heatmaps (B, K, H, W), weights)`` on the keypoints' device;
        instances of one keypoint merge by maximum.

    Raises:
        RenderArgumentError: a ``ValueError`` with ``.argument`` naming the argument (the message
            starts with it): non-finite coordinates, sigma below ``SIGMA_MIN``, non-positive
            sizes, mismatched shapes, unknown ``method``/``coords``/``dtype``, ``coords="pixel"``
            without ``input_size``, an ``out`` of the wrong shape, dtype or device.
        RenderArgumentTypeError: also a ``TypeError``, for an ``out`` that is not a tensor or
            arguments that are not numbers or arrays at all.
    """
    args = check_render_args(
        keypoints,
        size,
        sigma,
        method=method,
        coords=coords,
        input_size=input_size,
        visibility=visibility,
        dtype=dtype,
    )
    return heatmaps_from_args(args, out)


def heatmaps_from_args(args: RenderArgs, out: torch.Tensor | None = None) -> Heatmaps:
    """:func:`render_heatmaps` on already checked arguments (``out`` is still checked)."""
    batch, _, num_keypoints, _ = args.keypoints.shape
    shape = (batch, num_keypoints, *args.size)
    device = args.keypoints.device
    if out is None:
        out = torch.empty(shape, dtype=args.dtype, device=device)
    else:
        check_out(out, shape, args.dtype, device)
    profiles = profiles_from_args(args)
    return Heatmaps(heatmaps=expand_into(profiles.rows, profiles.cols, out),
                    weights=profiles.weights)
