"""The benchmark scenarios S1-S4 and their inputs, shared by bench/render.py and bench/service.py.

Only numpy: bench/service.py's spawned client processes import this module too. Each script seeds a
scenario with ``np.random.default_rng([seed, index])``, the index being the scenario's place in
that script's own table, so that a subset (--scenarios S3) renders the same keypoints.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    batch: int
    keypoints: int
    height: int
    width: int
    sigma: float
    method: str
    coords: str

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.keypoints, self.height, self.width)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("S1", "68 face landmarks", 1, 68, 256, 256, 10.0, "seed", "normalized"),
        Scenario("S2", "COCO body", 32, 17, 64, 48, 2.0, "msra", "heatmap"),
        Scenario("S3", "faces", 32, 68, 64, 64, 2.0, "msra", "heatmap"),
        Scenario("S4", "COCO whole body", 8, 133, 96, 72, 2.0, "msra", "heatmap"),
    )
}


def parse_scenarios(
    parser: argparse.ArgumentParser, text: str, table: dict[str, Scenario]
) -> list[str]:
    """The names in the comma-separated ``text``; ``parser.error`` on an unknown one or none."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in table]
    if unknown or not names:
        parser.error(f"--scenarios: unknown {unknown or 'empty'}; choose from {','.join(table)}")
    return names


def make_keypoints(sc: Scenario, rng: np.random.Generator, off_fraction: float = 0.1) -> np.ndarray:
    """``(B, K, 2)`` float32 heatmap pixels: a person-sized cluster per sample, with about
    ``off_fraction`` of the keypoints moved 0.5 to 6 sigma off one edge (so some windows still touch
    the heatmap and some miss it wholly)."""
    extent = np.array([sc.width, sc.height], dtype=np.float64)
    box = rng.uniform(0.35, 0.8, size=(sc.batch, 1, 2)) * extent
    centre = extent / 2 + rng.uniform(-0.15, 0.15, size=(sc.batch, 1, 2)) * extent
    points = centre + (rng.uniform(size=(sc.batch, sc.keypoints, 2)) - 0.5) * box
    points = np.clip(points, 0, extent - 1)
    shape = (sc.batch, sc.keypoints)
    off = rng.uniform(size=shape) < off_fraction
    axis = rng.integers(0, 2, size=shape)
    low_side = rng.uniform(size=shape) < 0.5
    distance = rng.uniform(0.5, 6 * sc.sigma, size=shape)
    for b, k in zip(*np.nonzero(off)):
        a = axis[b, k]
        points[b, k, a] = -distance[b, k] if low_side[b, k] else extent[a] - 1 + distance[b, k]
    return points.astype(np.float32)


def to_normalized(points: np.ndarray, sc: Scenario) -> np.ndarray:
    """Heatmap pixels -> the seed's [-1, 1] convention (x = 2 u / W - 1)."""
    extent = np.array([sc.width, sc.height], dtype=np.float64)
    return (points.astype(np.float64) / extent * 2 - 1).astype(np.float32)


def from_normalized(points: np.ndarray, sc: Scenario) -> np.ndarray:
    """[-1, 1] -> heatmap pixels in float32, in the renderer's order: (x + 1) * 0.5 * W."""
    extent = np.array([sc.width, sc.height], dtype=np.float32)
    return (points + np.float32(1)) * np.float32(0.5) * extent
