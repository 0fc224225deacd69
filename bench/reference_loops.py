"""The per-keypoint numpy loops that the vectorised renderer replaces: speed and parity references.

``mmpose_simcc_loop`` is the SimCC counterpart (mmpose ``SimCCLabel``), for bench/simcc.py.

Each function renders one batch the way a DataLoader's ``__getitem__`` renders it, one sample and
one keypoint at a time, and returns a list of per-sample ``(K, H, W)`` float32 arrays plus the
``(B, K)`` float32 weights. Batching them (``np.stack``, as ``default_collate`` does) is left out of
the timed work on purpose, which can only favour the loops.

The centre rule is a parameter so that every loop can be checked against the matching renderer
method before it is timed:

- ``"seed"``: ``int(0.5 * (x + 1) * w)`` on keypoints in ``[-1, 1]`` (the seed's convention),
  computed in float32 as the seed did on float32 keypoints;
- ``"msra"``: ``int(u + 0.5)`` on keypoints in heatmap pixels (HRNet, mmpose ``MSRAHeatmap``).

Everything else is the classic window rule: ``tmp = 3 * sigma``, window ``[int(mu - tmp),
int(mu + tmp + 1))``, a kernel of ``2 * tmp + 1`` samples centred at ``size // 2``, peak 1, a
keypoint whose window misses the heatmap left empty with weight 0.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LOOPS",
    "cached_kernel_loop",
    "mmpose_loop",
    "mmpose_simcc_loop",
    "seed_loop",
]


def _centres(keypoints: np.ndarray, size: tuple[int, int], centre: str) -> np.ndarray:
    """``(B, K, 2)`` integer centres (x, y) under ``centre``'s rule, in float32 arithmetic."""
    height, width = size
    points = np.asarray(keypoints, dtype=np.float32)
    if centre == "seed":
        extent = np.array([width, height], dtype=np.float32)
        return ((points + np.float32(1)) * np.float32(0.5) * extent).astype(np.int64)
    if centre == "msra":
        return (points + np.float32(0.5)).astype(np.int64)
    raise ValueError(f"centre: expected 'seed' or 'msra', got {centre!r}")


def seed_loop(keypoints: np.ndarray, size: tuple[int, int], sigma: float, centre: str = "seed"):
    """The classic function: a fresh 2D kernel with ``np.exp`` per keypoint, pasted into the slice.

    One fresh ``np.zeros((K, H, W))`` per sample; the centre is taken one keypoint at a time with
    Python's ``int`` (truncation toward zero), as the seed did.
    """
    height, width = size
    batch, num_keypoints, _ = keypoints.shape
    points = np.asarray(keypoints, dtype=np.float32)
    half, one = np.float32(0.5), np.float32(1)
    out, weights = [], np.ones((batch, num_keypoints), dtype=np.float32)
    for b in range(batch):
        target = np.zeros((num_keypoints, height, width), dtype=np.float32)
        for k in range(num_keypoints):
            x, y = points[b, k]
            if centre == "seed":
                mu_x, mu_y = int(half * (x + one) * width), int(half * (y + one) * height)
            else:
                mu_x, mu_y = int(x + half), int(y + half)
            tmp_size = sigma * 3
            x1, y1 = int(mu_x - tmp_size), int(mu_y - tmp_size)
            x2, y2 = int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)
            if x1 >= width or y1 >= height or x2 < 0 or y2 < 0:
                weights[b, k] = 0
                continue
            kernel_size = 2 * tmp_size + 1
            xs = np.arange(0, kernel_size, 1, np.float32)
            ys = xs[:, np.newaxis]
            x0 = y0 = kernel_size // 2
            g = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma**2))
            g_x = max(0, -x1), min(x2, width) - x1
            g_y = max(0, -y1), min(y2, height) - y1
            img_x = max(0, x1), min(x2, width)
            img_y = max(0, y1), min(y2, height)
            patch = g[g_y[0] : g_y[1], g_x[0] : g_x[1]]
            target[k, img_y[0] : img_y[1], img_x[0] : img_x[1]] = patch
        out.append(target)
    return out, weights


_KERNELS: dict[float, np.ndarray] = {}


def _cached_kernel(sigma: float) -> np.ndarray:
    kernel = _KERNELS.get(sigma)
    if kernel is None:
        tmp_size = sigma * 3
        kernel_size = 2 * tmp_size + 1
        xs = np.arange(0, kernel_size, 1, np.float32)
        ys = xs[:, np.newaxis]
        x0 = y0 = kernel_size // 2
        kernel = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma**2))
        _KERNELS[sigma] = kernel
    return kernel


