"""``heatmap_client.torch.HeatmapCollate``: torch's collation plus one Render call per batch."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import heatmap_client.torch as heatmap_torch  # noqa: E402
from heatmap_client import HeatmapClient, HeatmapError  # noqa: E402
from heatmap_client.torch import HeatmapCollate, SeparableHeatmaps  # noqa: E402
from heatmap_render import render_heatmaps  # noqa: E402

SIZE = (32, 24)
K = 5


@pytest.fixture(scope="module")
def client(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        yield client


def _sample(index: int, instances: int | None = None) -> dict:
    rng = np.random.default_rng(index)
    shape = (K,) if instances is None else (instances, K)
    return {
        "image": torch.full((3, 8, 6), float(index)),
        "keypoints": rng.uniform(-2, 26, size=(*shape, 2)).astype(np.float32),
        "visibility": (rng.random(shape) > 0.25).astype(np.float32),
        "index": index,
    }


def _local(keypoints, visibility=None, **options):
    options = {"size": SIZE, "sigma": 2.0, **options}
    result = render_heatmaps(np.asarray(keypoints), options.pop("size"), options.pop("sigma"),
                             visibility=None if visibility is None else np.asarray(visibility),
                             **options)
    return result.heatmaps.numpy(), result.weights.numpy()


def test_package_imports_the_real_torch_and_exports_its_names():
    # heatmap_client.torch shares torch's name; absolute imports keep the two apart.
    assert heatmap_torch.targets.torch is torch and heatmap_torch.separable.torch is torch
    assert heatmap_torch.__all__ == sorted(heatmap_torch.__all__)
    assert heatmap_torch.__all__ == ["HeatmapCollate", "SeparableHeatmaps", "expand_profiles"]


def test_dict_samples_collate_as_default_and_get_heatmaps(client):
    samples = [_sample(index) for index in range(6)]
    batch = HeatmapCollate(client, size=SIZE, sigma=2.0)(samples)
    default = torch.utils.data.default_collate(samples)
    assert set(batch) == {*default, "heatmaps", "heatmap_weights"}
    for key in default:
        torch.testing.assert_close(batch[key], default[key], rtol=0, atol=0)
    heatmaps, weights = _local(batch["keypoints"], batch["visibility"])
    assert isinstance(batch["heatmaps"], torch.Tensor) and batch["heatmaps"].dtype == torch.float32
    assert batch["heatmaps"].shape == (6, K, *SIZE) and batch["heatmap_weights"].shape == (6, K)
    np.testing.assert_array_equal(batch["heatmaps"].numpy(), heatmaps)
    np.testing.assert_array_equal(batch["heatmap_weights"].numpy(), weights)


def test_tuple_samples_take_integer_keys(client):
    samples = [(s["image"], s["keypoints"], s["visibility"]) for s in map(_sample, range(3))]
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0, keypoints_key=1, visibility_key=2)
    images, keypoints, visibility, heatmaps, weights = collate(samples)
    assert images.shape == (3, 3, 8, 6)
    expected_heatmaps, expected_weights = _local(keypoints, visibility)
    np.testing.assert_array_equal(heatmaps.numpy(), expected_heatmaps)
    np.testing.assert_array_equal(weights.numpy(), expected_weights)


def test_tuple_samples_with_a_dict_key_say_what_to_pass(client):
    samples = [(s["image"], s["keypoints"]) for s in map(_sample, range(2))]
    with pytest.raises(TypeError, match="keypoints_key=<index>"):
        HeatmapCollate(client, size=SIZE, sigma=2.0)(samples)


def test_tuple_samples_without_visibility(client):
    samples = [(s["image"], s["keypoints"]) for s in map(_sample, range(2))]
    with pytest.raises(TypeError, match="visibility_key=<index> or None"):
        HeatmapCollate(client, size=SIZE, sigma=2.0, keypoints_key=1)(samples)
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0, keypoints_key=1, visibility_key=None)
    _, keypoints, heatmaps, weights = collate(samples)
    np.testing.assert_array_equal(heatmaps.numpy(), _local(keypoints)[0])
    np.testing.assert_array_equal(weights.numpy(), _local(keypoints)[1])


def test_without_visibility_every_keypoint_counts(client):
    samples = [{"keypoints": _sample(index)["keypoints"]} for index in range(2)]
    batch = HeatmapCollate(client, size=SIZE, sigma=2.0)(samples)
    heatmaps, weights = _local(batch["keypoints"])
    np.testing.assert_array_equal(batch["heatmaps"].numpy(), heatmaps)
    np.testing.assert_array_equal(batch["heatmap_weights"].numpy(), weights)


def test_missing_keypoints_name_the_key(client):
    with pytest.raises(KeyError, match="joints"):
        HeatmapCollate(client, size=SIZE, sigma=2.0, keypoints_key="joints")([_sample(0)])


def test_several_instances_merge_into_one_channel(client):
    samples = [_sample(index, instances=3) for index in range(2)]
    sigmas = [1.0, 1.5, 2.0, 2.5, 3.0]
    batch = HeatmapCollate(client, size=SIZE, sigma=sigmas, method="udp")(samples)
    heatmaps, weights = _local(batch["keypoints"], batch["visibility"],
                               sigma=np.array(sigmas), method="udp")
    assert batch["heatmaps"].shape == (2, K, *SIZE) and batch["heatmap_weights"].shape == (2, 3, K)
    np.testing.assert_array_equal(batch["heatmaps"].numpy(), heatmaps)
    np.testing.assert_array_equal(batch["heatmap_weights"].numpy(), weights)


def test_pixel_coordinates_and_custom_keys(client):
    samples = [{"joints": _sample(index)["keypoints"] * 4} for index in range(2)]
    collate = HeatmapCollate(
        client, size=SIZE, sigma=2.0, coords="pixel", input_size=(128, 96),
        keypoints_key="joints", heatmaps_key="target", weights_key="target_weight",
    )
    batch = collate(samples)
    heatmaps, weights = _local(batch["joints"], coords="pixel", input_size=(128, 96))
    np.testing.assert_array_equal(batch["target"].numpy(), heatmaps)
    np.testing.assert_array_equal(batch["target_weight"].numpy(), weights)


def test_keep_dtype_gives_half_tensors(client):
    batch = HeatmapCollate(client, size=SIZE, sigma=2.0, dtype="float16", keep_dtype=True)(
        [_sample(0)]
    )
    heatmaps, _ = _local(batch["keypoints"], batch["visibility"], dtype=torch.float16)
    assert batch["heatmaps"].dtype == torch.float16
    np.testing.assert_array_equal(batch["heatmaps"].numpy(), heatmaps.astype(np.float16))


def test_a_target_makes_a_client_with_a_deadline_and_pickles(live_server):
    collate = HeatmapCollate(live_server.target, size=SIZE, sigma=2.0)
    assert isinstance(collate.client, HeatmapClient)
    assert collate.client.timeout == heatmap_torch.collate.DEFAULT_TIMEOUT_S
    collate([_sample(0)])  # opens the channel; the copy must not carry it
    copy = pickle.loads(pickle.dumps(collate))
    batch = copy([_sample(1)])
    np.testing.assert_array_equal(batch["heatmaps"].numpy(), _local(batch["keypoints"],
                                                                     batch["visibility"])[0])


def test_anything_with_render_is_a_renderer():
    class Local:
        def render(self, keypoints, *, size, sigma, visibility=None, timeout=None,
                   keep_dtype=False, dtype="float32", codec="zstd", **options):
            return render_heatmaps(keypoints, size, sigma, visibility=visibility, **options)

    batch = HeatmapCollate(Local(), size=SIZE, sigma=2.0)([_sample(0), _sample(1)])
    np.testing.assert_array_equal(batch["heatmaps"].numpy(),
                                  _local(batch["keypoints"], batch["visibility"])[0])


def test_a_non_client_is_refused():
    with pytest.raises(TypeError, match="client_or_target"):
        HeatmapCollate(42, size=SIZE, sigma=2.0)


def test_server_errors_reach_the_loader(client):
    with pytest.raises(HeatmapError, match="sigma"):
        HeatmapCollate(client, size=SIZE, sigma=100.0)([_sample(0)])  # wider than the map


@pytest.mark.parametrize("depth", [1, 3])
def test_prefetch_yields_every_batch_in_order(client, depth):
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0)
    batches = [collate.collate([_sample(4 * i + j) for j in range(4)]) for i in range(5)]
    seen = list(collate.prefetch(iter(batches), depth=depth))
    assert [b["index"].tolist() for b in seen] == [b["index"].tolist() for b in batches]
    for batch in seen:
        heatmaps, weights = _local(batch["keypoints"], batch["visibility"])
        np.testing.assert_array_equal(batch["heatmaps"].numpy(), heatmaps)
        np.testing.assert_array_equal(batch["heatmap_weights"].numpy(), weights)


def test_prefetch_pulls_only_depth_ahead_and_stops_when_the_loop_breaks(client):
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0)
    pulled: list[int] = []

    def batches():
        for index in range(100):
            pulled.append(index)
            yield collate.collate([_sample(index)])

    stream = collate.prefetch(batches(), depth=2)
    assert next(stream)["index"].tolist() == [0]
    assert pulled == [0, 1, 2]  # batch 0 handed over, batches 1 and 2 in flight
    stream.close()
    assert pulled == [0, 1, 2]


def test_prefetch_rejects_a_zero_depth(client):
    with pytest.raises(ValueError, match="depth"):
        next(HeatmapCollate(client, size=SIZE, sigma=2.0).prefetch([], depth=0))


@pytest.mark.parametrize("instances", [None, 3])
@pytest.mark.parametrize("method", ["msra", "udp", "dark"])
def test_separable_output_expands_like_the_renderer(client, device, method, instances):
    samples = [_sample(index, instances) for index in range(4)]
    collate = HeatmapCollate(client, size=SIZE, sigma=[1.0, 1.5, 2.0, 2.5, 3.0], method=method,
                             output="separable")
    batch = collate(samples)
    heatmaps, weights = _local(batch["keypoints"], batch["visibility"],
                               sigma=np.array([1.0, 1.5, 2.0, 2.5, 3.0]), method=method)
    assert isinstance(batch["heatmaps"], SeparableHeatmaps)
    assert batch["heatmaps"].shape == (4, K, *SIZE)
    points = 4 * (instances or 1) * K
    # At most the profiles and an index each; msra's profiles repeat, so its tables are smaller.
    assert batch["heatmaps"].nbytes <= points * (sum(SIZE) + 2) * 4
    if method == "msra":
        assert batch["heatmaps"].nbytes < points * sum(SIZE) * 4
    np.testing.assert_array_equal(batch["heatmaps"].to(device).cpu().numpy(), heatmaps)
    np.testing.assert_array_equal(batch["heatmap_weights"].numpy(), weights)


def test_separable_output_with_tuples_and_prefetch(client):
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0, keypoints_key=1, visibility_key=2,
                             output="separable")
    samples = [(s["image"], s["keypoints"], s["visibility"]) for s in map(_sample, range(6))]
    batches = [collate.collate(samples[:3]), collate.collate(samples[3:])]
    for _, keypoints, visibility, heatmaps, weights in collate.prefetch(iter(batches)):
        expected_heatmaps, expected_weights = _local(keypoints, visibility)
        np.testing.assert_array_equal(heatmaps.dense().numpy(), expected_heatmaps)
        np.testing.assert_array_equal(weights.numpy(), expected_weights)


def test_separable_keep_dtype_expands_in_half(client):
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0, dtype="float16", keep_dtype=True,
                             output="separable")
    batch = collate([_sample(0), _sample(1)])
    heatmaps, _ = _local(batch["keypoints"], batch["visibility"], dtype=torch.float16)
    dense = batch["heatmaps"].to("cpu")
    assert dense.dtype == torch.float16
    np.testing.assert_array_equal(dense.numpy(), heatmaps)


def test_separable_server_errors_reach_the_loader(client):
    with pytest.raises(HeatmapError, match="sigma"):
        HeatmapCollate(client, size=SIZE, sigma=100.0, output="separable")([_sample(0)])
