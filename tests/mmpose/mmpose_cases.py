"""Real inputs for the mmpose tests: mmpose's own configs, datasets and pipelines.

The configs are the ones mmpose 1.3.2 ships (``mmpose/.mim/configs``); the annotations are real
COCO, COCO-WholeBody and 300-W people (``tests/data``, ``tests/mmpose/data``), parsed by mmpose's
own dataset classes; the pipelines are the configs' train pipelines, run by mmpose's transforms.
Only the pixels are not real: every transform that reads or writes nothing but pixels is left
out (no image files but one ship with the tests, and targets never depend on pixels), and a
blank image of the annotated size stands in for ``LoadImage``.
"""

from __future__ import annotations

import copy
import functools
import json
import random
from pathlib import Path

import mmpose
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmpose.datasets import CocoDataset, CocoWholeBodyDataset, Face300WDataset

TESTS = Path(__file__).resolve().parents[1]
CONFIGS = Path(mmpose.__file__).resolve().parent / ".mim" / "configs"

# name -> (config under mmpose's configs, annotation file, mmpose's dataset class)
_COCO = (TESTS / "data/coco/test_coco.json", CocoDataset)
_WHOLEBODY = (TESTS / "mmpose/data/test_coco_wholebody.json", CocoWholeBodyDataset)
_300W = (TESTS / "data/300w/test_300w.json", Face300WDataset)
CASES = {
    "hrnet-w32-coco": ("body_2d_keypoint/topdown_heatmap/coco/"
                       "td-hm_hrnet-w32_8xb64-210e_coco-256x192.py", *_COCO),
    "rtmpose-m-coco": ("body_2d_keypoint/rtmpose/coco/rtmpose-m_8xb256-420e_coco-256x192.py",
                       *_COCO),
    "hrnet-w32-dark-wholebody": ("wholebody_2d_keypoint/topdown_heatmap/coco-wholebody/"
                                 "td-hm_hrnet-w32_dark-8xb64-210e_coco-wholebody-256x192.py",
                                 *_WHOLEBODY),
    "cspnext-m-udp-wholebody": ("wholebody_2d_keypoint/topdown_heatmap/coco-wholebody/"
                                "cspnext-m_udp_8xb64-210e_coco-wholebody-256x192.py", *_WHOLEBODY),
    "rtmpose-m-wholebody": ("wholebody_2d_keypoint/rtmpose/coco-wholebody/"
                            "rtmpose-m_8xb64-270e_coco-wholebody-256x192.py", *_WHOLEBODY),
    "hrnetv2-w18-300w": ("face_2d_keypoint/topdown_heatmap/300w/"
                         "td-hm_hrnetv2-w18_8xb64-60e_300w-256x256.py", *_300W),
}

# Transforms that touch nothing but pixels (and LoadImage, which reads them from disk).
PIXEL_ONLY = {"LoadImage", "mmdet.YOLOXHSVRandomAug", "YOLOXHSVRandomAug", "Albumentation",
              "PhotometricDistortion"}
# Everything else a train pipeline may hold here; anything new fails loudly instead of being
# silently kept or dropped.
GEOMETRY = {"GetBBoxCenterScale", "RandomFlip", "RandomHalfBody", "RandomBBoxTransform",
            "TopdownAffine", "GenerateTarget", "PackPoseInputs"}


@functools.cache
def config(name: str) -> Config:
    """mmpose's own config of case ``name``."""
    return Config.fromfile(str(CONFIGS / CASES[name][0]))


def train_pipeline(cfg: Config) -> list[dict]:
    """The config's train pipeline without its pixel-only transforms."""
    kept = [copy.deepcopy(step) for step in cfg.train_pipeline if step["type"] not in PIXEL_ONLY]
    unknown = {step["type"] for step in kept} - GEOMETRY
    if unknown:
        raise AssertionError(f"unexpected transforms {unknown}: sort them into PIXEL_ONLY or "
                             "GEOMETRY")
    return kept


def drop_in(cfg: Config, renderer: dict | None = None) -> tuple[list[dict], dict]:
    """The config diff of docs/mmpose.md: the train pipeline without ``GenerateTarget``, packing
    the transformed keypoints, and the data preprocessor that renders on the device.

    Returns ``(train pipeline, data_preprocessor config)``.
    """
    pipeline = []
    for step in train_pipeline(cfg):
        if step["type"] == "GenerateTarget":
            continue
        if step["type"] == "PackPoseInputs":
            step = dict(step, pack_transformed=True)
        pipeline.append(step)
    preprocessor = dict(cfg.model.data_preprocessor, type="DeviceTargetPreprocessor",
                        encoder=copy.deepcopy(cfg.codec))
    if renderer is not None:
        preprocessor["renderer"] = renderer
    return pipeline, preprocessor


def fast_codec(pipeline: list[dict]) -> list[dict]:
    """The pipeline with ``GenerateTarget``'s codec renamed to its drop-in (``Fast*``)."""
    pipeline = copy.deepcopy(pipeline)
    for step in pipeline:
        if step["type"] == "GenerateTarget":
            step["encoder"]["type"] = "Fast" + step["encoder"]["type"]
    return pipeline


@functools.cache
def _image_sizes(annotations: Path) -> dict[int, tuple[int, int]]:
    images = json.loads(annotations.read_text())["images"]
    return {image["id"]: (image["height"], image["width"]) for image in images}


@functools.cache
def _dataset(name: str):
    _, annotations, dataset_type = CASES[name]
    # The metainfo file by its installed path (mmpose looks in its source tree's configs/ first,
    # then warns and takes the installed one).
    metainfo = dict(from_file=str(CONFIGS.parent / dataset_type.METAINFO["from_file"]))
    return dataset_type(ann_file=str(annotations), data_root="", data_mode="topdown",
                        metainfo=metainfo, pipeline=[], test_mode=False)


def data_infos(name: str) -> list[dict]:
    """Every annotated instance of the case's dataset, as mmpose's dataset gives it to the
    pipeline (keypoints, visibility clipped to 1, box, flip indices, joint weights), with a
    blank image of the annotated size."""
    dataset = _dataset(name)
    sizes = _image_sizes(CASES[name][1])
    infos = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        height, width = sizes[info["img_id"]]
        info["img"] = np.zeros((height, width, 3), dtype=np.uint8)
        info["img_shape"] = info["ori_shape"] = (height, width)
        infos.append(info)
    return infos


def run_pipeline(pipeline: list[dict], infos: list[dict], seed: int = 0) -> dict:
    """Each sample through ``pipeline`` with its own seed (mmpose's random transforms draw from
    numpy's and Python's global generators), collated as mmpose collates: ``pseudo_collate``."""
    compose = Compose(pipeline)
    packed = []
    for index, info in enumerate(infos):
        np.random.seed(seed + index)
        random.seed(seed + index)
        packed.append(compose(copy.deepcopy(info)))
    return pseudo_collate(packed)


def heatmap_targets(samples) -> dict[str, list[torch.Tensor]]:
    """Every target field mmpose's heads read, per sample, from preprocessed data samples."""
    found: dict[str, list[torch.Tensor]] = {}
    for sample in samples:
        fields = getattr(sample, "gt_fields", None)
        for key in ("heatmaps",):
            if fields is not None and key in fields:
                found.setdefault(key, []).append(fields.get(key))
        for key in sample.gt_instance_labels.keys():
            found.setdefault(key, []).append(sample.gt_instance_labels.get(key))
    return found
