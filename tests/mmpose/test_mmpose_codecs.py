"""The drop-in codecs against mmpose 1.3.2's own, built from the same config dicts.

Each case builds ``dict(type='MSRAHeatmap', ...)`` and ``dict(type='FastMSRAHeatmap', ...)``
through mmpose's ``KEYPOINT_CODECS`` and encodes the same keypoints with both: random ones (off
the image, on truncation edges, invisible, NaN where invisible, fractional visibility), and real
COCO, COCO-WholeBody (K = 133) and 300-W people through mmpose's own top-down transforms.

Keys, shapes and dtypes must be equal, weights bit for bit, values within 1e-6 (the renderer
evaluates in float64 and rounds once where mmpose evaluates in float32: a few float32 ulps), and
for the windowed methods the zeros exactly where mmpose's are (same windows, same centres).
"""

from __future__ import annotations

import numpy as np
import pytest
from mmpose.registry import KEYPOINT_CODECS

from heatmap_render.mmpose import FastMSRAHeatmap, FastSimCCLabel, FastUDPHeatmap

from mmpose_cases import data_infos, run_pipeline

ATOL = 1e-6

CODECS = {
    "msra-256x192": dict(type="MSRAHeatmap", input_size=(192, 256), heatmap_size=(48, 64),
                         sigma=2),
    "msra-384x288": dict(type="MSRAHeatmap", input_size=(288, 384), heatmap_size=(72, 96),
                         sigma=3),
    # 3 sigma not an integer: mmpose's asymmetric window.
    "msra-face-sigma1.5": dict(type="MSRAHeatmap", input_size=(256, 256),
                               heatmap_size=(64, 64), sigma=1.5),
    "dark-256x192": dict(type="MSRAHeatmap", input_size=(192, 256), heatmap_size=(48, 64),
                         sigma=2, unbiased=True),
    "udp-256x192": dict(type="UDPHeatmap", input_size=(192, 256), heatmap_size=(48, 64),
                        sigma=2),
    "udp-384x288": dict(type="UDPHeatmap", input_size=(288, 384), heatmap_size=(72, 96),
                        sigma=3),
    "simcc-rtmpose-m": dict(type="SimCCLabel", input_size=(192, 256), sigma=(4.9, 5.66),
                            simcc_split_ratio=2.0, normalize=False, use_dark=False),
    "simcc-384x288": dict(type="SimCCLabel", input_size=(288, 384), sigma=(6.93, 7.99),
                          simcc_split_ratio=2.0, normalize=False),
    "simcc-normalized": dict(type="SimCCLabel", input_size=(192, 256), sigma=6.0,
                             simcc_split_ratio=1.66),
    "simcc-smoothed": dict(type="SimCCLabel", input_size=(192, 256), smoothing_type="standard",
                           label_smooth_weight=0.1),
    "simcc-one-hot": dict(type="SimCCLabel", input_size=(192, 256), smoothing_type="standard"),
}
WINDOWED = {"msra-256x192", "msra-384x288", "msra-face-sigma1.5", "udp-256x192", "udp-384x288",
            "simcc-smoothed", "simcc-one-hot"}


def build_pair(name: str):
    """(mmpose's codec, ours) from the same config dict."""
    cfg = CODECS[name]
    return KEYPOINT_CODECS.build(dict(cfg)), KEYPOINT_CODECS.build(dict(cfg, type="Fast" + cfg[
        "type"]))


def assert_same_encoding(ours: dict, theirs: dict, windowed: bool) -> None:
    assert list(ours) == list(theirs)
    for key, expected in theirs.items():
        got = ours[key]
        assert isinstance(got, np.ndarray), key
        assert (got.shape, got.dtype) == (expected.shape, expected.dtype), key
        if key == "keypoint_weights":
            np.testing.assert_array_equal(got, expected, err_msg=key)
            continue
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL, err_msg=key)
        if windowed:
            np.testing.assert_array_equal(got != 0, expected != 0, err_msg=f"{key}: support")


def random_keypoints(rng, count: int, num_keypoints: int, input_size, dtype=np.float32):
    """``(count, K, 2)`` keypoints: a quarter of them off the image, some on the half- and
    whole-pixel values where truncation flips, and ``(count, K)`` visibility: 0, fractions,
    1; NaN coordinates for a few invisible keypoints."""
    width, height = input_size
    span = np.array([width, height], dtype=np.float64)
    points = rng.uniform(-0.25, 1.25, (count, num_keypoints, 2)) * span
    edges = rng.integers(-40, int(span.max()) + 40, (count, num_keypoints, 2)) / 2.0
    on_edge = rng.random((count, num_keypoints, 1)) < 0.3
    points = np.where(on_edge, edges, points).astype(dtype)
    visible = rng.choice(np.array([0.0, 0.3, 0.5, 0.7, 1.0, 1.0, 1.0], dtype=np.float32),
                         (count, num_keypoints))
    hidden = np.flatnonzero(visible.reshape(-1) < 0.5)[:3]
    points.reshape(-1, 2)[hidden] = np.nan
    return points, visible


