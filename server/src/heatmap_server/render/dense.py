"""Dense heatmaps: the outer product of each keypoint's two profiles, max-merged over instances.

The output is written exactly once per instance by one broadcast multiply, so the cost is close to
the floor of touching ``B * K * H * W`` elements. Low-precision outputs are the float32 product
rounded once to the output dtype (``render(..., dtype=float16) == render(...).half()``, bit for
bit): on CUDA the multiply casts as it writes; on the CPU, where a cross-dtype multiply takes a
slow generic path, it goes through a float32 scratch block small enough to stay in cache.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .errors import RenderArgumentError, RenderArgumentTypeError
from .profiles import profiles_from_args
from .validate import RenderArgs, check_render_args

__all__ = [
    "RenderResult",
    "heatmaps_from_args",
    "render_heatmaps",
]

# Scratch block for low-precision CPU output: a couple of MB stays in L2.
_SCRATCH_BYTES = 2 * 1024 * 1024


class RenderResult(NamedTuple):
    """Heatmaps ``(B, K, H, W)`` in the requested dtype and float32 weights (see ``Profiles``)."""

    heatmaps: torch.Tensor
    weights: torch.Tensor


def _check_out(out: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device):
    if not isinstance(out, torch.Tensor):
        raise RenderArgumentTypeError("out", f"expected a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise RenderArgumentError("out", f"expected shape {shape}, got {tuple(out.shape)}")
    if out.dtype != dtype:
        raise RenderArgumentError("out", f"expected dtype {dtype}, got {out.dtype}")
    if out.device != device:
        raise RenderArgumentError("out", f"expected device {device}, got {out.device}")
    if not out.is_contiguous():
        raise RenderArgumentError("out", "must be contiguous")


def _outer_max(rows: torch.Tensor, cols: torch.Tensor, out: torch.Tensor) -> None:
    """``out[m] = max_n rows[m, n, :, None] * cols[m, n, None, :]``.

    Args:
        rows: ``(M, N, H)``; cols: ``(M, N, W)``; out: ``(M, H, W)``, any float dtype.
    """
    instances = rows.shape[1]
    if instances == 0 or out.numel() == 0:
        out.zero_()  # nothing to draw; an empty out must not cost a loop over the instances
        return
    torch.mul(rows[:, 0, :, None], cols[:, 0, None, :], out=out)
    if instances > 1:
        # Rounding to a lower precision is monotonic, so max-then-round == round-then-max.
        scratch = torch.empty_like(out)
        for n in range(1, instances):
            torch.mul(rows[:, n, :, None], cols[:, n, None, :], out=scratch)
            torch.maximum(out, scratch, out=out)


def _outer_max_via_scratch(rows: torch.Tensor, cols: torch.Tensor, out: torch.Tensor) -> None:
    """:func:`_outer_max` into a low-precision CPU ``out``, block by block through float32."""
    height, width = out.shape[-2:]
    block = max(1, _SCRATCH_BYTES // (4 * height * width))
    scratch = torch.empty((block, height, width), dtype=torch.float32)
    for start in range(0, out.shape[0], block):
        stop = min(start + block, out.shape[0])
        part = scratch[: stop - start]
        _outer_max(rows[start:stop], cols[start:stop], part)
        out[start:stop].copy_(part)


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
) -> RenderResult:
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
        :class:`RenderResult` ``(heatmaps (B, K, H, W), weights)`` on the keypoints' device;
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


def heatmaps_from_args(args: RenderArgs, out: torch.Tensor | None = None) -> RenderResult:
    """:func:`render_heatmaps` on already checked arguments (``out`` is still checked)."""
    batch, _, num_keypoints, _ = args.keypoints.shape
    height, width = args.size
    shape = (batch, num_keypoints, height, width)
    device = args.keypoints.device
    if out is None:
        out = torch.empty(shape, dtype=args.dtype, device=device)
    else:
        _check_out(out, shape, args.dtype, device)
    profiles = profiles_from_args(args)
    fused_cast = out.dtype == torch.float32 or device.type != "cpu"
    if profiles.rows.shape[1] == 1 and fused_cast:
        # The common case, one instance: a single broadcast multiply straight into ``out``.
        torch.mul(profiles.rows[:, 0, :, :, None], profiles.cols[:, 0, :, None, :], out=out)
        return RenderResult(heatmaps=out, weights=profiles.weights)
    # (B, N, K, L) -> (B * K, N, L) so that every (sample, keypoint) is one output channel.
    instances = profiles.rows.shape[1]
    rows = profiles.rows.transpose(1, 2).reshape(batch * num_keypoints, instances, height)
    cols = profiles.cols.transpose(1, 2).reshape(batch * num_keypoints, instances, width)
    flat_out = out.view(batch * num_keypoints, height, width)
    if fused_cast:
        _outer_max(rows, cols, flat_out)
    else:
        _outer_max_via_scratch(rows, cols, flat_out)
    return RenderResult(heatmaps=out, weights=profiles.weights)
