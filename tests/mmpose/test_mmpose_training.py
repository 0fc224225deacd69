"""A few training steps of a tiny ``TopdownPoseEstimator``, three ways: mmpose's own pipeline
(``GenerateTarget`` with mmpose's codec), the drop-in codec in the same place (``Fast*``), and
the pipeline without ``GenerateTarget`` plus ``DeviceTargetPreprocessor``.

The model is mmpose's (``CSPNeXt`` backbone, ``HeatmapHead`` or RTMPose's ``RTMCCHead``, the
config's own loss and codec), shrunk to a few thousand channels' worth so that it trains on a
CPU in seconds; the same seed initialises all three. Since the targets agree within 1e-6, the
losses and the trained weights must agree to float32 round-off, step after step.
"""

from __future__ import annotations

import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmpose.registry import MODELS

from mmpose_cases import config, data_infos, drop_in, fast_codec, run_pipeline, train_pipeline

STEPS = 3
BATCH = 4


def tiny_model(cfg, data_preprocessor: dict) -> dict:
    """The config's model with a CSPNeXt of 128 output channels and a head to match."""
    head = copy.deepcopy(cfg.model.head)
    if head["type"] == "RTMCCHead":
        head.update(in_channels=128, gau_cfg=dict(head["gau_cfg"], hidden_dims=32, s=16))
    else:
        head = dict(type="HeatmapHead", in_channels=128, out_channels=head["out_channels"],
                    deconv_out_channels=(16, 16, 16), deconv_kernel_sizes=(4, 4, 4),
                    loss=head["loss"], decoder=copy.deepcopy(cfg.codec))
    return dict(
        type="TopdownPoseEstimator",
        data_preprocessor=copy.deepcopy(data_preprocessor),
        backbone=dict(type="CSPNeXt", arch="P5", expand_ratio=0.5, deepen_factor=0.167,
                      widen_factor=0.125, out_indices=(4,), channel_attention=True,
                      act_cfg=dict(type="SiLU")),
        head=head,
        test_cfg=dict(flip_test=False),
    )


def train(cfg, pipeline: list[dict], data_preprocessor: dict, infos, device):
    """``STEPS`` SGD steps on batches of ``BATCH`` people; the losses of each step and the
    trained weights."""
    torch.manual_seed(0)
    model = MODELS.build(tiny_model(cfg, data_preprocessor)).to(device)
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.005))
    losses = []
    for step in range(STEPS):
        people = infos[(step * BATCH) % len(infos):][:BATCH]
        batch = run_pipeline(pipeline, people, seed=100 * step)
        log = model.train_step(batch, optim)
        losses.append({name: float(value.detach()) for name, value in log.items()})
    return losses, {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("case", ["hrnet-w32-coco", "rtmpose-m-coco", "cspnext-m-udp-wholebody"])
def test_three_ways_train_alike(case, device):
    cfg = config(case)
    infos = data_infos(case)
    mmpose_pipeline = train_pipeline(cfg)
    theirs, their_weights = train(cfg, mmpose_pipeline, cfg.model.data_preprocessor, infos,
                                  device)
    fast, fast_weights = train(cfg, fast_codec(mmpose_pipeline), cfg.model.data_preprocessor,
                               infos, device)
    pipeline, preprocessor = drop_in(cfg)
    ours, our_weights = train(cfg, pipeline, preprocessor, infos, device)
    assert theirs[0]["loss_kpt"] > 0
    for way, (losses, weights) in {"fast codec": (fast, fast_weights),
                                   "device preprocessor": (ours, our_weights)}.items():
        for step, (got, want) in enumerate(zip(losses, theirs)):
            assert got.keys() == want.keys(), way
            for name in want:
                assert got[name] == pytest.approx(want[name], rel=1e-4, abs=1e-7), \
                    f"{way}, step {step}: {name}"
        for name, value in their_weights.items():
            torch.testing.assert_close(weights[name], value, rtol=1e-3, atol=1e-5,
                                       msg=f"{way}: {name}")
