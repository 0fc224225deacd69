"""Per-keypoint numpy references for the renderer, written from the published formulas.

Nothing here imports ``heatmap_server``: each function renders one keypoint at a time, the way
mmpose's ``generate_gaussian_heatmaps`` / ``generate_udp_gaussian_heatmaps`` /
``generate_unbiased_gaussian_heatmaps`` and the seed's ``gaussian`` do, so that the vectorised
renderer is checked against an independent transcription of the maths.

Kernel values are computed in float64 and rounded to float32 once at the end; coordinates are
converted in the keypoints' own precision (float32 or float64), as mmpose does on float32 input.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "from_heatmap_pixels",
    "mmpose_gaussian_heatmaps",
    "random_keypoints",
    "reference_render",
    "seed_gaussian",
    "to_heatmap_pixels",
]


def to_heatmap_pixels(x, y, *, coords, method, size, input_size=None):
    """One keypoint ``(x, y)`` (numpy float32/float64 scalars) to heatmap pixels ``(u, v)``."""
    ft = type(x)
    height, width = size
    if coords == "heatmap":
        return x, y
    if coords == "normalized":
        # The seed's convention: 0.5 * (x + 1) * W, with -1 the left edge.
        return (x + ft(1)) * ft(0.5) * ft(width), (y + ft(1)) * ft(0.5) * ft(height)
    if coords == "pixel":
        in_height, in_width = input_size
        if method == "udp":
            # UDP: corner pixel to corner pixel. The ratio is float64, then rounded (mmpose).
            ratio_x, ratio_y = (in_width - 1) / (width - 1), (in_height - 1) / (height - 1)
        else:
            ratio_x, ratio_y = in_width / width, in_height / height
        return x / ft(ratio_x), y / ft(ratio_y)
    raise AssertionError(f"unknown coords {coords!r}")


def _paste(heatmap, kernel, left, top, right, bottom):
    """mmpose's paste of ``kernel`` whose top-left sample lands on pixel ``(left, top)``."""
    height, width = heatmap.shape
    g_x1, g_x2 = max(0, -left), min(right, width) - left
    g_y1, g_y2 = max(0, -top), min(bottom, height) - top
    h_x1, h_x2 = max(0, left), min(right, width)
    h_y1, h_y2 = max(0, top), min(bottom, height)
    heatmap[h_y1:h_y2, h_x1:h_x2] = kernel[g_y1:g_y2, g_x1:g_x2]


def _windowed_keypoint(u, v, sigma, method, size):
    """seed / msra / udp for one keypoint: returns ``(heatmap float64 (H, W), outside)``."""
    height, width = size
    heatmap = np.zeros((height, width), dtype=np.float64)
    ft = type(u)
    radius = 3 * sigma
    if method == "seed":
        mu_x, mu_y = int(u), int(v)  # int(): truncation toward zero
    else:
        mu_x, mu_y = int(u + ft(0.5)), int(v + ft(0.5))  # u + 0.5 in the keypoint's precision
    left, top = int(mu_x - radius), int(mu_y - radius)
    right, bottom = int(mu_x + radius + 1), int(mu_y + radius + 1)
    if left >= width or top >= height or right < 0 or bottom < 0:
        return heatmap, True
    gaussian_size = 2 * radius + 1
    xs = np.arange(0, gaussian_size, 1, dtype=np.float64)
    ys = xs[:, None]
    x0 = y0 = gaussian_size // 2
    if method == "udp":
        x0 += float(u) - mu_x
        y0 += float(v) - mu_y
    kernel = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma**2))
    _paste(heatmap, kernel, left, top, right, bottom)
    return heatmap, False


def _dark_keypoint(u, v, sigma, size):
    """dark (unbiased) for one keypoint: the Gaussian at the float centre, whole heatmap."""
    height, width = size
    ft = type(u)
    radius = ft(3 * sigma)
    left, top = u - radius, v - radius
    right, bottom = u + radius + ft(1), v + radius + ft(1)
    if left >= width or top >= height or right < 0 or bottom < 0:
        return np.zeros((height, width), dtype=np.float64), True
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)[:, None]
    return np.exp(-((xs - float(u)) ** 2 + (ys - float(v)) ** 2) / (2 * sigma**2)), False


def reference_render(
    keypoints, size, sigma, *, method, coords="heatmap", input_size=None, visibility=None
):
    """Loops over samples, instances and keypoints; returns ``(heatmaps, weights)`` in numpy.

    Args:
        keypoints: ``(B, K, 2)`` or ``(B, N, K, 2)`` numpy float32 or float64.
        sigma: anything that broadcasts against ``keypoints.shape[:-1]`` by numpy's rules (a
            scalar, K values, one per instance ``(B, N, 1)``, ...).
        visibility: ``(B, K)`` or ``(B, N, K)``, or None for all ones.

    Returns:
        heatmaps ``(B, K, H, W)`` float32 (max over instances), weights float32 shaped like the
        visibility.
    """
    keypoints = np.asarray(keypoints)
    assert keypoints.dtype in (np.float32, np.float64)
    has_instances = keypoints.ndim == 4
    points = keypoints if has_instances else keypoints[:, None]
    batch, instances, num_keypoints, _ = points.shape
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), keypoints.shape[:-1])
    sigmas = sigmas if has_instances else sigmas[:, None]
    if visibility is None:
        vis = np.ones((batch, instances, num_keypoints), dtype=np.float32)
    else:
        vis = np.asarray(visibility, dtype=np.float32)
        vis = vis if has_instances else vis[:, None]
    weights = vis.copy()
    height, width = size
    heatmaps = np.zeros((batch, num_keypoints, height, width), dtype=np.float32)
    for b in range(batch):
        for n in range(instances):
            for k in range(num_keypoints):
                if vis[b, n, k] < 0.5:
                    continue
                x, y = points[b, n, k]
                u, v = to_heatmap_pixels(
                    x, y, coords=coords, method=method, size=size, input_size=input_size
                )
                s = float(sigmas[b, n, k])
                if method == "dark":
                    heatmap, outside = _dark_keypoint(u, v, s, size)
                else:
                    heatmap, outside = _windowed_keypoint(u, v, s, method, size)
                if outside:
                    weights[b, n, k] = 0
                    continue
                np.maximum(heatmaps[b, k], heatmap.astype(np.float32), out=heatmaps[b, k])
    return heatmaps, (weights if has_instances else weights[:, 0])


