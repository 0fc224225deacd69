"""A data loader that trains nothing: COCO person crops, augmented, with heatmap targets.

A top-down pose loader as HRNet or mmpose would build it: every person box becomes a 256x192 crop
(box centre and scale at aspect 192/256, padded 1.25x), randomly scaled, rotated and flipped; the
keypoints follow the crop's affine transform, and the 64x48 heatmap targets are rendered for the
whole batch in one call by ``HeatmapCollate`` in the DataLoader's workers. Images are not decoded:
a real loader would warp each image with the sample's ``affine`` matrix; the targets are the same.

    heatmap-server serve --port 50051 &
    python examples/loader.py --target 127.0.0.1:50051     # through the service
    python examples/loader.py --local                      # rendered in the workers instead
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from heatmap_client import HeatmapClient
from heatmap_client.torch import HeatmapCollate

try:
    from tqdm import tqdm
except ImportError:  # the progress bar is optional (the server image has no tqdm)
    tqdm = None

ANNOTATIONS = Path(__file__).resolve().parent / "data" / "coco_person_keypoints.json"
INPUT_SIZE = (256, 192)  # (H, W) of the network input
HEATMAP_SIZE = (64, 48)
# COCO's left/right keypoint pairs, swapped by a horizontal flip.
FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]


class CocoPersonKeypoints(Dataset):
    """Person instances of a COCO keypoints file, one augmented crop per item.

    Items beyond the number of persons repeat them with fresh augmentation (``length`` sets the
    epoch). The augmentation is seeded by ``(seed, index)``, so runs and worker counts agree.
    """

    def __init__(self, path: str | Path, *, length: int | None = None, augment: bool = True,
                 seed: int = 0):
        coco = json.loads(Path(path).read_text())
        self.widths = {image["id"]: image["width"] for image in coco["images"]}
        self.persons = [
            annotation for annotation in coco["annotations"]
            if annotation["num_keypoints"] > 0 and not annotation["iscrowd"]
        ]
        if not self.persons:
            raise ValueError(f"{path}: no person with keypoints")
        self.length = len(self.persons) if length is None else length
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        person = self.persons[index % len(self.persons)]
        triplets = np.asarray(person["keypoints"], dtype=np.float32).reshape(-1, 3)
        keypoints, visibility = triplets[:, :2].copy(), (triplets[:, 2] > 0).astype(np.float32)
        center, size = _box_to_center_size(person["bbox"])
        scale, rotation, flipped = 1.0, 0.0, False
        if self.augment:
            rng = np.random.default_rng((self.seed, index))
            scale = float(np.clip(rng.normal() * 0.25 + 1, 0.75, 1.25))
            rotation = float(np.clip(rng.normal() * 40, -80, 80)) if rng.random() < 0.6 else 0.0
            flipped = bool(rng.random() < 0.5)
        if flipped:
            width = self.widths[person["image_id"]]
            keypoints[:, 0] = width - 1 - keypoints[:, 0]
            center[0] = width - 1 - center[0]
            for left, right in FLIP_PAIRS:
                keypoints[[left, right]] = keypoints[[right, left]]
                visibility[[left, right]] = visibility[[right, left]]
        affine = _crop_affine(center, size * scale, rotation)
        keypoints = keypoints @ affine[:, :2].T + affine[:, 2]
        return {
            "keypoints": keypoints.astype(np.float32),  # (17, 2) x, y in input pixels
            "visibility": visibility,  # (17,) 1 labelled, 0 not
            "affine": affine,  # (2, 3) image -> input crop
            "image_id": person["image_id"],
            "flipped": flipped,
        }


def _box_to_center_size(bbox: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """A COCO box [x, y, w, h] -> centre and the padded size at the input's aspect ratio."""
    x, y, w, h = bbox
    aspect = INPUT_SIZE[1] / INPUT_SIZE[0]
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    center = np.array([x + 0.5 * bbox[2], y + 0.5 * bbox[3]], dtype=np.float32)
    return center, np.array([w, h], dtype=np.float32) * 1.25


