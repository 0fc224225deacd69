"""``HeatmapCollate(target="simcc")``: RTMPose's SimCC labels under mmpose's batch names, from
the service and in-process, equal to the renderer's."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from heatmap_client import ArgumentError, HeatmapClient  # noqa: E402
from heatmap_client.torch import HeatmapCollate  # noqa: E402
from heatmap_render import render_simcc  # noqa: E402

INPUT_SIZE = (256, 192)
SIGMA = (4.9, 5.66)  # RTMPose's 256x192 configuration, (sigma_x, sigma_y)
K = 17


@pytest.fixture(scope="module")
def client(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        yield client


def _sample(index: int) -> dict:
    rng = np.random.default_rng(index)
    return {
        "keypoints": rng.uniform(-10, 260, size=(K, 2)).astype(np.float32),
        "visibility": (rng.random(K) > 0.2).astype(np.float32),
        "index": index,
    }


def _expected(batch, **options):
    return render_simcc(batch["keypoints"].numpy(), INPUT_SIZE, SIGMA,
                        visibility=batch["visibility"].numpy(), **options)


@pytest.mark.parametrize("options", [
    {},
    {"normalize": False},
    {"smoothing": "standard", "label_smooth_weight": 0.1},
    {"split_ratio": 1.5},
])
@pytest.mark.parametrize("source", ["service", "local"])
def test_simcc_batches_carry_mmposes_names_and_the_renderers_labels(client, source, options):
    collate = HeatmapCollate(client if source == "service" else "local", target="simcc",
                             input_size=INPUT_SIZE, sigma=SIGMA, **options)
    batch = collate([_sample(index) for index in range(4)])
    assert {"keypoint_x_labels", "keypoint_y_labels", "keypoint_weights"} <= set(batch)
    assert "heatmaps" not in batch
    expected = _expected(batch, **options)
    ratio = options.get("split_ratio", 2.0)
    assert batch["keypoint_x_labels"].shape == (4, K, round(192 * ratio))
    assert batch["keypoint_y_labels"].shape == (4, K, round(256 * ratio))
    torch.testing.assert_close(batch["keypoint_x_labels"], expected.x_labels, rtol=0, atol=0)
    torch.testing.assert_close(batch["keypoint_y_labels"], expected.y_labels, rtol=0, atol=0)
    torch.testing.assert_close(batch["keypoint_weights"], expected.weights, rtol=0, atol=0)


def test_tuple_samples_get_the_labels_and_weights_appended(client):
    samples = [(torch.zeros(3), _sample(index)["keypoints"]) for index in range(3)]
    collate = HeatmapCollate(client, target="simcc", input_size=INPUT_SIZE, sigma=SIGMA,
                             keypoints_key=1, visibility_key=None)
    images, keypoints, x_labels, y_labels, weights = collate(samples)
    expected = render_simcc(keypoints.numpy(), INPUT_SIZE, SIGMA)
    torch.testing.assert_close(x_labels, expected.x_labels, rtol=0, atol=0)
    torch.testing.assert_close(y_labels, expected.y_labels, rtol=0, atol=0)
    torch.testing.assert_close(weights, expected.weights, rtol=0, atol=0)


@pytest.mark.parametrize(("options", "argument"), [
    ({"sigma": SIGMA}, "input_size"),
    ({"input_size": INPUT_SIZE, "sigma": -1.0}, "sigma"),
    ({"input_size": INPUT_SIZE, "sigma": SIGMA, "output": "separable"}, "output"),
    ({"input_size": INPUT_SIZE, "sigma": SIGMA, "label_smooth_weight": 0.1}, "label_smooth_weight"),
    ({"input_size": INPUT_SIZE, "sigma": SIGMA, "codec": "separable"}, "codec"),
])
def test_bad_simcc_options_fail_at_construction_naming_them(options, argument):
    with pytest.raises(ArgumentError) as caught:
        HeatmapCollate("127.0.0.1:1", target="simcc", **options)
    assert caught.value.argument == argument


@pytest.mark.parametrize(("options", "argument"), [
    ({"sigma": 2.0}, "size"),
    ({"size": (64, 48), "sigma": 2.0, "coords": "pixel"}, "input_size"),
    ({"size": 64, "sigma": 2.0}, "size"),
    ({"size": (64, 48), "sigma": None}, "sigma"),
    ({"size": (64, 48), "sigma": 2.0, "target": "dsnt"}, "target"),
])
def test_bad_heatmap_options_fail_at_construction_naming_them(options, argument):
    with pytest.raises(ArgumentError) as caught:
        HeatmapCollate("127.0.0.1:1", **options)
    assert caught.value.argument == argument