def mmpose_gaussian_heatmaps(heatmap_size, keypoints, keypoints_visible, sigma):
    """mmpose's ``generate_gaussian_heatmaps`` (codecs/utils/gaussian_heatmap.py) for one sample.

    Transcribed statement by statement, float32 kernel included.

    Args:
        heatmap_size: ``(W, H)``, mmpose's order.
        keypoints: ``(N, K, 2)``; keypoints_visible: ``(N, K)``.
        sigma: a number, or one per instance (a sequence or array of N values).

    Returns:
        heatmaps ``(K, H, W)`` float32 (max over instances), weights ``(N, K)``.
    """
    N, K, _ = keypoints.shape
    W, H = heatmap_size
    heatmaps = np.zeros((K, H, W), dtype=np.float32)
    keypoint_weights = keypoints_visible.copy()
    if isinstance(sigma, (int, float)):
        sigma = (sigma,) * N
    for n in range(N):
        radius = sigma[n] * 3
        gaussian_size = 2 * radius + 1
        x = np.arange(0, gaussian_size, 1, dtype=np.float32)
        y = x[:, None]
        x0 = y0 = gaussian_size // 2
        for k in range(K):
            if keypoints_visible[n, k] < 0.5:
                continue
            mu = (keypoints[n, k] + 0.5).astype(np.int64)
            left, top = (mu - radius).astype(np.int64)
            right, bottom = (mu + radius + 1).astype(np.int64)
            if left >= W or top >= H or right < 0 or bottom < 0:
                keypoint_weights[n, k] = 0
                continue
            gaussian = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma[n] ** 2))
            g_x1 = max(0, -left)
            g_x2 = min(W, right) - left
            g_y1 = max(0, -top)
            g_y2 = min(H, bottom) - top
            h_x1 = max(0, left)
            h_x2 = min(W, right)
            h_y1 = max(0, top)
            h_y2 = min(H, bottom)
            heatmap_region = heatmaps[k, h_y1:h_y2, h_x1:h_x2]
            gaussian_region = gaussian[g_y1:g_y2, g_x1:g_x2]
            np.maximum(heatmap_region, gaussian_region, out=heatmap_region)
    return heatmaps, keypoint_weights


def seed_gaussian(x, y, w, h, sigma):
    """The seed's per-keypoint function as it was written: float32, normalized coordinates."""
    heatmap = np.zeros((h, w), dtype=np.float32)
    mu_x = int(0.5 * (x + 1) * w)
    mu_y = int(0.5 * (y + 1) * h)
    tmp_size = 3 * sigma
    x1, y1 = int(mu_x - tmp_size), int(mu_y - tmp_size)
    x2, y2 = int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)
    if x1 >= w or y1 >= h or x2 < 0 or y2 < 0:
        return heatmap
    size = 2 * tmp_size + 1
    tx = np.arange(0, size, 1, np.float32)
    ty = tx[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(-((tx - x0) ** 2 + (ty - y0) ** 2) / (2 * sigma**2))
    g_x = max(0, -x1), min(x2, w) - x1
    g_y = max(0, -y1), min(y2, h) - y1
    img_x = max(0, x1), min(x2, w)
    img_y = max(0, y1), min(y2, h)
    heatmap[img_y[0] : img_y[1], img_x[0] : img_x[1]] = g[g_y[0] : g_y[1], g_x[0] : g_x[1]]
    return heatmap


# --- Test data ---------------------------------------------------------------------------------


def from_heatmap_pixels(u, v, coords, method, size, input_size):
    """Heatmap pixels to ``coords`` (approximately: the reference converts back exactly)."""
    height, width = size
    if coords == "heatmap":
        return u, v
    if coords == "normalized":
        return u / width * 2 - 1, v / height * 2 - 1
    in_height, in_width = input_size
    if method == "udp":
        return u * (in_width - 1) / (width - 1), v * (in_height - 1) / (height - 1)
    return u * in_width / width, v * in_height / height


def random_keypoints(seed, shape, size, *, coords="heatmap", method="msra", input_size=None,
                     sigma=3.0, dtype=np.float32):
    """``shape + (2,)`` keypoints: most on the heatmap or just past its edges, ~10 % far off it."""
    rng = np.random.default_rng(seed)
    height, width = size
    u = rng.uniform(-2.0, width + 1.0, shape)
    v = rng.uniform(-2.0, height + 1.0, shape)
    far = rng.random(shape) < 0.1
    # Far off: beyond 3 sigma + 2 pixels of an edge, so the whole window misses the heatmap.
    beyond = rng.uniform(3 * sigma + 2, 3 * sigma + 2 + width, shape)
    u = np.where(far, np.where(rng.random(shape) < 0.5, -beyond, width - 1 + beyond), u)
    x, y = from_heatmap_pixels(u, v, coords, method, size, input_size)
    return np.stack([x, y], axis=-1).astype(dtype)
