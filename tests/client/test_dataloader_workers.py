"""A real DataLoader with worker processes, forked and spawned, rendering through the service.

The client is made and used in the parent first, so the forked workers inherit an open channel
and gRPC's threads: each must open its own channel and none may hang (DataLoader ``timeout`` and a
pytest timeout bound every test). With ``output="separable"`` the batches cross from the workers
as profiles and become dense on ``.to(device)``, bit for bit the local renderer's.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, Dataset  # noqa: E402

from heatmap_client import HeatmapClient  # noqa: E402
from heatmap_client.torch import HeatmapCollate, SeparableHeatmaps  # noqa: E402
from heatmap_render import render_heatmaps  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SIZE = (64, 48)
INPUT_SIZE = (256, 192)


class RandomPoses(Dataset):
    """Deterministic per index, so every batch can be checked; records which process made it."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(index)
        return {
            "keypoints": rng.uniform(-10, 200, size=(17, 2)).astype(np.float32),
            "visibility": (rng.random(17) > 0.2).astype(np.float32),
            "index": index,
            "pid": os.getpid(),
        }


@pytest.fixture(scope="module")
def client(live_server):
    with HeatmapClient(live_server.target, timeout=20) as client:
        yield client


def _used_in_parent(client: HeatmapClient) -> None:
    assert client.health() == "SERVING"
    client.render(np.zeros((1, 17, 2), np.float32), size=SIZE, sigma=2.0)


def _check(batch: dict) -> None:
    local = render_heatmaps(batch["keypoints"], SIZE, 2.0, coords="pixel", input_size=INPUT_SIZE,
                            visibility=batch["visibility"])
    assert batch["heatmaps"].shape == (len(batch["index"]), 17, *SIZE)
    np.testing.assert_array_equal(batch["heatmaps"].numpy(), local.heatmaps.numpy())
    np.testing.assert_array_equal(batch["heatmap_weights"].numpy(), local.weights.numpy())


@pytest.mark.timeout(90)
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_render_every_batch_like_the_local_renderer(client, context):
    _used_in_parent(client)
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0, coords="pixel", input_size=INPUT_SIZE)
    loader = DataLoader(RandomPoses(), batch_size=8, num_workers=2, collate_fn=collate,
                        multiprocessing_context=context, timeout=30)
    seen: list[int] = []
    pids: set[int] = set()
    for batch in loader:
        _check(batch)
        seen += batch["index"].tolist()
        pids.update(batch["pid"].tolist())
    assert seen == list(range(40))
    assert len(pids) == 2 and os.getpid() not in pids
    _used_in_parent(client)  # and the parent's channel still works


@pytest.mark.timeout(60)
def test_persistent_forked_workers_keep_their_channels_across_epochs(client):
    _used_in_parent(client)
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0, coords="pixel", input_size=INPUT_SIZE)
    loader = DataLoader(RandomPoses(), batch_size=10, num_workers=2, collate_fn=collate,
                        multiprocessing_context="fork", persistent_workers=True, timeout=30)
    for _ in range(2):
        for batch in loader:
            _check(batch)


@pytest.mark.timeout(60)
def test_prefetch_in_the_parent_with_forked_workers(client):
    _used_in_parent(client)
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0, coords="pixel", input_size=INPUT_SIZE)
    loader = DataLoader(RandomPoses(), batch_size=8, num_workers=2, collate_fn=collate.collate,
                        multiprocessing_context="fork", timeout=30)
    seen: list[int] = []
    for batch in collate.prefetch(loader, depth=2):
        _check(batch)
        seen += batch["index"].tolist()
    assert seen == list(range(40))


@pytest.mark.timeout(60)
def test_forked_worker_fails_fast_when_fork_support_is_switched_off(client, monkeypatch):
    # GRPC_ENABLE_FORK_SUPPORT=false makes a forked child's first call hang forever (deadline or
    # not); the client refuses with an explanation instead. os.environ is inherited by the fork.
    _used_in_parent(client)
    monkeypatch.setenv("GRPC_ENABLE_FORK_SUPPORT", "false")
    collate = HeatmapCollate(client, size=SIZE, sigma=2.0, coords="pixel", input_size=INPUT_SIZE)
    loader = DataLoader(RandomPoses(), batch_size=8, num_workers=1, collate_fn=collate,
                        multiprocessing_context="fork", timeout=30)
    with pytest.raises(RuntimeError, match="GRPC_ENABLE_FORK_SUPPORT=false"):
        next(iter(loader))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["service", "local"])