def test_the_drop_ins_are_registered_as_mmpose_builds_them():
    for name, cls in (("FastMSRAHeatmap", FastMSRAHeatmap), ("FastUDPHeatmap", FastUDPHeatmap),
                      ("FastSimCCLabel", FastSimCCLabel)):
        assert KEYPOINT_CODECS.get(name) is cls


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize("num_keypoints", [17, 133])
def test_random_keypoints(name, num_keypoints):
    theirs, ours = build_pair(name)
    rng = np.random.default_rng([num_keypoints, len(name)])
    # mmpose's heatmap codecs take one instance; SimCC any number.
    count = 3 if CODECS[name]["type"] == "SimCCLabel" else 1
    for _ in range(8):
        points, visible = random_keypoints(rng, count, num_keypoints, CODECS[name]["input_size"])
        assert_same_encoding(ours.encode(points, visible), theirs.encode(points, visible),
                             name in WINDOWED)


@pytest.mark.parametrize("name", ["msra-256x192", "dark-256x192", "udp-256x192",
                                  "simcc-rtmpose-m"])
def test_default_visibility_and_float64_input(name):
    """No visibility: mmpose's float32 ones. float64 keypoints and visibility: computed and
    returned in float64, as mmpose does."""
    theirs, ours = build_pair(name)
    rng = np.random.default_rng(7)
    count = 2 if CODECS[name]["type"] == "SimCCLabel" else 1
    points, visible = random_keypoints(rng, count, 17, CODECS[name]["input_size"], np.float64)
    points = np.nan_to_num(points)
    assert_same_encoding(ours.encode(points), theirs.encode(points), name in WINDOWED)
    visible = visible.astype(np.float64)
    assert_same_encoding(ours.encode(points, visible), theirs.encode(points, visible),
                         name in WINDOWED)


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize("case", ["hrnet-w32-coco", "rtmpose-m-wholebody", "hrnetv2-w18-300w"])
def test_real_people_through_mmpose_transforms(name, case):
    """COCO (17), COCO-WholeBody (133) and 300-W (68) annotations, cropped and rotated by
    mmpose's own transforms into the codec's input: the keypoints training sees."""
    theirs, ours = build_pair(name)
    pipeline = [dict(type="GetBBoxCenterScale"),
                dict(type="RandomBBoxTransform", scale_factor=[0.6, 1.4], rotate_factor=80),
                dict(type="TopdownAffine", input_size=CODECS[name]["input_size"]),
                dict(type="PackPoseInputs", pack_transformed=True)]
    batch = run_pipeline(pipeline, data_infos(case), seed=3)
    for sample in batch["data_samples"]:
        points = sample.gt_instances.transformed_keypoints
        visible = sample.gt_instances.keypoints_visible
        # mmpose's COCO and 300-W parsers give float32 keypoints, its COCO-WholeBody parser
        # float64 (it concatenates the parts without a dtype): both must match.
        assert points.dtype == (np.float64 if case.endswith("wholebody") else np.float32)
        assert_same_encoding(ours.encode(points, visible), theirs.encode(points, visible),
                             name in WINDOWED)


@pytest.mark.parametrize("name", ["msra-256x192", "dark-256x192", "udp-256x192",
                                  "simcc-rtmpose-m"])
def test_decode_is_mmpose_s_own(name):
    theirs, ours = build_pair(name)
    # On the image: an empty channel makes mmpose's own DARK refinement divide by zero.
    rng = np.random.default_rng(1)
    points = (rng.uniform(0.1, 0.9, (1, 17, 2)) * CODECS[name]["input_size"]).astype(np.float32)
    visible = np.ones((1, 17), np.float32)
    encoded = theirs.encode(points, visible)
    if "heatmaps" in encoded:
        decoded, expected = ours.decode(encoded["heatmaps"]), theirs.decode(encoded["heatmaps"])
    else:
        labels = encoded["keypoint_x_labels"], encoded["keypoint_y_labels"]
        decoded, expected = ours.decode(*labels), theirs.decode(*labels)
    for got, want in zip(decoded, expected):
        np.testing.assert_array_equal(got, want)


def test_combined_udp_runs_mmpose_s_own_encoder():
    cfg = dict(type="UDPHeatmap", input_size=(192, 256), heatmap_size=(48, 64),
               heatmap_type="combined")
    theirs = KEYPOINT_CODECS.build(dict(cfg))
    ours = KEYPOINT_CODECS.build(dict(cfg, type="FastUDPHeatmap"))
    points, visible = random_keypoints(np.random.default_rng(2), 1, 17, (192, 256))
    points = np.nan_to_num(points)
    for key, value in theirs.encode(points, visible).items():
        np.testing.assert_array_equal(ours.encode(points, visible)[key], value)


def test_errors_name_mmpose_s_arguments():
    _, ours = build_pair("msra-256x192")
    points = np.zeros((2, 17, 2), np.float32)
    with pytest.raises(ValueError, match="^keypoints: .*one instance") as error:
        ours.encode(points)
    assert error.value.argument == "keypoints"
    points = np.full((1, 17, 2), np.nan, np.float32)  # NaN where the keypoint is to be drawn
    with pytest.raises(ValueError, match="^keypoints: ") as error:
        ours.encode(points, np.ones((1, 17), np.float32))
    with pytest.raises(ValueError, match="^keypoints_visible: ") as error:
        ours.encode(points[:, :5], np.ones((1, 17), np.float32))
    assert error.value.argument == "keypoints_visible"
