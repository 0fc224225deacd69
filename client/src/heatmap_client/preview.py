"""A PNG preview for checking rendered targets by eye: heat over the image, a dot per keypoint.

The heat is the max over channels (or one channel), colour-mapped and blended over the image (or
over nothing); each labelled keypoint is a dot where the renderer was told it is, so a target that
sits off its landmark shows up as heat beside its dot. An optional crop to the keypoints' box
keeps 68 face landmarks from shrinking into one blob on a large photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["save_preview"]

# A short perceptual ramp (dark blue -> cyan -> yellow -> red), interpolated to 256 entries.
_RAMP = np.array([[0, 0, 64], [0, 96, 192], [0, 200, 200], [240, 230, 40], [220, 30, 20]], float)
# A preview of a small heatmap alone is scaled up to at least this many pixels on its long side.
_MIN_SIDE = 256


def _colour(values: np.ndarray) -> np.ndarray:
    positions = np.linspace(0, 1, len(_RAMP))
    scaled = np.clip(values, 0, 1)
    channels = [np.interp(scaled, positions, _RAMP[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def _heat(heatmaps: np.ndarray, channel: int | None) -> np.ndarray:
    """``(H, W)``: the max over samples and channels, or over samples for one channel."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps: expected (B, K, H, W), got shape {heatmaps.shape}")
    if channel is not None:
        if not 0 <= channel < heatmaps.shape[1]:
            raise ValueError(f"channel: {channel} is not a keypoint of 0..{heatmaps.shape[1] - 1}")
        heatmaps = heatmaps[:, channel : channel + 1]
    return heatmaps.reshape(-1, *heatmaps.shape[-2:]).max(axis=0)


def _dots(keypoints, visibility, size: tuple[int, int], canvas: tuple[int, int]):
    """``(M, 3)`` rows (x, y, k) on the canvas for every labelled keypoint."""
    points = np.asarray(keypoints, dtype=np.float64)
    count = points.shape[-2]
    channels = np.broadcast_to(np.arange(count), points.shape[:-1])
    shown = np.ones(points.shape[:-1], bool)
    if visibility is not None:
        shown = np.asarray(visibility, dtype=np.float64).reshape(points.shape[:-1]) >= 0.5
    # Heatmap pixel centres sit at integers, so pixel u spans [u - 0.5, u + 0.5).
    x = (points[..., 0] + 0.5) * canvas[1] / size[1] - 0.5
    y = (points[..., 1] + 0.5) * canvas[0] / size[0] - 0.5
    return np.stack([x[shown], y[shown], channels[shown]], axis=-1)


def _draw_dots(draw, dots: np.ndarray, side: int, channel: int | None) -> None:
    """White dots, and the dots of ``channel`` larger, red and on top of the others."""
    radius = max(2, round(side / 150))
    chosen = dots[:, 2] == channel if channel is not None else np.zeros(len(dots), bool)
    for (x, y, _), big in sorted(zip(dots, chosen), key=lambda pair: pair[1]):
        r = 3 * radius if big else radius
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(230, 20, 20) if big else (255, 255, 255),
                     outline=(0, 0, 0))


def _crop_box(dots: np.ndarray, canvas: tuple[int, int]):
    inside = dots[(dots[:, 0] >= 0) & (dots[:, 0] < canvas[1])
                  & (dots[:, 1] >= 0) & (dots[:, 1] < canvas[0])]
    if len(inside) == 0:
        return None  # nothing on the canvas to crop to: show it whole
    low, high = inside[:, :2].min(axis=0), inside[:, :2].max(axis=0)
    margin = 0.15 * (high - low).max() + 0.02 * max(canvas)
    left, top = np.maximum(np.floor(low - margin), 0).astype(int)
    right = int(min(np.ceil(high[0] + margin) + 1, canvas[1]))
    bottom = int(min(np.ceil(high[1] + margin) + 1, canvas[0]))
    return int(left), int(top), right, bottom


def save_preview(
    heatmaps: np.ndarray,
    path: str | Path,
    image: str | Path | None = None,
    *,
    keypoints: np.ndarray | None = None,
    visibility: np.ndarray | None = None,
    channel: int | None = None,
    crop: bool = False,
) -> None:
    """Writes a PNG of ``heatmaps (B, K, H, W)``, blended over ``image`` when one is given.

    The heatmaps are stretched to the image's size, which fits keypoints given in that image's
    pixels (or a heatmap alone is scaled up to at least 256 pixels).

    Args:
        heatmaps: ``(B, K, H, W)`` targets.
        path: where the PNG goes.
        image: the picture to draw over, or None for the heat alone.
        keypoints: ``(B, K, 2)`` or ``(B, N, K, 2)`` (x, y) in heatmap pixels (pixel centres at
            integers), drawn as dots; the dots of ``channel`` are drawn large and red.
        visibility: ``(B, K)`` / ``(B, N, K)``; keypoints under 0.5 get no dot.
        channel: one keypoint index to show the heat of; None shows the max over all of them.
        crop: crop to the dots' bounding box plus a margin (needs ``keypoints``).
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError("previews need Pillow: pip install 'heatmap-client[preview]'") from None
    peak = _heat(heatmaps, channel)
    height, width = peak.shape
    overlay = Image.fromarray(_colour(peak))
    if image is None:
        scale = max(1, -(-_MIN_SIDE // max(height, width)))
        picture = overlay.resize((width * scale, height * scale), Image.NEAREST)
    else:
        base = Image.open(image).convert("RGB")
        overlay = overlay.resize(base.size, Image.BILINEAR)
        alpha = Image.fromarray((np.clip(peak, 0, 1) * 200).astype(np.uint8))
        picture = Image.composite(overlay, base, alpha.resize(base.size, Image.BILINEAR))
    if keypoints is None:
        if crop:
            raise ValueError("crop: needs keypoints to crop to")
        picture.save(path)
        return
    dots = _dots(keypoints, visibility, (height, width), (picture.height, picture.width))
    box = _crop_box(dots, (picture.height, picture.width)) if crop else None
    if box is not None:
        picture = picture.crop(box)
        dots[:, :2] -= box[:2]
        if max(picture.size) < _MIN_SIDE:
            scale = _MIN_SIDE / max(picture.size)
            picture = picture.resize((round(picture.width * scale), round(picture.height * scale)),
                                     Image.BICUBIC)
            dots[:, :2] = (dots[:, :2] + 0.5) * scale - 0.5
    _draw_dots(ImageDraw.Draw(picture), dots, min(picture.size), channel)
    picture.save(path)
