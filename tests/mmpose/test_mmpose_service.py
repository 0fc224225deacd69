"""The batch path through the service: ``DeviceTargetPreprocessor(renderer=HeatmapClient(...))``
against a real server (the CLI in a subprocess, ``tests/live_server.py``).

Heatmaps travel as their 1D profiles and are multiplied out on the training device, SimCC labels
travel as they are; either way the targets must be the local path's bit for bit (mmpose's
float32 keypoints travel unchanged), hence mmpose's own within 1e-6.
"""

from __future__ import annotations

import copy

import pytest
import torch
from mmpose.registry import MODELS

from live_server import running_server
from mmpose_cases import config, data_infos, drop_in, heatmap_targets, run_pipeline

heatmap_client = pytest.importorskip(
    "heatmap_client", reason="heatmap-client is not installed in this venv (make mmpose-venv "
    "installs it)")
pytest.importorskip("heatmap_server", reason="heatmap-server is not installed in this venv")


@pytest.fixture(scope="module")
def server():
    with running_server() as live:
        yield live


@pytest.fixture(scope="module")
def client(server):
    with heatmap_client.HeatmapClient(server.target) as connected:
        yield connected


def targets(preprocessor_cfg: dict, batch: dict, device: torch.device) -> dict:
    preprocessor = MODELS.build(preprocessor_cfg).to(device)
    return heatmap_targets(preprocessor(copy.deepcopy(batch), training=True)["data_samples"])


@pytest.mark.parametrize("case", ["hrnet-w32-coco", "rtmpose-m-coco", "hrnetv2-w18-300w"])
def test_the_service_gives_the_local_targets_bit_for_bit(case, client, device):
    cfg = config(case)
    pipeline, preprocessor_cfg = drop_in(cfg)
    batch = run_pipeline(pipeline, data_infos(case), seed=21)
    local = targets(preprocessor_cfg, batch, device)
    remote = targets(dict(preprocessor_cfg, renderer=client), batch, device)
    assert sorted(remote) == sorted(local)
    for key, samples in local.items():
        for mine, want in zip(remote[key], samples):
            assert mine.device == want.device == device
            assert mine.dtype == want.dtype
            assert torch.equal(mine, want), key


def test_a_config_names_the_client_through_the_registry(server, device):
    """The recipe of docs/mmpose.md: register HeatmapClient once (a custom import of the
    user's), then ``renderer=dict(type='HeatmapClient', target=...)`` in the config."""
    MODELS.register_module("HeatmapClient", module=heatmap_client.HeatmapClient, force=True)
    cfg = config("hrnet-w32-coco")
    pipeline, preprocessor_cfg = drop_in(
        cfg, renderer=dict(type="HeatmapClient", target=server.target))
    preprocessor = MODELS.build(preprocessor_cfg).to(device)
    assert isinstance(preprocessor.renderer, heatmap_client.HeatmapClient)
    # mmengine deep-copies models (EMAHook): both copies ask the one client.
    assert copy.deepcopy(preprocessor).renderer is preprocessor.renderer
    batch = run_pipeline(pipeline, data_infos("hrnet-w32-coco")[:4], seed=1)
    done = preprocessor(batch, training=True)["data_samples"]
    local = targets(drop_in(cfg)[1], run_pipeline(pipeline, data_infos("hrnet-w32-coco")[:4],
                                                   seed=1), device)
    for mine, want in zip(heatmap_targets(done)["heatmaps"], local["heatmaps"]):
        assert torch.equal(mine, want)
