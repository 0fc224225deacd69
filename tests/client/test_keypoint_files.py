"""Keypoint files: what they hold, one image or the whole file, and errors that name the file
and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from heatmap_client.keypoint_files import (
    as_instances,
    read_coco,
    read_coco_set,
    read_keypoint_set,
    read_keypoints,
    read_npy,
    read_pts,
    read_pts_folder,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def _pts(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "face.pts"
    path.write_text(body)
    return path


def test_the_bundled_face_reads_68_points_in_image_pixels():
    face = read_pts(DATA / "face" / "einstein.pts")
    assert face.keypoints.shape == (1, 68, 2) and face.keypoints.dtype == np.float32
    assert face.keypoints.max() > 64  # image pixels, not heatmap pixels


@pytest.mark.parametrize("body, message", [
    ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n",
     "the header declares n_points 3, the { } block holds 2"),
    ("n_points: 2\n{\n1 2\n3 4 5\n}\n", ":4: expected two numbers 'x y', got 3: '3 4 5'"),
    ("n_points: 2\n{\n1 2\n3 x\n}\n", ":4: not a number in '3 x'"),
    ("n_points: two\n{\n1 2\n}\n", ":1: n_points is not a whole number: 'two'"),
    ("1 2\n3 4\n", "not an iBUG .pts file (no { } block)"),
])
def test_bad_pts_files_name_the_file_and_line(tmp_path, body, message):
    path = _pts(tmp_path, body)
    with pytest.raises(ValueError) as error:
        read_pts(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)


def test_pts_without_a_header_and_with_blank_lines_reads(tmp_path):
    face = read_pts(_pts(tmp_path, "{\n1 2\n\n3.5 4\n}\n"))
    np.testing.assert_array_equal(face.keypoints, [[[1, 2], [3.5, 4]]])


def test_coco_by_file_name_matches_by_id():
    by_name = read_keypoints(
        DATA / "coco" / "test_coco.json", image_name="some/dir/000000196141.jpg")
    by_id = read_coco(DATA / "coco" / "test_coco.json", 196141)
    np.testing.assert_array_equal(by_name.keypoints, by_id.keypoints)
    assert by_name.image_size == (429, 640) and by_name.image_name == "000000196141.jpg"


def test_coco_set_per_person_is_every_annotated_image_in_file_order():
    people = read_coco_set(DATA / "coco" / "test_coco.json")
    data = json.loads((DATA / "coco" / "test_coco.json").read_text())
    order = [image["id"] for image in data["images"]]
    expected = [a for i in order for a in data["annotations"] if a["image_id"] == i]
    assert people.keypoints.shape == (14, 17, 2) and people.visibility.shape == (14, 17)
    assert people.index["image_id"].tolist() == [a["image_id"] for a in expected]
    assert people.index["annotation_id"].tolist() == [a["id"] for a in expected]
    flags = np.array([a["keypoints"][2::3] for a in expected])
    assert (flags == 2).any()  # COCO's "visible" ...
    np.testing.assert_array_equal(people.visibility, flags > 0)  # ... is a weight of 1, never 2
    sizes = {image["id"]: (image["height"], image["width"]) for image in data["images"]}
    assert [tuple(size) for size in people.image_sizes] == [sizes[a["image_id"]] for a in expected]


def test_coco_set_per_image_pads_the_people_with_visibility_0():
    images = read_coco_set(DATA / "coco" / "test_coco.json", per="image")
    assert images.keypoints.shape == (4, 5, 17, 2) and images.visibility.shape == (4, 5, 17)
    one = read_coco(DATA / "coco" / "test_coco.json", 785)  # one person
    row = images.index["image_id"].tolist().index(785)
    np.testing.assert_array_equal(images.keypoints[row, :1], one.keypoints)
    np.testing.assert_array_equal(images.visibility[row, :1], one.visibility)
    assert not images.visibility[row, 1:].any()
    single = as_instances(one)
    assert single.keypoints.shape == (1, 1, 17, 2) and single.visibility.shape == (1, 1, 17)


@pytest.mark.parametrize("per", ["people", "instance"])
def test_coco_set_per_must_be_person_or_image(per):
    with pytest.raises(ValueError, match=f"per: expected 'person' or 'image', got '{per}'"):
        read_coco_set(DATA / "coco" / "test_coco.json", per=per)


def test_coco_annotations_of_different_lengths_name_the_annotation(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": [{"id": 1, "height": 10, "width": 10}], "annotations": [
        {"id": 7, "image_id": 1, "keypoints": [1, 2, 2] * 17},
        {"id": 8, "image_id": 1, "keypoints": [1, 2, 2] * 16}]}))
    with pytest.raises(ValueError, match=r"annotation 8 \(image_id 1\) has 48 keypoint values, "
                                         r"expected 51 values \(17 x, y, v triplets\)"):
        read_coco_set(path)


def _face(folder: Path, name: str, points: int = 3, image: tuple[int, int] | None = None) -> None:
    path = folder / f"{name}.pts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{\n" + "".join(f"{i} {i + 1}\n" for i in range(points)) + "}\n")
    if image is not None:
        from PIL import Image

        Image.new("L", (image[1], image[0])).save(folder / f"{name}.png")


def test_pts_folder_is_sorted_by_name_with_sizes_from_the_images_beside(tmp_path):
    _face(tmp_path, "b", image=(20, 30))
    _face(tmp_path, "a")
    _face(tmp_path, "sub/c", image=(40, 50))
    faces = read_pts_folder(tmp_path)
    assert faces.index["name"].tolist() == ["a.pts", "b.pts", "sub/c.pts"]
    assert faces.keypoints.shape == (3, 3, 2) and faces.visibility is None
    assert faces.image_sizes.tolist() == [[0, 0], [20, 30], [40, 50]]
    assert read_keypoint_set(tmp_path).index["name"].tolist() == faces.index["name"].tolist()


def test_pts_folder_without_images_has_no_sizes(tmp_path):
    _face(tmp_path, "a")
    assert read_pts_folder(tmp_path).image_sizes is None


@pytest.mark.parametrize("faces, message", [
    ([], "no .pts files in this folder"),
    ([("a", 3), ("b", 4)], "b.pts: 4 points, but "),
])
def test_bad_pts_folders_name_the_folder_or_file(tmp_path, faces, message):
    for name, points in faces:
        _face(tmp_path, name, points)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_pts_folder(tmp_path)


def test_npy_visibility_must_be_a_weight(tmp_path):
    path = tmp_path / "kp.npy"
    np.save(path, np.array([[[1, 2, 2], [3, 4, 0]]], np.float32))  # COCO flags, unconverted
    for mmap in (False, True):
        with pytest.raises(ValueError) as error:
            read_npy(path, mmap=mmap)
        assert str(error.value).startswith(f"{path}: the visibility column")
        assert "must lie in [0, 1], got values in [0, 2]" in str(error.value)


def test_npy_memory_mapped_keeps_its_dtype_and_adds_a_batch_axis(tmp_path):
    path = tmp_path / "kp.npy"
    np.save(path, np.array([[1, 2, 1], [3, 4, 0.5]], np.float64))
    data = read_keypoint_set(path)
    assert data.keypoints.shape == (1, 2, 2) and data.keypoints.dtype == np.float64
    assert isinstance(data.keypoints.base, np.memmap) or isinstance(data.keypoints, np.memmap)
    np.testing.assert_array_equal(data.visibility, [[1, 0.5]])
    assert read_npy(path).keypoints.dtype == np.float32


@pytest.mark.parametrize("name, message", [
    ("kp.txt", "unknown keypoint format (expected .json, .pts, .npy or a folder of .pts)"),
])
def test_unknown_formats_are_named(tmp_path, name, message):
    (tmp_path / name).write_text("1 2\n")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / name}: {message}")):
        read_keypoint_set(tmp_path / name)
