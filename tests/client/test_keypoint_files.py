"""Keypoint files: what they hold, and errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from heatmap_client.keypoint_files import read_coco, read_keypoints, read_pts

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
