"""Reading keypoints from the files landmark and pose data sets ship.

- COCO keypoint json (``annotations[i].keypoints`` = x, y, v triplets; v > 0 means labelled): all
  annotations of one image become ``(B, K, 2)`` with visibility ``(B, K)``.
- iBUG ``.pts`` (a ``{ }`` block of ``x y`` lines, 0-based pixels): one face, ``(1, K, 2)``.
- ``.npy``: ``(K, 2)``, ``(B, K, 2)`` or ``(B, N, K, 2)`` coordinates, or ``(..., 3)`` with a
  visibility column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "KeypointFile",
    "read_coco",
    "read_keypoints",
    "read_npy",
    "read_pts",
]


@dataclass(frozen=True)
class KeypointFile:
    """Keypoints ``(B, K, 2)`` (or ``(B, N, K, 2)``), visibility or None, and the image size if known."""

    keypoints: np.ndarray
    visibility: np.ndarray | None
    image_size: tuple[int, int] | None = None
    image_name: str | None = None


def read_pts(path: str | Path) -> KeypointFile:
    lines = Path(path).read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "{") + 1
        stop = next(i for i, line in enumerate(lines) if line.strip() == "}")
    except StopIteration:
        raise ValueError(f"{path}: not an iBUG .pts file (no {{ }} block)") from None
    points = np.array([[float(v) for v in line.split()] for line in lines[start:stop]])
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{path}: expected 'x y' lines inside the {{ }} block")
    return KeypointFile(points[None].astype(np.float32), None)


def read_coco(path: str | Path, image_id: int | None = None) -> KeypointFile:
    data = json.loads(Path(path).read_text())
    images = {image["id"]: image for image in data.get("images", [])}
    annotations = [a for a in data.get("annotations", []) if a.get("keypoints")]
    if not annotations:
        raise ValueError(f"{path}: no annotations with keypoints")
    if image_id is None:
        image_id = annotations[0]["image_id"]
    chosen = [a for a in annotations if a["image_id"] == image_id]
    if not chosen:
        raise ValueError(f"{path}: no annotations with keypoints for image_id {image_id}")
    triplets = np.array([a["keypoints"] for a in chosen], dtype=np.float32).reshape(len(chosen), -1, 3)
    image = images.get(image_id)
    size = (int(image["height"]), int(image["width"])) if image else None
    name = image.get("file_name") if image else None
    return KeypointFile(triplets[..., :2].copy(), (triplets[..., 2] > 0).astype(np.float32), size, name)


def read_npy(path: str | Path) -> KeypointFile:
    array = np.load(path).astype(np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim not in (3, 4) or array.shape[-1] not in (2, 3):
        raise ValueError(f"{path}: expected (..., K, 2) or (..., K, 3), got {array.shape}")
    if array.shape[-1] == 3:
        return KeypointFile(array[..., :2].copy(), array[..., 2].copy())
    return KeypointFile(array, None)


def read_keypoints(path: str | Path, image_id: int | None = None) -> KeypointFile:
    """Reads a COCO ``.json``, iBUG ``.pts`` or ``.npy`` keypoint file by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return read_coco(path, image_id)
    if suffix == ".pts":
        return read_pts(path)
    if suffix == ".npy":
        return read_npy(path)
    raise ValueError(f"{path}: unknown keypoint format (expected .json, .pts or .npy)")