def test_example_loader_runs(live_server, mode):
    # The example bundles its annotations (the server image has no tests/); they are the test
    # data's, which the local run reads.
    flags = (["--local", "--annotations", str(ROOT / "tests" / "data" / "coco" / "test_coco.json")]
             if mode == "local" else ["--target", live_server.target])
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "loader.py"), *flags, "--batches", "6",
         "--batch-size", "16", "--num-workers", "2"],
        capture_output=True, text=True, timeout=100,
    )
    assert out.returncode == 0, out.stderr
    assert "samples/s" in out.stdout
    # gRPC in a forked worker that touched its parent's channel logs "... created pre fork": a
    # worker that opens its own says nothing.
    assert not [line for line in out.stderr.splitlines() if "fork" in line.lower()], out.stderr


# Every (method, instances, visibility) case is one batch of the separable loader.
SEPARABLE_CASES = [(method, instances, visible) for method in ("msra", "udp", "dark")
                   for instances in (None, 3) for visible in (False, True)]
PER_CASE = 6
# What pickling a SeparableHeatmaps adds to its profiles' bytes: class and tensor metadata.
HEADER_BYTES = 2048


class CasePoses(Dataset):
    """``PER_CASE`` samples per case, with (N, K, 2) keypoints for instances and a visibility only
    for the cases that have one (a missing key is no visibility)."""

    def __len__(self) -> int:
        return len(SEPARABLE_CASES) * PER_CASE

    def __getitem__(self, index: int) -> dict:
        case, _ = divmod(index, PER_CASE)
        _, instances, visible = SEPARABLE_CASES[case]
        rng = np.random.default_rng(index)
        shape = (17,) if instances is None else (instances, 17)
        sample = {"keypoints": rng.uniform(-10, 200, size=(*shape, 2)).astype(np.float32),
                  "case": case, "index": index, "pid": os.getpid()}
        if visible:
            sample["visibility"] = (rng.random(shape) > 0.2).astype(np.float32)
        return sample


class CollateByCase:
    """One separable ``HeatmapCollate`` per case; a batch holds one case's samples."""

    def __init__(self, source):
        self.collates = [
            HeatmapCollate(source, size=SIZE, sigma=2.0, method=method, coords="pixel",
                           input_size=INPUT_SIZE, output="separable")
            for method, _, _ in SEPARABLE_CASES
        ]

    def __call__(self, samples: list[dict]) -> dict:
        return self.collates[samples[0]["case"]](samples)


def _check_separable(batch: dict, device) -> None:
    method, instances, visible = SEPARABLE_CASES[int(batch["case"][0])]
    heatmaps = batch["heatmaps"]
    assert isinstance(heatmaps, SeparableHeatmaps)
    points = PER_CASE * (instances or 1) * 17
    # At most the profiles and an index each; msra's repeat, so its tables are smaller.
    assert heatmaps.nbytes <= points * (SIZE[0] + SIZE[1] + 2) * 4
    if method == "msra":
        assert heatmaps.nbytes < points * (SIZE[0] + SIZE[1]) * 4
    # The targets, their weights and the keypoints and visibility they were made from share one
    # storage: the targets add no segment to what the batch moved between processes anyway.
    storage = heatmaps.packed.untyped_storage()
    shared = [batch[key] for key in ("heatmap_weights", "keypoints", "visibility") if key in batch]
    assert all(tensor.untyped_storage().data_ptr() == storage.data_ptr() for tensor in shared)
    assert storage.nbytes() == heatmaps.nbytes + sum(tensor.nbytes for tensor in shared)
    assert len(pickle.dumps(heatmaps)) <= storage.nbytes() + HEADER_BYTES
    local = render_heatmaps(batch["keypoints"], SIZE, 2.0, method=method, coords="pixel",
                            input_size=INPUT_SIZE, visibility=batch.get("visibility"))
    assert ("visibility" in batch) == visible
    dense = heatmaps.to(device, non_blocking=True)
    assert dense.device == device and dense.shape == (PER_CASE, 17, *SIZE)
    assert torch.equal(dense, local.heatmaps.to(device))
    assert torch.equal(batch["heatmap_weights"], local.weights)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("source", ["service", "local"])
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_separable_batches_expand_on_the_device_like_the_local_renderer(
    client, device, context, source
):
    _used_in_parent(client)
    loader = DataLoader(CasePoses(), batch_size=PER_CASE, num_workers=2,
                        collate_fn=CollateByCase(client if source == "service" else "local"),
                        multiprocessing_context=context, timeout=60,
                        pin_memory=device.type == "cuda")
    cases, pids = [], set()
    for batch in loader:
        _check_separable(batch, device)
        if device.type == "cuda":
            assert batch["heatmaps"].is_pinned()
        cases.append(int(batch["case"][0]))
        pids.update(batch["pid"].tolist())
    assert cases == list(range(len(SEPARABLE_CASES)))
    assert len(pids) == 2 and os.getpid() not in pids
