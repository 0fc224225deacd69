"""Real batches through ``HeatmapCollate``: samples with different numbers of people, and each
sample's (or person's) own sigma read from the batch, equal to rendering each sample alone, on the
service and in-process."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from heatmap_client import ArgumentError  # noqa: E402
from heatmap_client.torch import HeatmapCollate  # noqa: E402
from heatmap_render import render_heatmaps, sigma_from_box  # noqa: E402

SIZE = (48, 40)
K = 6


def _person_samples(people: list[int], seed: int = 0, sigma: str | None = None) -> list[dict]:
    """Samples of ``(N, K, 2)`` keypoints and ``(N, K)`` visibility, N per ``people``; with
    ``sigma``, each sample's own: ``"sample"`` a number, ``"person"`` ``(N, 1)`` from the people's
    boxes (CID's rule), ``"keypoint"`` ``(K,)``."""
    rng = np.random.default_rng(seed)
    samples = []
    for count in people:
        keypoints = rng.uniform(-2, 42, (count, K, 2)).astype(np.float32)
        sample = {"keypoints": keypoints,
                  "visibility": (rng.random((count, K)) > 0.2).astype(np.float32)}
        if sigma == "sample":
            sample["sigma"] = np.float32(rng.uniform(1.0, 3.0))
        elif sigma == "person":
            extent = keypoints.max(axis=1) - keypoints.min(axis=1) + 4  # (N, (w, h))
            sample["sigma"] = sigma_from_box(extent[:, ::-1].copy(), rule="cid")[:, None]
        elif sigma == "keypoint":
            sample["sigma"] = rng.uniform(1.0, 3.0, K).astype(np.float32)
        samples.append(sample)
    return samples


def _alone(sample: dict, sigma=2.0) -> tuple[np.ndarray, np.ndarray]:
    """What rendering one sample by itself gives."""
    own = sample.get("sigma", sigma)
    own = np.asarray(own, np.float64)[None] if np.ndim(own) else float(own)
    result = render_heatmaps(sample["keypoints"][None], SIZE, own,
                             visibility=sample["visibility"][None])
    return result.heatmaps[0].numpy(), result.weights[0].numpy()


def _target(live_server, where: str) -> str:
    return live_server.target if where == "service" else "local"


@pytest.mark.parametrize("where", ["service", "local"])
@pytest.mark.parametrize("output", ["dense", "separable"])
def test_samples_with_different_numbers_of_people_equal_each_rendered_alone(live_server, where,
                                                                            output):
    samples = _person_samples([1, 3, 2, 3, 1])
    batch = HeatmapCollate(_target(live_server, where), size=SIZE, sigma=2.0,
                           output=output)(samples)
    assert batch["keypoints"].shape == (5, 3, K, 2)
    heatmaps = batch["heatmaps"]
    if output == "separable":
        heatmaps = heatmaps.dense()
    for index, sample in enumerate(samples):
        expected, weights = _alone(sample)
        people = len(sample["keypoints"])
        np.testing.assert_array_equal(heatmaps[index].numpy(), expected)
        np.testing.assert_array_equal(batch["heatmap_weights"][index, :people].numpy(), weights)
        assert not batch["heatmap_weights"][index, people:].any()  # the padding weighs nothing


@pytest.mark.parametrize("where", ["service", "local"])
@pytest.mark.parametrize("kind", ["sample", "person", "keypoint"])
def test_each_samples_own_sigma_is_read_from_the_batch(live_server, where, kind):
    samples = _person_samples([2, 1, 3], seed=3, sigma=kind)
    batch = HeatmapCollate(_target(live_server, where), size=SIZE, sigma_key="sigma")(samples)
    for index, sample in enumerate(samples):
        expected, _ = _alone(sample)
        np.testing.assert_array_equal(batch["heatmaps"][index].numpy(), expected)


def test_a_per_person_sigma_without_people_padding_is_its_instances(live_server):
    """Every sample with as many people: no padding, the sigma goes as (B, N, 1)."""
    samples = _person_samples([2, 2, 2], seed=5, sigma="person")
    batch = HeatmapCollate(live_server.target, size=SIZE, sigma_key="sigma")(samples)
    for index, sample in enumerate(samples):
        np.testing.assert_array_equal(batch["heatmaps"][index].numpy(), _alone(sample)[0])


def test_sigma_and_sigma_key_are_one_or_the_other():
    with pytest.raises(ArgumentError, match="sigma_key"):
        HeatmapCollate("local", size=SIZE)
    with pytest.raises(ArgumentError, match="not both"):
        HeatmapCollate("local", size=SIZE, sigma=2.0, sigma_key="sigma")


def test_a_missing_sigma_key_names_it():
    samples = _person_samples([1, 1])
    with pytest.raises(KeyError, match="sigma_key"):
        HeatmapCollate("local", size=SIZE, sigma_key="sigma")(samples)


def test_a_sigma_with_more_axes_than_the_keypoints_names_sigma_key():
    samples = [{"keypoints": np.zeros((K, 2), np.float32), "sigma": np.ones((2, K))}
               for _ in range(2)]
    with pytest.raises(ValueError, match="sigma_key"):
        HeatmapCollate("local", size=SIZE, sigma_key="sigma", visibility_key=None)(samples)


@pytest.mark.parametrize("where", ["service", "local"])
def test_padding_without_visibility_draws_every_real_person_and_warns_nothing(live_server,
                                                                             where):
    samples = [{"keypoints": sample["keypoints"]} for sample in _person_samples([1, 4, 1, 1])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the padding is no keypoint that missed the map
        batch = HeatmapCollate(_target(live_server, where), size=SIZE, sigma=2.0,
                               visibility_key=None)(samples)
    for index, sample in enumerate(samples):
        alone = render_heatmaps(sample["keypoints"][None], SIZE, 2.0)
        np.testing.assert_array_equal(batch["heatmaps"][index].numpy(), alone.heatmaps[0].numpy())
        people = len(sample["keypoints"])
        np.testing.assert_array_equal(batch["heatmap_weights"][index, :people].numpy(),
                                      alone.weights[0].numpy())
