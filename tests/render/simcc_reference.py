"""mmpose's ``SimCCLabel.encode`` (mmpose/codecs/simcc_label.py), transcribed for one sample.

Statement by statement as mmpose writes ``_map_coordinates``, ``_generate_gaussian`` and
``_generate_standard``, with mmpose's own argument conventions: ``input_size`` is ``(w, h)`` and
sigma ``(sigma_x, sigma_y)``. Nothing here imports ``heatmap_server``.
"""

from __future__ import annotations

from itertools import product

import numpy as np

__all__ = [
    "mmpose_simcc_encode",
    "simcc_reference",
]


def mmpose_simcc_encode(keypoints, keypoints_visible, *, input_size, smoothing_type="gaussian",
                        sigma=6.0, simcc_split_ratio=2.0, label_smooth_weight=0.0,
                        normalize=True):
    """One sample: keypoints ``(N, K, 2)``, visibility ``(N, K)`` or None, ``input_size`` (w, h).

    Returns ``(x_labels (N, K, Wx), y_labels (N, K, Hy), keypoint_weights (N, K))``.
    """
    if isinstance(sigma, (float, int)):
        sigma = np.array([sigma, sigma])
    else:
        sigma = np.array(sigma)
    if keypoints_visible is None:
        keypoints_visible = np.ones(keypoints.shape[:2], dtype=np.float32)
    N, K, _ = keypoints.shape
    w, h = input_size
    W = np.around(w * simcc_split_ratio).astype(int)
    H = np.around(h * simcc_split_ratio).astype(int)
    # _map_coordinates
    keypoints_split = keypoints.copy()
    keypoints_split = np.around(keypoints_split * simcc_split_ratio)
    with np.errstate(invalid="ignore"):  # mmpose casts inf too (to an arbitrary int64)
        keypoints_split = keypoints_split.astype(np.int64)
    keypoint_weights = keypoints_visible.copy()
    target_x = np.zeros((N, K, W), dtype=np.float32)
    target_y = np.zeros((N, K, H), dtype=np.float32)
    if smoothing_type == "standard":
        for n, k in product(range(N), range(K)):
            if keypoints_visible[n, k] < 0.5:
                continue
            mu_x, mu_y = keypoints_split[n, k].astype(np.int64)
            if mu_x >= W or mu_y >= H or mu_x < 0 or mu_y < 0:
                keypoint_weights[n, k] = 0
                continue
            if label_smooth_weight > 0:
                with np.errstate(divide="ignore"):  # a 1-bin label: inf, overwritten below
                    target_x[n, k] = label_smooth_weight / np.float64(W - 1)
                    target_y[n, k] = label_smooth_weight / np.float64(H - 1)
            target_x[n, k, mu_x] = 1.0 - label_smooth_weight
            target_y[n, k, mu_y] = 1.0 - label_smooth_weight
        return target_x, target_y, keypoint_weights
    radius = sigma * 3
    x = np.arange(0, W, 1, dtype=np.float32)
    y = np.arange(0, H, 1, dtype=np.float32)
    for n, k in product(range(N), range(K)):
        if keypoints_visible[n, k] < 0.5:
            continue
        mu = keypoints_split[n, k]
        left, top = mu - radius
        right, bottom = mu + radius + 1
        if left >= W or top >= H or right < 0 or bottom < 0:
            keypoint_weights[n, k] = 0
            continue
        mu_x, mu_y = mu
        target_x[n, k] = np.exp(-((x - mu_x) ** 2) / (2 * sigma[0] ** 2))
        target_y[n, k] = np.exp(-((y - mu_y) ** 2) / (2 * sigma[1] ** 2))
    if normalize:
        norm_value = sigma * np.sqrt(np.pi * 2)
        target_x /= norm_value[0]
        target_y /= norm_value[1]
    return target_x, target_y, keypoint_weights


def simcc_reference(keypoints, input_size, sigma, *, split_ratio=2.0, smoothing="gaussian",
                    label_smooth_weight=0.0, normalize=True, visibility=None):
    """:func:`mmpose_simcc_encode` sample by sample, in the renderer's conventions.

    Args:
        keypoints: ``(B, K, 2)`` or ``(B, N, K, 2)`` numpy; input_size ``(H_in, W_in)``.

    Returns:
        ``(x_labels, y_labels, weights)`` stacked over B, without N for ``(B, K, 2)`` input.
    """
    has_instances = keypoints.ndim == 4
    points = keypoints if has_instances else keypoints[:, None]
    vis = None
    if visibility is not None:
        vis = visibility if has_instances else visibility[:, None]
    in_height, in_width = input_size
    xs, ys, weights = [], [], []
    for b in range(points.shape[0]):
        x_labels, y_labels, weight = mmpose_simcc_encode(
            points[b], None if vis is None else vis[b], input_size=(in_width, in_height),
            smoothing_type=smoothing, sigma=sigma, simcc_split_ratio=split_ratio,
            label_smooth_weight=label_smooth_weight, normalize=normalize,
        )
        xs.append(x_labels)
        ys.append(y_labels)
        weights.append(weight)
    x_labels, y_labels, weights = np.stack(xs), np.stack(ys), np.stack(weights)
    if not has_instances:
        x_labels, y_labels, weights = x_labels[:, 0], y_labels[:, 0], weights[:, 0]
    return x_labels, y_labels, weights
