"""One mmpose codec's targets for a whole batch: the mapping from mmpose's arguments to ours.

An mmpose codec config (``MSRAHeatmap``, ``UDPHeatmap``, ``SimCCLabel`` or our ``Fast*`` twins)
becomes one :class:`TargetSpec`, in this package's terms: sizes ``(H, W)`` where mmpose writes
``(W, H)``, keypoints in input pixels as mmpose passes them. :func:`render_targets` then renders a
batch ``(B, N, K, 2)`` in one call and returns what mmpose's encoder returns per sample, stacked
along B and under mmpose's own keys. The codecs (``codecs.py``, B = 1) and the data preprocessor
(``preprocessor.py``, the whole batch) both go through here, so they cannot drift apart.

Heatmap coordinates are computed here as mmpose computes them, ``keypoints / scale_factor`` with
the codec's own float32 ``scale_factor`` in the keypoints' precision (float32 from mmpose's COCO
and face parsers, float64 from its COCO-WholeBody parser), and handed to the renderer as
``coords="heatmap"``: the renderer's own ``coords="pixel"`` divides float64 keypoints by the
float64 ratio, which for UDP's ``(input - 1) / (heatmap - 1)`` is not mmpose's float32 one.

Weights are mmpose's exactly, in the visibility's own dtype: a copy of ``keypoints_visible``, 0
where a drawn keypoint (visibility >= 0.5) falls off the target. The values follow the renderer
(float64 exponents rounded once; mmpose evaluates in float32), so they differ from mmpose's by a
few float32 ulps; positions, windows, zeros and peaks are the same (see docs/mmpose.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mmpose.codecs import MSRAHeatmap, SimCCLabel, UDPHeatmap

from ..dense import render_heatmaps
from ..errors import RenderArgumentError
from ..expand import expand_profiles
from ..simcc import render_simcc

__all__ = [
    "HEATMAP_KEYS",
    "SIMCC_KEYS",
    "TargetSpec",
    "mmpose_weights",
    "render_targets",
    "target_spec",
]

# What each family's encode() returns, in mmpose's names and order.
HEATMAP_KEYS = ("heatmaps", "keypoint_weights")
SIMCC_KEYS = ("keypoint_x_labels", "keypoint_y_labels", "keypoint_weights")

# The renderer's argument names -> mmpose's, for errors the user can act on.
_MMPOSE_NAMES = {"keypoints": "keypoints", "visibility": "keypoints_visible"}


@dataclass(frozen=True)
class TargetSpec:
    """What one mmpose codec renders, in heatmap_render's terms.

    Attributes:
        kind: ``"heatmap"`` (``MSRAHeatmap``, ``UDPHeatmap``) or ``"simcc"`` (``SimCCLabel``).
        input_size: ``(H_in, W_in)`` (mmpose's ``input_size`` is ``(w, h)``).
        sigma: heatmaps: one sigma in heatmap pixels; SimCC: ``(sigma_x, sigma_y)`` in bins.
        method: heatmaps: ``msra``, ``udp`` or ``dark`` (``MSRAHeatmap(unbiased=True)``).
        size: heatmaps: ``(H, W)`` (mmpose's ``heatmap_size`` is ``(W, H)``).
        scale: heatmaps: the codec's ``scale_factor`` ``(x, y)``, input pixels per heatmap
            pixel, float32 values as mmpose rounds them.
        split_ratio, smoothing, label_smooth_weight, normalize: SimCC's, as
            :func:`heatmap_render.render_simcc` takes them.
    """

    kind: str
    input_size: tuple[int, int]
    sigma: float | tuple[float, float]
    method: str = "msra"
    size: tuple[int, int] | None = None
    scale: tuple[float, float] = (1.0, 1.0)
    split_ratio: float = 2.0
    smoothing: str = "gaussian"
    label_smooth_weight: float = 0.0
    normalize: bool = True

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the codec's ``encode()``, in its order."""
        return HEATMAP_KEYS if self.kind == "heatmap" else SIMCC_KEYS

    @property
    def single_instance(self) -> bool:
        """mmpose's heatmap codecs encode one instance per sample (``N == 1``); SimCC any N."""
        return self.kind == "heatmap"


def _hw(name: str, value: Any) -> tuple[int, int]:
    """mmpose's ``(w, h)`` as our ``(H, W)``."""
    try:
        width, height = value
    except (TypeError, ValueError):
        raise RenderArgumentError(name, f"expected mmpose's (w, h), got {value!r}") from None
    return int(height), int(width)


def _scale(codec: Any) -> tuple[float, float]:
    """The codec's float32 ``scale_factor`` ``(x, y)`` as two Python floats (exact)."""
    scale_x, scale_y = (float(value) for value in np.asarray(codec.scale_factor, np.float32))
    return scale_x, scale_y


def target_spec(codec: Any) -> TargetSpec:
    """The :class:`TargetSpec` of a built mmpose codec.

    Raises:
        RenderArgumentError: naming ``encoder``, for a codec this package does not render
            (``UDPHeatmap(heatmap_type="combined")``, regression, 3D and bottom-up codecs).
    """
    if isinstance(codec, MSRAHeatmap):
        return TargetSpec(
            kind="heatmap", method="dark" if codec.unbiased else "msra",
            size=_hw("heatmap_size", codec.heatmap_size),
            input_size=_hw("input_size", codec.input_size), sigma=float(codec.sigma),
            scale=_scale(codec),
        )
    if isinstance(codec, UDPHeatmap):
        if codec.heatmap_type != "gaussian":
            raise RenderArgumentError(
                "encoder", f"UDPHeatmap(heatmap_type={codec.heatmap_type!r}) is not rendered "
                "here; only heatmap_type='gaussian' is",
            )
        return TargetSpec(
            kind="heatmap", method="udp", size=_hw("heatmap_size", codec.heatmap_size),
            input_size=_hw("input_size", codec.input_size), sigma=float(codec.sigma),
            scale=_scale(codec),
        )
    if isinstance(codec, SimCCLabel):
        sigma_x, sigma_y = (float(value) for value in np.broadcast_to(codec.sigma, (2,)))
        return TargetSpec(
            kind="simcc", input_size=_hw("input_size", codec.input_size),
            sigma=(sigma_x, sigma_y), split_ratio=float(codec.simcc_split_ratio),
            smoothing=codec.smoothing_type, label_smooth_weight=float(codec.label_smooth_weight),
            normalize=bool(codec.normalize),
        )
    raise RenderArgumentError(
        "encoder", f"{type(codec).__name__} is not rendered here; expected MSRAHeatmap, "
        "UDPHeatmap(heatmap_type='gaussian') or SimCCLabel (or their Fast* twins)",
    )


def mmpose_weights(visibility: torch.Tensor, rendered: torch.Tensor) -> torch.Tensor:
    """mmpose's ``keypoint_weights``: a copy of ``visibility`` in its own dtype, zeroed where a
    drawn keypoint fell off the target.

    The renderer's float32 weights are 0 for such a keypoint and nonzero for every other drawn
    one (its visibility is at least 0.5), so they mark where mmpose zeroes; taking the values
    from ``visibility`` itself keeps mmpose's dtype and bits (float64 visibility stays float64).
    """
    off = (visibility >= 0.5) & (rendered == 0)
    return visibility.masked_fill(off, 0)


def _drawable(keypoints: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
    """``keypoints`` with the non-finite coordinates of keypoints that are not drawn set to 0.

    mmpose skips a keypoint with visibility below 0.5 before it reads its coordinates, so NaN
    there is valid input (label tools write NaN for "not labelled"); the renderer may refuse it.
    """
    if bool(torch.isfinite(keypoints).all()):
        return keypoints
    hidden = (visibility < 0.5)[..., None] & ~torch.isfinite(keypoints)
    return keypoints.masked_fill(hidden, 0)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _heatmap_pixels(spec: TargetSpec, keypoints: torch.Tensor) -> torch.Tensor:
    """mmpose's ``keypoints / self.scale_factor``: a float32 divisor, the keypoints' precision
    (float32 / float32 stays float32, float64 / float32 is float64, as numpy promotes)."""
    scale = torch.tensor(spec.scale, dtype=torch.float32, device=keypoints.device)
    return keypoints / scale


def _render_local(spec: TargetSpec, keypoints: torch.Tensor, visibility: torch.Tensor):
    if spec.kind == "heatmap":
        return render_heatmaps(
            _heatmap_pixels(spec, keypoints), spec.size, spec.sigma, method=spec.method,
            coords="heatmap", visibility=visibility,
        )
    return render_simcc(
        keypoints, spec.input_size, spec.sigma, split_ratio=spec.split_ratio,
        smoothing=spec.smoothing, label_smooth_weight=spec.label_smooth_weight,
        normalize=spec.normalize, visibility=visibility,
    )


def _render_remote(spec: TargetSpec, keypoints: torch.Tensor, visibility: torch.Tensor,
                   renderer: Any):
    """Asks ``renderer`` (a ``heatmap_client.HeatmapClient``, or anything with its
    ``render_profiles`` and ``render_simcc``) and puts the answer on the keypoints' device.

    Heatmaps travel as their 1D profiles (27-41x fewer numbers than the dense stack) and are
    multiplied out here, on the device: bit for bit what the local path renders.
    """
    device, visible = keypoints.device, _numpy(visibility)
    if spec.kind == "heatmap":
        # The wire carries float32: heatmap coordinates of float64 keypoints are rounded once.
        points = _numpy(_heatmap_pixels(spec, keypoints)).astype(np.float32)
        reply = renderer.render_profiles(
            points, size=spec.size, sigma=spec.sigma, method=spec.method, coords="heatmap",
            visibility=visible,
        )
        rows, cols = (torch.from_numpy(np.ascontiguousarray(part)).to(device)
                      for part in (reply.rows, reply.cols))
        return expand_profiles(rows, cols), torch.from_numpy(reply.weights).to(device)
    reply = renderer.render_simcc(
        _numpy(keypoints).astype(np.float32), spec.input_size, spec.sigma,
        split_ratio=spec.split_ratio, smoothing=spec.smoothing,
        label_smooth_weight=spec.label_smooth_weight, normalize=spec.normalize, visibility=visible,
    )
    return tuple(torch.from_numpy(part).to(device)
                 for part in (reply.x_labels, reply.y_labels, reply.weights))


def render_targets(
    spec: TargetSpec,
    keypoints: torch.Tensor,
    visibility: torch.Tensor,
    renderer: Any = None,
) -> dict[str, torch.Tensor]:
    """A batch's targets under mmpose's keys, on the keypoints' device.

    Args:
        spec: from :func:`target_spec`.
        keypoints: ``(B, N, K, 2)`` (x, y) in input-image pixels (mmpose's transformed
            keypoints), float32 as mmpose's pipeline makes them; ``N == 1`` for heatmaps.
        visibility: ``(B, N, K)`` mmpose's ``keypoints_visible`` on the same device, any real
            dtype; a keypoint is drawn when it is at least 0.5.
        renderer: None to render here, or a ``HeatmapClient`` (anything with its
            ``render_profiles`` and ``render_simcc``) to ask the service.

    Returns:
        heatmaps: ``{"heatmaps": (B, K, H, W) float32, "keypoint_weights": (B, N, K)}``;
        SimCC: ``{"keypoint_x_labels": (B, N, K, Wx) float32, "keypoint_y_labels":
        (B, N, K, Hy) float32, "keypoint_weights": (B, N, K)}``; the weights in
        ``visibility``'s dtype (see :func:`mmpose_weights`).

    Raises:
        RenderArgumentError: naming mmpose's argument (``keypoints``, ``keypoints_visible``):
            a keypoint to be drawn with NaN coordinates, shapes that do not match, a visibility
            the renderer refuses; or ``keypoints`` with ``N != 1`` for heatmaps, which mmpose's
            heatmap codecs refuse too.
    """
    if keypoints.ndim != 4 or keypoints.shape[-1] != 2:
        raise RenderArgumentError(
            "keypoints", f"expected (B, N, K, 2) (x, y), got {tuple(keypoints.shape)}"
        )
    if spec.single_instance and keypoints.shape[1] != 1:
        raise RenderArgumentError(
            "keypoints", f"mmpose's heatmap codecs encode one instance per sample, got "
            f"N = {keypoints.shape[1]} (shape {tuple(keypoints.shape)})",
        )
    if tuple(visibility.shape) != tuple(keypoints.shape[:-1]):
        raise RenderArgumentError(
            "keypoints_visible", f"expected shape {tuple(keypoints.shape[:-1])} to match "
            f"keypoints, got {tuple(visibility.shape)}",
        )
    keypoints = _drawable(keypoints, visibility)
    try:
        if renderer is None:
            rendered = _render_local(spec, keypoints, visibility)
        else:
            rendered = _render_remote(spec, keypoints, visibility, renderer)
    except RenderArgumentError as error:
        name = _MMPOSE_NAMES.get(error.argument)
        if name is None:
            raise
        raise RenderArgumentError(name, error.detail) from None
    *labels, weights = rendered
    if spec.kind == "heatmap":
        # (B, 1, K, 2) keypoints give (B, K, H, W) heatmaps, merged over the single instance.
        return {"heatmaps": labels[0], "keypoint_weights": mmpose_weights(visibility, weights)}
    x_labels, y_labels = labels
    return {"keypoint_x_labels": x_labels, "keypoint_y_labels": y_labels,
            "keypoint_weights": mmpose_weights(visibility, weights)}

