"""A PNG preview of rendered heatmaps: the max over channels, colour-mapped, over the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["save_preview"]

# A short perceptual ramp (dark blue -> cyan -> yellow -> red), interpolated to 256 entries.
_RAMP = np.array([[0, 0, 64], [0, 96, 192], [0, 200, 200], [240, 230, 40], [220, 30, 20]], float)


def _colour(values: np.ndarray) -> np.ndarray:
    positions = np.linspace(0, 1, len(_RAMP))
    scaled = np.clip(values, 0, 1)
    channels = [np.interp(scaled, positions, _RAMP[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def save_preview(heatmaps: np.ndarray, path: str | Path, image: str | Path | None = None) -> None:
    """Writes ``max over (B, K)`` of ``heatmaps (B, K, H, W)`` as a PNG, blended over ``image``.

    The heatmaps are stretched to the image's size, which fits keypoints given in that image's
    pixel coordinates.
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("previews need Pillow: pip install 'heatmap-client[preview]'") from None
    peak = np.asarray(heatmaps, dtype=np.float32).reshape(-1, *heatmaps.shape[-2:]).max(axis=0)
    overlay = Image.fromarray(_colour(peak))
    if image is None:
        overlay.save(path)
        return
    base = Image.open(image).convert("RGB")
    overlay = overlay.resize(base.size, Image.BILINEAR)
    alpha = Image.fromarray((np.clip(peak, 0, 1) * 200).astype(np.uint8)).resize(base.size)
    Image.composite(overlay, base, alpha).save(path)
