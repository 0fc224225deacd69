"""What bench/loader.py's DataLoader workers run: poses drawn from the bundled COCO persons, the
Dataset over them, and one collate function per loader mode."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from heatmap_client import HeatmapClient
from heatmap_client.torch import HeatmapCollate

from reference_loops import mmpose_loop
from scenarios import Scenario

ROOT = Path(__file__).resolve().parents[1]
ANNOTATIONS = ROOT / "tests" / "data" / "coco" / "test_coco.json"
POOL = 256  # distinct samples per scenario; the dataset cycles through them


# --- the data -------------------------------------------------------------------------------------


def coco_persons(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The annotated persons: keypoints ``(P, 17, 2)``, visibility ``(P, 17)``, boxes ``(P, 4)``."""
    coco = json.loads(path.read_text())
    persons = [a for a in coco["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    triplets = np.asarray([p["keypoints"] for p in persons], np.float32).reshape(-1, 17, 3)
    boxes = np.asarray([p["bbox"] for p in persons], np.float32)
    return triplets[..., :2], (triplets[..., 2] > 0).astype(np.float32), boxes


def synthesize(sc: Scenario, path: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``POOL`` samples of ``(K, 2)`` heatmap-pixel keypoints and ``(K,)`` visibility from the real
    COCO persons: each person's box scaled (0.8-1.2x) and shifted into the heatmap; the first 17
    keypoints are the real ones, the others interpolate between a fixed pair of them."""
    keypoints, visibility, boxes = coco_persons(path)
    rng = np.random.default_rng([seed, sc.keypoints])
    extra = sc.keypoints - 17
    first, second = rng.integers(0, 17, size=(2, max(extra, 0)))
    along = rng.uniform(0.2, 0.8, size=max(extra, 0)).astype(np.float32)
    between = keypoints[:, first] * (1 - along[:, None]) + keypoints[:, second] * along[:, None]
    points = np.concatenate([keypoints, between], axis=1)[:, : sc.keypoints]
    seen = np.concatenate([visibility, visibility[:, first] * visibility[:, second]], axis=1)
    seen = seen[:, : sc.keypoints]
    pick = rng.integers(0, len(points), size=POOL)
    extent = np.array([sc.width, sc.height], np.float32)
    origin, side = boxes[pick, None, :2], boxes[pick, None, 2:]
    scale = rng.uniform(0.8, 1.2, size=(POOL, 1, 1)).astype(np.float32)
    shift = rng.uniform(-0.1, 0.1, size=(POOL, 1, 2)).astype(np.float32) * extent
    fitted = (points[pick] - origin) / side.max(axis=-1, keepdims=True) * extent.min() * scale
    centred = fitted + (extent - extent.min() * scale) / 2 + shift
    return centred.astype(np.float32), seen[pick]


class PoseSamples(Dataset):
    """``length`` samples cycling through a synthesized pool; ``__getitem__`` is a slice."""

    def __init__(self, keypoints: np.ndarray, visibility: np.ndarray, length: int):
        self.keypoints, self.visibility, self.length = keypoints, visibility, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        item = index % len(self.keypoints)
        return {"keypoints": self.keypoints[item], "visibility": self.visibility[item]}


# --- the collate functions, as each mode's workers run them ---------------------------------------


class MmposeLoopCollate:
    """Collates, then renders each sample with the mmpose-style loop (as ``__getitem__`` would)."""

    def __init__(self, sc: Scenario):
        self.sc = sc

    def __call__(self, samples: list[dict]) -> dict:
        batch = default_collate(samples)
        heatmaps, weights = mmpose_loop(batch["keypoints"].numpy(), self.sc.size, self.sc.sigma)
        batch["heatmaps"] = torch.from_numpy(np.stack(heatmaps))
        batch["heatmap_weights"] = torch.from_numpy(weights)
        return batch


class StampedCollate:
    """Adds the worker's pid and process CPU seconds when it hands the batch over."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, samples: list[dict]) -> dict:
        batch = self.collate(samples)
        batch["worker_pid"], batch["worker_cpu_s"] = os.getpid(), time.process_time()
        return batch


class NoTargets:
    """``default_collate`` and all-zero stand-ins the step can move: the DataLoader's floor."""

    def __init__(self, sc: Scenario):
        self.targets = torch.zeros((1, 1)), torch.ones(sc.batch, sc.keypoints)

    def __call__(self, samples: list[dict]) -> dict:
        batch = default_collate(samples)
        batch["heatmaps"], batch["heatmap_weights"] = self.targets
        return batch


def make_collate(mode: str, sc: Scenario, source: HeatmapClient | str):
    if mode == "no_targets":
        return NoTargets(sc)
    if mode == "mmpose_loop":
        return MmposeLoopCollate(sc)
    options = {"size": sc.size, "sigma": sc.sigma, "method": sc.method, "coords": sc.coords}
    if mode == "local_dense":
        return HeatmapCollate("local", **options)
    if mode == "local_sep_dev":
        return HeatmapCollate("local", output="separable", **options)
    if mode == "service_dense":
        return HeatmapCollate(source, **options)
    if mode == "service_sep_cli":
        return HeatmapCollate(source, codec="separable", **options)
    return HeatmapCollate(source, output="separable", **options)

