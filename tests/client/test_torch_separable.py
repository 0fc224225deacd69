"""``SeparableHeatmaps``: profiles in the batch, dense on ``.to(device)``, pinned and pickled as
profiles only."""

from __future__ import annotations

import io
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest

torch = pytest.importorskip("torch")
# Importing torch.multiprocessing registers its tensor reductions with ForkingPickler.
pytest.importorskip("torch.multiprocessing")

from torch.utils.data._utils.pin_memory import pin_memory as loader_pin_memory  # noqa: E402

from heatmap_client.torch import SeparableHeatmaps  # noqa: E402
from heatmap_render import render_heatmaps, render_profiles  # noqa: E402

SIZE = (32, 24)
K = 5
# What pickling adds to the profiles' bytes: class and tensor metadata.
HEADER_BYTES = 2048


def _case(instances: int | None = 2):
    rng = np.random.default_rng(1)
    shape = (4, K) if instances is None else (4, instances, K)
    return dict(keypoints=rng.uniform(-3, 30, size=(*shape, 2)).astype(np.float32), size=SIZE,
                sigma=2.0, method="dark",
                visibility=(rng.random(shape) > 0.3).astype(np.float32))


@pytest.fixture
def heatmaps():
    profiles = render_profiles(**_case())
    return SeparableHeatmaps(profiles.rows, profiles.cols)


def _dense(dtype=torch.float32):
    return render_heatmaps(**_case(), dtype=dtype).heatmaps


def test_describes_the_dense_tensor_and_holds_only_profiles(heatmaps):
    assert heatmaps.shape == (4, K, *SIZE) and len(heatmaps) == 4 and heatmaps.instances == 2
    # Made from profiles: one table row per profile and an index each, in one flat tensor.
    points = 4 * 2 * K
    assert heatmaps.nbytes == points * (SIZE[0] + SIZE[1] + 2) * 4
    assert heatmaps.packed.untyped_storage().nbytes() == heatmaps.nbytes
    assert heatmaps.rows.shape == (4, 2, K, SIZE[0]) and heatmaps.cols.shape == (4, 2, K, SIZE[1])
    assert isinstance(heatmaps, torch.Tensor) and heatmaps.dim() == 4
    assert "shape=(4, 5, 32, 24)" in repr(heatmaps)


def test_to_returns_the_dense_tensor_on_the_device(heatmaps, device):
    dense = heatmaps.to(device)
    assert isinstance(dense, torch.Tensor) and dense.device == device
    assert torch.equal(dense.cpu(), _dense())
    assert torch.equal(heatmaps.dense(), _dense())


@pytest.mark.parametrize(
    "call",
    [
        lambda h, d: h.to(d, non_blocking=True),
        lambda h, d: h.to(device=d, dtype=torch.float16),
        lambda h, d: h.to(d, torch.bfloat16),
        lambda h, d: h.to(torch.zeros((), dtype=torch.float16, device=d)),
        lambda h, d: h.to(str(d), copy=True),
    ],
    ids=["non_blocking", "keywords", "device_and_dtype", "like_a_tensor", "a_name"],
)
def test_to_takes_tensor_to_forms(heatmaps, device, call):
    dense = call(heatmaps, device)
    assert dense.device == device
    assert torch.equal(dense.cpu(), _dense(dense.dtype))


def test_to_a_dtype_alone_stays_where_the_profiles_are(heatmaps):
    dense = heatmaps.to(torch.float16)
    assert dense.device == heatmaps.device and torch.equal(dense, _dense(torch.float16))


def test_dtype_sets_what_to_and_dense_make(device):
    profiles = render_profiles(**_case())
    heatmaps = SeparableHeatmaps(profiles.rows, profiles.cols, dtype="bfloat16")
    assert torch.equal(heatmaps.to(device).cpu(), _dense(torch.bfloat16))
    assert heatmaps.to(device, dtype=torch.float32).dtype == torch.float32


def test_to_refuses_what_it_cannot_honour(heatmaps):
    with pytest.raises(TypeError, match="layout"):
        heatmaps.to("cpu", layout=torch.sparse_coo)
    with pytest.raises(ValueError, match="memory_format"):
        heatmaps.to("cpu", memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="dtype"):
        heatmaps.to(torch.int32)


@pytest.mark.parametrize("instances", [None, 3])
def test_pickles_as_its_profiles(instances):
    profiles = render_profiles(**_case(instances))
    heatmaps = SeparableHeatmaps(profiles.rows, profiles.cols, dtype=torch.float16)
    payload = pickle.dumps(heatmaps)
    assert len(payload) <= heatmaps.nbytes + HEADER_BYTES
    copy = pickle.loads(payload)
    assert copy.dtype == torch.float16 and torch.equal(copy.rows, heatmaps.rows)
    assert torch.equal(copy.cols, heatmaps.cols)
    assert torch.equal(copy.dense(), heatmaps.dense())


