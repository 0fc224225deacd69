"""Real annotations (COCO persons, 300-W and iBUG faces) against the reference loops.

The data lives in ``tests/data`` (see its README for provenance); image sizes are read from the
image files' headers, so ``input_size`` is the size of the real image.
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from .heatmap_reference import to_heatmap_pixels

METHODS = ("seed", "msra", "udp", "dark")
DATA = Path(__file__).resolve().parent.parent / "data"


def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from a PNG's IHDR chunk or a JPEG's start-of-frame marker."""
    data = path.read_bytes()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    assert data[:2] == b"\xff\xd8", f"{path.name}: neither PNG nor JPEG"
    at = 2
    while at < len(data):
        marker, length = data[at + 1], struct.unpack(">H", data[at + 2 : at + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3):  # SOF: precision, height, width
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return height, width
        at += 2 + length
    raise AssertionError(f"{path.name}: no start-of-frame marker")


@functools.cache
def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _annotations(name: str, image_id: int):
    """Keypoints ``(P, K, 2)`` float32, visibility ``(P, K)`` (v > 0), image ``(H, W)``, boxes."""
    data = _load(name)
    image = next(i for i in data["images"] if i["id"] == image_id)
    people = [a for a in data["annotations"] if a["image_id"] == image_id]
    triplets = np.array([a["keypoints"] for a in people], dtype=np.float64).reshape(
        len(people), -1, 3
    )
    keypoints = triplets[..., :2].astype(np.float32)
    visibility = (triplets[..., 2] > 0).astype(np.float32)
    boxes = np.array([a["bbox"] for a in people], dtype=np.float64)
    return keypoints, visibility, (image["height"], image["width"]), boxes


def _einstein() -> np.ndarray:
    text = (DATA / "face" / "einstein.pts").read_text()
    block = text[text.index("{") + 1 : text.index("}")]
    return np.array([line.split() for line in block.strip().splitlines()], dtype=np.float64)


def _crop(keypoints, boxes, crop_size, padding=1.25):
    """Each person's box, widened to the crop's aspect and padded (as mmpose's top-down
    pipeline does), mapped onto a ``crop_size = (H, W)`` input: an affine map per person."""
    crop_height, crop_width = crop_size
    x, y, w, h = boxes.T
    centre = np.stack([x + w / 2, y + h / 2], axis=-1)
    aspect = crop_width / crop_height
    w = np.maximum(w, h * aspect) * padding
    scale = crop_width / w
    middle = [crop_width / 2, crop_height / 2]
    return ((keypoints - centre[:, None]) * scale[:, None, None] + middle).astype(np.float32)


def _check_peaks(result, keypoints, visibility, *, coords, method, size, input_size=None):
    """Each drawn keypoint that lies on the heatmap peaks within a pixel of where it is."""
    height, width = size
    heatmaps = result.heatmaps.cpu().float().numpy()
    weights = result.weights.cpu().numpy()
    checked = 0
    for (b, k), visible in np.ndenumerate(visibility):  # one keypoint a channel: no instances
        u, v = to_heatmap_pixels(*keypoints[b, k], coords=coords, method=method, size=size,
                                 input_size=input_size)
        if visible < 0.5 or not (0 <= u <= width - 1 and 0 <= v <= height - 1):
            continue
        assert weights[b, k] == 1.0
        row, col = np.unravel_index(np.argmax(heatmaps[b, k]), size)
        assert abs(col - u) <= 1 and abs(row - v) <= 1, (b, k, u, v, col, row)
        checked += 1
    assert checked > 0


# --- COCO persons, 17 keypoints -----------------------------------------------------------------

COCO = "coco/test_coco.json"
COCO_IMAGES = (785, 40083, 196141, 197388)


def test_coco_image_file_matches_its_annotation():
    _, _, size, _ = _annotations(COCO, 196141)
    assert image_size(DATA / "coco" / "000000196141.jpg") == size == (429, 640)


@pytest.mark.parametrize("image_id", COCO_IMAGES)
@pytest.mark.parametrize("method", METHODS)
def test_coco_people_in_image_pixels(check_render, method, image_id):
    keypoints, visibility, input_size, _ = _annotations(COCO, image_id)
    size = (64, 48)
    result = check_render(keypoints, size, 2.0, method=method, coords="pixel",
                          input_size=input_size, visibility=visibility)
    _check_peaks(result, keypoints, visibility, coords="pixel", method=method, size=size,
                 input_size=input_size)


@pytest.mark.parametrize("sigma", [2.0, 1.5])
@pytest.mark.parametrize("method", METHODS)
def test_coco_top_down_crops(check_render, method, sigma):
    # Every annotated person of every image, each in its own 256x192 crop: one batch of 13.
    parts = [_annotations(COCO, image_id) for image_id in COCO_IMAGES]
    keypoints = np.concatenate([_crop(p[0], p[3], (256, 192)) for p in parts])
    visibility = np.concatenate([p[1] for p in parts])
    labelled = visibility.any(axis=1)
    keypoints, visibility = keypoints[labelled], visibility[labelled]
    assert keypoints.shape == (12, 17, 2)
    size = (64, 48)
    result = check_render(keypoints, size, sigma, method=method, coords="pixel",
                          input_size=(256, 192), visibility=visibility)
    _check_peaks(result, keypoints, visibility, coords="pixel", method=method, size=size,
                 input_size=(256, 192))


@pytest.mark.parametrize("method", METHODS)
def test_coco_bottom_up_instances(check_render, method):
    # All five people of one image as instances of one sample, merged by maximum per keypoint.
    keypoints, visibility, _, _ = _annotations(COCO, 196141)
    input_size = image_size(DATA / "coco" / "000000196141.jpg")
    result = check_render(keypoints[None], (108, 160), 2.0, method=method, coords="pixel",
                          input_size=input_size, visibility=visibility[None])
    assert tuple(result.weights.shape) == (1, 5, 17)


# --- Faces, 68 iBUG landmarks -------------------------------------------------------------------

W300 = "300w/test_300w.json"


def test_300w_image_file_matches_its_annotation():
    _, _, size, _ = _annotations(W300, 565)
    assert image_size(DATA / "300w" / "indoor_020.png") == size == (768, 726)


@pytest.mark.parametrize("image_id", [197, 565])
@pytest.mark.parametrize("method", METHODS)
def test_300w_face_in_image_pixels(check_render, method, image_id):
    keypoints, visibility, input_size, _ = _annotations(W300, image_id)
    assert keypoints.shape == (1, 68, 2)
    result = check_render(keypoints, (64, 64), 1.5, method=method, coords="pixel",
                          input_size=input_size, visibility=visibility)
    _check_peaks(result, keypoints, visibility, coords="pixel", method=method, size=(64, 64),
                 input_size=input_size)


@pytest.mark.parametrize("method", METHODS)
def test_300w_face_crops(check_render, method):
    parts = [_annotations(W300, image_id) for image_id in (197, 565)]
    keypoints = np.concatenate([_crop(p[0], p[3], (256, 256), padding=1.0) for p in parts])
    check_render(keypoints, (64, 64), 2.0, method=method, coords="pixel", input_size=(256, 256))


EINSTEIN_SIZE = (1024, 817)  # (H, W) of einstein.jpg


def _einstein_in(coords):
    """The face cropped from its landmarks' box onto a 256x256 input, in ``coords``."""
    points = _einstein()
    low, high = points.min(axis=0), points.max(axis=0)
    box = np.concatenate([low, high - low])[None]
    crop = _crop(points[None], box, (256, 256)).astype(np.float64)
    if coords == "heatmap":  # stride 4
        crop = crop / 4
    elif coords == "normalized":
        crop = crop / 256 * 2 - 1
    return crop.astype(np.float32)


def test_einstein_image_file_size():
    assert image_size(DATA / "face" / "einstein.jpg") == EINSTEIN_SIZE
    assert _einstein().shape == (68, 2)


@pytest.mark.parametrize("coords", ["heatmap", "pixel", "normalized"])
@pytest.mark.parametrize("method", METHODS)
def test_einstein_face_crop(check_render, method, coords):
    keypoints = _einstein_in(coords)
    input_size = (256, 256) if coords == "pixel" else None
    visibility = np.ones((1, 68), dtype=np.float32)
    result = check_render(keypoints, (64, 64), 1.5, method=method, coords=coords,
                          input_size=input_size)
    _check_peaks(result, keypoints, visibility, coords=coords, method=method, size=(64, 64),
                 input_size=input_size)
    # A face fills the crop: the 68 landmarks peak at (nearly) 68 distinct places.
    peaks = result.heatmaps[0].flatten(1).argmax(dim=1).unique()
    assert peaks.numel() >= 60


@pytest.mark.parametrize("method", METHODS)
def test_einstein_whole_image(check_render, method):
    keypoints = _einstein()[None].astype(np.float32)
    check_render(keypoints, (64, 64), 2.0, method=method, coords="pixel",
                 input_size=image_size(DATA / "face" / "einstein.jpg"))
