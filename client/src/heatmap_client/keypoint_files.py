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
    """Keypoints ``(B, K, 2)`` (or ``(B, N, K, 2)``), visibility or None, image size if known."""

    keypoints: np.ndarray
    visibility: np.ndarray | None
    image_size: tuple[int, int] | None = None
    image_name: str | None = None


def read_pts(path: str | Path) -> KeypointFile:
    """One face from an iBUG ``.pts`` file: keypoints ``(1, K, 2)`` in image pixels.

    Raises:
        ValueError: naming the file and line, for a missing ``{ }`` block, a line that is not two
            numbers, or a point count that differs from the ``n_points`` header.
    """
    lines = Path(path).read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "{") + 1
        stop = next(i for i in range(start, len(lines)) if lines[i].strip() == "}")
    except StopIteration:
        raise ValueError(f"{path}: not an iBUG .pts file (no {{ }} block)") from None
    declared = _declared_points(path, lines[: start - 1])
    points = []
    for number in range(start, stop):
        values = lines[number].split()
        if not values:
            continue
        if len(values) != 2:
            raise ValueError(f"{path}:{number + 1}: expected two numbers 'x y', got "
                             f"{len(values)}: {lines[number].strip()!r}")
        try:
            points.append([float(values[0]), float(values[1])])
        except ValueError:
            raise ValueError(f"{path}:{number + 1}: not a number in "
                             f"{lines[number].strip()!r}") from None
    if declared is not None and declared != len(points):
        raise ValueError(f"{path}: the header declares n_points {declared}, the {{ }} block "
                         f"holds {len(points)} points")
    return KeypointFile(np.array(points, np.float32).reshape(1, -1, 2), None)


def _declared_points(path: str | Path, header: list[str]) -> int | None:
    for number, line in enumerate(header):
        key, _, value = line.partition(":")
        if key.strip() == "n_points":
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{path}:{number + 1}: n_points is not a whole number: "
                                 f"{value.strip()!r}") from None
    return None


def read_coco(path: str | Path, image_id: int | None = None,
              image_name: str | None = None) -> KeypointFile:
    """Every person of one image of a COCO keypoint file: ``(B, K, 2)`` and visibility ``(B, K)``.

    With neither ``image_id`` nor ``image_name``, the first annotated image.

    Args:
        path: the COCO json.
        image_id: the image whose annotations to take.
        image_name: or the image by ``file_name`` (compared without folders), e.g. the file the
            preview is drawn over; when both are given they must name the same image.
    """
    data = json.loads(Path(path).read_text())
    images = {image["id"]: image for image in data.get("images", [])}
    annotations = [a for a in data.get("annotations", []) if a.get("keypoints")]
    if not annotations:
        raise ValueError(f"{path}: no annotations with keypoints")
    if image_name is not None:
        named = _image_id_by_name(path, images, image_name)
        if image_id is not None and image_id != named:
            raise ValueError(f"{path}: image_id {image_id} is not {Path(image_name).name}, "
                             f"which is image_id {named}")
        image_id = named
    if image_id is None:
        image_id = annotations[0]["image_id"]
    chosen = [a for a in annotations if a["image_id"] == image_id]
    if not chosen:
        raise ValueError(f"{path}: no annotations with keypoints for image_id {image_id}")
    triplets = np.array([a["keypoints"] for a in chosen], dtype=np.float32)
    triplets = triplets.reshape(len(chosen), -1, 3)
    image = images.get(image_id)
    size = (int(image["height"]), int(image["width"])) if image else None
    name = image.get("file_name") if image else None
    visibility = (triplets[..., 2] > 0).astype(np.float32)
    return KeypointFile(triplets[..., :2].copy(), visibility, size, name)


def _image_id_by_name(path: str | Path, images: dict, image_name: str) -> int:
    wanted = Path(image_name).name
    found = [i for i, image in images.items() if Path(image.get("file_name", "")).name == wanted]
    if not found:
        names = ", ".join(
            sorted(Path(image.get("file_name", "")).name for image in images.values()))
        raise ValueError(f"{path}: no image with file_name {wanted!r} (it has: {names})")
    return found[0]


def read_npy(path: str | Path) -> KeypointFile:
    array = np.load(path).astype(np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim not in (3, 4) or array.shape[-1] not in (2, 3):
        raise ValueError(f"{path}: expected (..., K, 2) or (..., K, 3), got {array.shape}")
    if array.shape[-1] == 3:
        return KeypointFile(array[..., :2].copy(), array[..., 2].copy())
    return KeypointFile(array, None)


def read_keypoints(path: str | Path, image_id: int | None = None,
                   image_name: str | None = None) -> KeypointFile:
    """Reads a COCO ``.json``, iBUG ``.pts`` or ``.npy`` keypoint file by its suffix.

    ``image_id`` and ``image_name`` pick the image of a COCO file (see ``read_coco``).
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return read_coco(path, image_id, image_name)
    if suffix == ".pts":
        return read_pts(path)
    if suffix == ".npy":
        return read_npy(path)
    raise ValueError(f"{path}: unknown keypoint format (expected .json, .pts or .npy)")
