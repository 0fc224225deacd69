"""The batch path against mmpose's own: a real config's train pipeline with ``GenerateTarget``
and ``PoseDataPreprocessor``, versus the same pipeline without it and ``DeviceTargetPreprocessor``.

Both run mmpose's transforms on the same real people with the same seeds, are collated by
``pseudo_collate`` and preprocessed for training; every target field mmpose's heads read must
then be there on both sides, with the same shapes and dtypes, on the training device (``--device``),
weights bit for bit and values within 1e-6 (zeros exactly where mmpose's are, for the windowed
methods).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from mmpose.registry import MODELS

from heatmap_render.mmpose import DeviceTargetPreprocessor

from mmpose_cases import (
    CASES,
    config,
    data_infos,
    drop_in,
    heatmap_targets,
    run_pipeline,
    train_pipeline,
)

ATOL = 1e-6
WINDOWED = {"MSRAHeatmap", "UDPHeatmap"}  # unbiased=True (DARK) excepted, below


def is_windowed(codec: dict) -> bool:
    return codec["type"] in WINDOWED and not codec.get("unbiased", False)


def preprocess(preprocessor_cfg: dict, batch: dict, device: torch.device,
               training: bool = True) -> dict:
    preprocessor = MODELS.build(copy.deepcopy(preprocessor_cfg)).to(device)
    return preprocessor(batch, training=training)


def assert_same_targets(ours: dict, theirs: dict, device: torch.device, windowed: bool) -> None:
    torch.testing.assert_close(ours["inputs"], theirs["inputs"], rtol=0, atol=0)
    got, expected = heatmap_targets(ours["data_samples"]), heatmap_targets(theirs["data_samples"])
    assert sorted(got) == sorted(expected)
    for key, samples in expected.items():
        for index, (mine, want) in enumerate(zip(got[key], samples)):
            where = f"{key} of sample {index}"
            assert mine.device == device == want.device, where
            assert (mine.shape, mine.dtype) == (want.shape, want.dtype), where
            if key in ("keypoint_weights", "keypoints_visible_weights"):
                torch.testing.assert_close(mine, want, rtol=0, atol=0, msg=where)
                continue
            torch.testing.assert_close(mine, want, rtol=0, atol=ATOL, msg=where)
            if windowed:
                assert torch.equal(mine != 0, want != 0), f"{where}: support"


@pytest.mark.parametrize("case", sorted(CASES))
def test_dropping_generate_target_gives_the_same_targets(case, device):
    cfg = config(case)
    infos = data_infos(case)
    theirs = preprocess(cfg.model.data_preprocessor,
                        run_pipeline(train_pipeline(cfg), infos, seed=11), device)
    pipeline, preprocessor_cfg = drop_in(cfg)
    assert not any(step["type"] == "GenerateTarget" for step in pipeline)
    ours = preprocess(preprocessor_cfg, run_pipeline(pipeline, infos, seed=11), device)
    assert_same_targets(ours, theirs, device, is_windowed(cfg.codec))


def test_dataset_keypoint_weights(device):
    """``use_dataset_keypoint_weights``: COCO's joint weights (1.2 for elbows, 1.5 for wrists,
    knees and ankles) multiply the weights on both paths."""
    cfg = config("hrnet-w32-coco")
    infos = data_infos("hrnet-w32-coco")
    meta_keys = ("id", "img_id", "img_path", "category_id", "ori_shape", "img_shape",
                 "input_size", "flip", "flip_direction", "flip_indices",
                 "dataset_keypoint_weights")
    pipeline = copy.deepcopy(train_pipeline(cfg))
    for step in pipeline:
        if step["type"] == "GenerateTarget":
            step["use_dataset_keypoint_weights"] = True
    theirs = preprocess(cfg.model.data_preprocessor, run_pipeline(pipeline, infos, seed=5),
                        device)
    ours_pipeline, preprocessor_cfg = drop_in(cfg)
    ours_pipeline[-1]["meta_keys"] = meta_keys
    preprocessor_cfg["use_dataset_keypoint_weights"] = True
    ours = preprocess(preprocessor_cfg, run_pipeline(ours_pipeline, infos, seed=5), device)
    assert_same_targets(ours, theirs, device, windowed=True)
    weights = torch.cat([sample.gt_instance_labels.keypoint_weights
                         for sample in ours["data_samples"]])
    assert {1.2, 1.5} <= {round(value, 4) for value in weights.unique().tolist()}


def test_two_column_visibility_is_split_as_generate_target_splits_it(device):
    """``keypoints_visible`` ``(N, K, 2)``: visibility and a separate visibility weight, which
    ``GenerateTarget`` splits into ``keypoints_visible_weights``."""
    codec = config("hrnet-w32-coco").codec
    infos = data_infos("hrnet-w32-coco")
    rng = np.random.default_rng(0)
    for info in infos:
        extra = rng.uniform(0.5, 1.0, info["keypoints_visible"].shape).astype(np.float32)
        info["keypoints_visible"] = np.stack([info["keypoints_visible"], extra], axis=-1)
    head = [dict(type="GetBBoxCenterScale"), dict(type="TopdownAffine", input_size=(192, 256))]
    theirs = preprocess(
        dict(type="PoseDataPreprocessor"),
        run_pipeline(head + [dict(type="GenerateTarget", encoder=codec),
                             dict(type="PackPoseInputs")], infos), device)
    ours = preprocess(
        dict(type="DeviceTargetPreprocessor", encoder=codec),
        run_pipeline(head + [dict(type="PackPoseInputs", pack_transformed=True)], infos), device)
    assert_same_targets(ours, theirs, device, windowed=True)
    for mine, want in zip(ours["data_samples"], theirs["data_samples"]):
        np.testing.assert_array_equal(mine.gt_instances.keypoints_visible,
                                      want.gt_instances.keypoints_visible)


def test_validation_batches_pass_through_and_training_needs_the_keypoints(device):
    cfg = config("hrnet-w32-coco")
    infos = data_infos("hrnet-w32-coco")[:3]
    _, preprocessor_cfg = drop_in(cfg)
    validation = run_pipeline(cfg.val_pipeline[1:], infos)  # PackPoseInputs() packs no targets
    done = preprocess(preprocessor_cfg, validation, device, training=False)
    assert all(not hasattr(sample, "gt_fields") for sample in done["data_samples"])
    with pytest.raises(ValueError, match="^transformed_keypoints: .*pack_transformed=True"):
        preprocess(preprocessor_cfg, run_pipeline(cfg.val_pipeline[1:], infos), device)


@pytest.mark.parametrize("encoder, match", [
    ([dict(type="MSRAHeatmap", input_size=(192, 256), heatmap_size=(48, 64), sigma=2)] * 2,
     "one codec config"),
    (dict(type="UDPHeatmap", input_size=(192, 256), heatmap_size=(48, 64),
          heatmap_type="combined"), "heatmap_type='gaussian'"),
    (dict(type="RegressionLabel", input_size=(192, 256)), "not rendered here"),
])
def test_codecs_it_does_not_render_are_refused_by_name(encoder, match):
    with pytest.raises(ValueError, match=f"^encoder: .*{match}") as error:
        DeviceTargetPreprocessor(encoder=encoder)
    assert error.value.argument == "encoder"


def test_the_drop_in_codecs_are_accepted_as_encoders(device):
    cfg = config("rtmpose-m-coco")
    infos = data_infos("rtmpose-m-coco")
    pipeline, preprocessor_cfg = drop_in(cfg)
    preprocessor_cfg["encoder"] = dict(preprocessor_cfg["encoder"], type="FastSimCCLabel")
    ours = preprocess(preprocessor_cfg, run_pipeline(pipeline, infos), device)
    theirs = preprocess(cfg.model.data_preprocessor,
                        run_pipeline(train_pipeline(cfg), infos), device)
    assert_same_targets(ours, theirs, device, windowed=False)