def test_passes_between_processes_through_shared_memory(heatmaps):
    # What a DataLoader worker does with a batch: torch's pickler moves tensor storages into
    # shared memory, so the message itself is a few hundred bytes.
    buffer = io.BytesIO()
    ForkingPickler(buffer, pickle.HIGHEST_PROTOCOL).dump(heatmaps)
    assert len(buffer.getvalue()) <= HEADER_BYTES
    copy = pickle.loads(buffer.getvalue())
    assert torch.equal(copy.dense(), _dense())


def test_a_loader_batch_pins_through_pin_memory(heatmaps, device):
    if device.type != "cuda":
        pytest.skip("pinned memory needs a CUDA device (--device cuda)")
    batch = loader_pin_memory({"heatmaps": heatmaps, "index": torch.arange(4)})
    pinned = batch["heatmaps"]
    assert isinstance(pinned, SeparableHeatmaps) and pinned.is_pinned()
    assert pinned.nbytes == heatmaps.nbytes
    dense = pinned.to(device, non_blocking=True)
    torch.cuda.synchronize(device)
    assert torch.equal(dense.cpu(), _dense())


def test_profiles_to_keeps_them_separable(heatmaps, device):
    moved = heatmaps.profiles_to(device)
    assert isinstance(moved, SeparableHeatmaps) and moved.device == device
    assert torch.equal(moved.dense().cpu(), _dense())


def test_refuses_profiles_that_do_not_match():
    rows = torch.zeros((2, 1, K, 8))
    with pytest.raises(ValueError, match="cols"):
        SeparableHeatmaps(rows, torch.zeros((2, 2, K, 8)))
    with pytest.raises(ValueError, match="rows: expected float32"):
        SeparableHeatmaps(rows.double(), torch.zeros((2, 1, K, 8)))


# --- a tensor wherever a tensor is expected -------------------------------------------------------


def test_is_a_tensor_of_the_dense_shape_for_batch_utilities(heatmaps):
    # What accelerate's find_batch_size and Lightning's batch helpers look at.
    assert isinstance(heatmaps, torch.Tensor)
    assert heatmaps.shape[0] == 4 and heatmaps.size(0) == 4 and heatmaps.dim() == 4
    assert heatmaps.dtype == torch.float32 and heatmaps.device.type == "cpu"


@pytest.mark.parametrize("use", [
    lambda h, dense: torch.nn.functional.mse_loss(dense * 0, h),
    lambda h, dense: h[1],
    lambda h, dense: h.float(),
    lambda h, dense: h.cpu(),
    lambda h, dense: h.sum(dim=(2, 3)),
    lambda h, dense: torch.stack([h, h]),
    lambda h, dense: h - dense,
    lambda h, dense: dense - h,
], ids=["mse_loss", "index", "float", "cpu", "sum", "stack", "minus", "rminus"])
def test_torch_operations_see_the_dense_form(heatmaps, use):
    dense = _dense()
    expected = use(dense, dense)
    got = use(heatmaps, dense)
    assert type(got) is torch.Tensor
    assert torch.equal(got, expected)


def test_numpy_gives_the_dense_array(heatmaps):
    np.testing.assert_array_equal(heatmaps.numpy(), _dense().numpy())


def test_from_table_holds_the_distinct_profiles_only(device):
    profiles = render_profiles(**_case())
    rows = profiles.rows.reshape(-1, SIZE[0])
    cols = profiles.cols.reshape(-1, SIZE[1])
    row_table, row_index = torch.unique(rows, dim=0, return_inverse=True)
    col_table, col_index = torch.unique(cols, dim=0, return_inverse=True)
    lead = profiles.rows.shape[:3]
    heatmaps = SeparableHeatmaps.from_table(row_table, row_index.view(lead), col_table,
                                            col_index.view(lead))
    assert heatmaps.nbytes == (row_table.numel() + col_table.numel() + 2 * rows.shape[0]) * 4
    assert torch.equal(heatmaps.to(device).cpu(), _dense())
    assert torch.equal(heatmaps.rows, profiles.rows) and torch.equal(heatmaps.cols, profiles.cols)


def test_accelerate_and_lightning_batch_utilities_take_it(device):
    """accelerate's find_batch_size and send_to_device, and the apply_to_collection Lightning
    moves batches with (lightning_utilities), on a collated separable batch."""
    accelerate_utils = pytest.importorskip("accelerate.utils")
    apply_func = pytest.importorskip("lightning_utilities.core.apply_func")
    from heatmap_client.torch import HeatmapCollate

    samples = [{"keypoints": np.random.default_rng(index).uniform(0, 40, (17, 2))
                .astype(np.float32)} for index in range(4)]
    batch = HeatmapCollate("local", size=(64, 48), sigma=2.0, output="separable",
                           visibility_key=None)(samples)
    dense = HeatmapCollate("local", size=(64, 48), sigma=2.0, visibility_key=None)(samples)
    assert accelerate_utils.find_batch_size(batch) == 4
    sent = accelerate_utils.send_to_device(batch, device, non_blocking=True)
    moved = apply_func.apply_to_collection(
        batch, torch.Tensor, lambda tensor: tensor.to(device, non_blocking=True))
    for result in (sent, moved):
        assert type(result["heatmaps"]) is torch.Tensor
        assert torch.equal(result["heatmaps"].cpu(), dense["heatmaps"])