def _crop_affine(center: np.ndarray, size: np.ndarray, rotation: float) -> np.ndarray:
    """The 2x3 matrix taking the box (rotated by ``rotation`` degrees) onto the input crop."""
    zoom = INPUT_SIZE[1] / size[0]
    angle = math.radians(rotation)
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    linear = np.array([[cos, sin], [-sin, cos]], dtype=np.float32)
    offset = np.array([INPUT_SIZE[1] / 2, INPUT_SIZE[0] / 2], dtype=np.float32) - linear @ center
    return np.concatenate([linear, offset[:, None]], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=os.environ.get("HEATMAP_TARGET", "127.0.0.1:50051"),
                        help="host:port, dns:///name:port or ipv4:a:p,b:p (env HEATMAP_TARGET)")
    parser.add_argument("--local", action="store_true", help="render in the workers, no server")
    parser.add_argument("--annotations", default=str(ANNOTATIONS), help="COCO keypoints JSON")
    parser.add_argument("--batches", type=int, default=200, help="batches to load (0: endless)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--sigma", type=float, default=2.0)
    parser.add_argument("--method", default="msra", choices=["seed", "msra", "udp", "dark"])
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per batch, seconds")
    parser.add_argument("--prefetch", action="store_true",
                        help="render in this process, the next batch's call in flight meanwhile")
    args = parser.parse_args(argv)

    if args.local:
        renderer, mode = "local", "local"  # heatmap_server's renderer, in the workers
    else:
        renderer = HeatmapClient(args.target, timeout=args.timeout)
        info = renderer.info()  # fails early, and the workers inherit a used client
        mode = f"service {args.target} ({info.device})"
    targets = HeatmapCollate(renderer, size=HEATMAP_SIZE, sigma=args.sigma, method=args.method,
                             coords="pixel", input_size=INPUT_SIZE, timeout=args.timeout)
    endless = args.batches == 0
    length = (1 << 30) if endless else args.batches * args.batch_size
    dataset = CocoPersonKeypoints(args.annotations, length=length)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                        collate_fn=targets.collate if args.prefetch else targets)
    batches = targets.prefetch(loader) if args.prefetch else loader
    say = print
    if tqdm is not None:
        total = None if endless else len(loader)
        batches = tqdm(batches, total=total, unit="batch", file=sys.stderr)
        say = tqdm.write

    samples = 0
    start = time.perf_counter()
    for index, batch in enumerate(batches):
        if index == 0:
            first, first_samples = time.perf_counter(), len(batch["keypoints"])
            say(f"{mode}: heatmaps {tuple(batch['heatmaps'].shape)} {batch['heatmaps'].dtype}, "
                f"weights {tuple(batch['heatmap_weights'].shape)}, "
                f"first batch after {first - start:.2f} s")
        samples += len(batch["keypoints"])
        _check(batch)
    elapsed = time.perf_counter() - start
    if tqdm is not None:
        batches.close()
    if samples == 0:
        raise SystemExit("no batches")
    steady = (samples - first_samples) / max(time.perf_counter() - first, 1e-9)
    print(f"{mode}: {samples} samples in {elapsed:.2f} s: {samples / elapsed:.0f} samples/s "
          f"({steady:.0f} samples/s after the first batch)", flush=True)


def _check(batch: dict) -> None:
    """Targets a trainer could use: a peak wherever a labelled keypoint lies inside the heatmap."""
    height, width = HEATMAP_SIZE
    x, y = (batch["keypoints"] * HEATMAP_SIZE[0] / INPUT_SIZE[0]).unbind(-1)
    inside = (x >= 1) & (x <= width - 2) & (y >= 1) & (y <= height - 2) & (batch["visibility"] > 0)
    peaks = batch["heatmaps"].flatten(2).amax(-1)
    if not torch.all(peaks[inside] > 0.5) or not torch.all(batch["heatmap_weights"][inside] > 0):
        raise SystemExit("a labelled keypoint inside the crop has no peak or no weight")


if __name__ == "__main__":
    main()