def cached_kernel_loop(
    keypoints: np.ndarray, size: tuple[int, int], sigma: float, centre: str = "seed"
):
    """The usual first fix: the 2D kernel built once per sigma, pasted with ``np.maximum``."""
    height, width = size
    batch, num_keypoints, _ = keypoints.shape
    kernel = _cached_kernel(sigma)
    tmp_size = sigma * 3
    centres = _centres(keypoints, size, centre).tolist()
    out, weights = [], np.ones((batch, num_keypoints), dtype=np.float32)
    for b in range(batch):
        target = np.zeros((num_keypoints, height, width), dtype=np.float32)
        for k, (mu_x, mu_y) in enumerate(centres[b]):
            x1, y1 = int(mu_x - tmp_size), int(mu_y - tmp_size)
            x2, y2 = int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)
            if x1 >= width or y1 >= height or x2 < 0 or y2 < 0:
                weights[b, k] = 0
                continue
            region = target[k, max(0, y1) : min(y2, height), max(0, x1) : min(x2, width)]
            patch = kernel[max(0, -y1) : min(y2, height) - y1, max(0, -x1) : min(x2, width) - x1]
            np.maximum(region, patch, out=region)
        out.append(target)
    return out, weights


def mmpose_loop(keypoints: np.ndarray, size: tuple[int, int], sigma: float, centre: str = "msra"):
    """In the style of mmpose's ``generate_gaussian_heatmaps``, called once per sample.

    Per sample: the kernel grid once, then per keypoint the centre with numpy's ``astype(int64)``,
    the 2D Gaussian with ``np.exp`` over the kernel grid and ``np.maximum`` into the heatmap slice.
    """
    height, width = size
    batch, num_keypoints, _ = keypoints.shape
    centres = _centres(keypoints, size, centre)
    out, weights = [], np.ones((batch, num_keypoints), dtype=np.float32)
    for b in range(batch):
        heatmaps = np.zeros((num_keypoints, height, width), dtype=np.float32)
        radius = 3 * sigma
        gaussian_size = 2 * radius + 1
        xs = np.arange(0, gaussian_size, 1, dtype=np.float32)
        ys = xs[:, None]
        x0 = y0 = gaussian_size // 2
        for k in range(num_keypoints):
            mu = centres[b, k]
            left, top = (mu - radius).astype(np.int64)
            right, bottom = (mu + radius + 1).astype(np.int64)
            if left >= width or top >= height or right < 0 or bottom < 0:
                weights[b, k] = 0
                continue
            gaussian = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma**2))
            g_x1, g_x2 = max(0, -left), min(width, right) - left
            g_y1, g_y2 = max(0, -top), min(height, bottom) - top
            h_x1, h_x2 = max(0, left), min(width, right)
            h_y1, h_y2 = max(0, top), min(height, bottom)
            region = heatmaps[k, h_y1:h_y2, h_x1:h_x2]
            np.maximum(region, gaussian[g_y1:g_y2, g_x1:g_x2], out=region)
        out.append(heatmaps)
    return out, weights


def mmpose_simcc_loop(keypoints: np.ndarray, visibility: np.ndarray, input_size: tuple[int, int],
                      sigma: tuple[float, float], split_ratio: float = 2.0,
                      normalize: bool = False):
    """In the style of mmpose's ``SimCCLabel._generate_gaussian``, called once per sample.

    Args:
        keypoints: ``(B, K, 2)`` in input pixels; visibility ``(B, K)``.
        input_size: ``(H_in, W_in)``; sigma ``(sigma_x, sigma_y)`` (mmpose's order).

    Returns:
        ``(x_labels, y_labels, weights)``: per-sample lists of ``(K, Wx)`` and ``(K, Hy)``
        float32 arrays, and the ``(B, K)`` weights, as a Dataset's ``__getitem__`` returns them.
    """
    in_height, in_width = input_size
    width = int(np.around(in_width * split_ratio))
    height = int(np.around(in_height * split_ratio))
    sigmas = np.array(sigma)
    radius = sigmas * 3
    xs = np.arange(0, width, 1, dtype=np.float32)
    ys = np.arange(0, height, 1, dtype=np.float32)
    x_out, y_out, weights = [], [], np.array(visibility, dtype=np.float32)
    for b in range(keypoints.shape[0]):
        centres = np.around(keypoints[b] * split_ratio).astype(np.int64)
        target_x = np.zeros((keypoints.shape[1], width), dtype=np.float32)
        target_y = np.zeros((keypoints.shape[1], height), dtype=np.float32)
        for k in range(keypoints.shape[1]):
            if visibility[b, k] < 0.5:
                continue
            mu = centres[k]
            left, top = mu - radius
            right, bottom = mu + radius + 1
            if left >= width or top >= height or right < 0 or bottom < 0:
                weights[b, k] = 0
                continue
            target_x[k] = np.exp(-((xs - mu[0]) ** 2) / (2 * sigmas[0] ** 2))
            target_y[k] = np.exp(-((ys - mu[1]) ** 2) / (2 * sigmas[1] ** 2))
        if normalize:
            norm = sigmas * np.sqrt(np.pi * 2)
            target_x /= norm[0]
            target_y /= norm[1]
        x_out.append(target_x)
        y_out.append(target_y)
    return x_out, y_out, weights


LOOPS = {
    "seed_loop": seed_loop,
    "cached_loop": cached_kernel_loop,
    "mmpose_loop": mmpose_loop,
}
