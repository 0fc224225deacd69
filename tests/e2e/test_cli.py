"""The installed command-line tools, run as a user runs them, against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from heatmap_client.keypoint_files import read_coco, read_pts
from heatmap_render import render_heatmaps
from heatmap_server.app import parse_config

from probes import free_port

DATA = Path(__file__).resolve().parents[1] / "data"
BIN = Path(sys.executable).parent


def _client(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "heatmap-client"), *args], capture_output=True, text=True,
                          timeout=timeout)


def _dead_target() -> str:
    return f"127.0.0.1:{free_port()}"  # a port nobody listens on once closed


def test_health_tells_a_live_server_from_a_dead_one(live_server):
    live = _client("--target", live_server.target, "health")
    assert live.returncode == 0, live.stderr
    assert live.stdout.strip() == "SERVING"
    dead = _client("--target", _dead_target(), "--timeout", "2", "health")
    assert dead.returncode == 1
    assert "UNAVAILABLE" in dead.stderr or "DEADLINE_EXCEEDED" in dead.stderr


def test_info_prints_json(live_server):
    done = _client("--target", live_server.target, "info")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["device"] == "cpu" and "METHOD_UDP" in info["methods"]


def test_render_face_pts_to_npy_and_preview(live_server, tmp_path):
    out, png = tmp_path / "face.npy", tmp_path / "face.png"
    done = _client("--target", live_server.target, "render", str(DATA / "face" / "einstein.pts"),
                   "--size", "64", "64", "--sigma", "2",
                   "--image", str(DATA / "face" / "einstein.jpg"),
                   "--out", str(out), "--png", str(png))
    assert done.returncode == 0, done.stderr
    heatmaps = np.load(out)
    # The image (817x1024 px) gives the input size; the keypoints are its pixels.
    expected = render_heatmaps(read_pts(DATA / "face" / "einstein.pts").keypoints, (64, 64), 2.0,
                               coords="pixel", input_size=(1024, 817))
    np.testing.assert_array_equal(heatmaps, expected.heatmaps.numpy())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_coco_json_uses_the_image_size_and_visibility(live_server, tmp_path):
    out, weights = tmp_path / "coco.npy", tmp_path / "weights.npy"
    done = _client("--target", live_server.target, "render", str(DATA / "coco" / "test_coco.json"),
                   "--image-id", "196141", "--size", "64", "48", "--out", str(out),
                   "--weights-out", str(weights), "--codec", "separable")
    assert done.returncode == 0, done.stderr
    data = read_coco(DATA / "coco" / "test_coco.json", 196141)
    expected = render_heatmaps(data.keypoints, (64, 48), 2.0, coords="pixel",
                               input_size=(429, 640), visibility=data.visibility)
    np.testing.assert_array_equal(np.load(out), expected.heatmaps.numpy())
    np.testing.assert_array_equal(np.load(weights), expected.weights.numpy())


def test_image_pixel_pts_without_an_input_size_is_refused_with_the_fix(live_server, tmp_path):
    out = tmp_path / "face.npy"
    done = _client("--target", live_server.target, "render", str(DATA / "face" / "einstein.pts"),
                   "--size", "64", "64", "--out", str(out))
    assert done.returncode == 3, done.stderr
    assert ("0 of 68 keypoints landed on the 64x64 heatmap; image pixels? pass --input-size H W"
            in done.stderr)
    assert not list(tmp_path.iterdir())  # all-zero targets are never written, not even in part


def test_input_size_renders_image_pixel_pts_correctly(live_server, tmp_path):
    out = tmp_path / "face.npy"
    done = _client("--target", live_server.target, "render", str(DATA / "face" / "einstein.pts"),
                   "--size", "64", "64", "--input-size", "1024", "817", "--method", "udp",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # every keypoint landed: nothing to warn about
    expected = render_heatmaps(read_pts(DATA / "face" / "einstein.pts").keypoints, (64, 64), 2.0,
                               method="udp", coords="pixel", input_size=(1024, 817))
    np.testing.assert_array_equal(np.load(out), expected.heatmaps.numpy())


def test_pixel_coords_without_a_size_names_the_flags(live_server, tmp_path):
    done = _client("--target", live_server.target, "render", str(DATA / "face" / "einstein.pts"),
                   "--coords", "pixel", "--out", str(tmp_path / "x.npy"))
    assert done.returncode == 2
    assert "--coords pixel: pass --input-size H W" in done.stderr


def test_some_keypoints_off_the_heatmap_are_counted(live_server, tmp_path):
    keypoints, out = tmp_path / "kp.npy", tmp_path / "hm.npy"
    # (x, y, visibility): the last one is not drawn (under 0.5), so it is not counted either.
    np.save(keypoints, np.array([[[10, 20, 1], [300, 20, 1], [5, 5, 1], [6, 6, 0.3]]], np.float32))
    done = _client("--target", live_server.target, "render", str(keypoints), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 of 3 keypoints landed on the 64x48 heatmap" in done.stderr
    assert np.load(out)[0, 1].max() == 0 and np.load(out)[0, 0].max() == 1


def test_coco_image_selects_the_annotations_of_that_file(live_server, tmp_path):
    out = tmp_path / "coco.npy"
    done = _client("--target", live_server.target, "render", str(DATA / "coco" / "test_coco.json"),
                   "--image", str(DATA / "coco" / "000000196141.jpg"), "--size", "64", "48",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    data = read_coco(DATA / "coco" / "test_coco.json", 196141)
    assert read_coco(DATA / "coco" / "test_coco.json").keypoints.shape != data.keypoints.shape
    expected = render_heatmaps(data.keypoints, (64, 48), 2.0, coords="pixel",
                               input_size=(429, 640), visibility=data.visibility)
    np.testing.assert_array_equal(np.load(out), expected.heatmaps.numpy())


@pytest.mark.parametrize("flags, message", [
    (["--image", str(DATA / "face" / "einstein.jpg")], "no image with file_name 'einstein.jpg'"),
    (["--image", str(DATA / "coco" / "000000196141.jpg"), "--image-id", "785"],
     "image_id 785 is not 000000196141.jpg, which is image_id 196141"),
])
def test_coco_image_that_does_not_match_is_an_error(live_server, tmp_path, flags, message):
    done = _client("--target", live_server.target, "render", str(DATA / "coco" / "test_coco.json"),
                   *flags, "--out", str(tmp_path / "x.npy"))
    assert done.returncode == 2
    assert message in done.stderr and "test_coco.json" in done.stderr


def test_pts_with_a_bad_line_names_the_file_and_line(live_server, tmp_path):
    pts = tmp_path / "face.pts"
    pts.write_text("version: 1\nn_points: 2\n{\n1 2\n3 4 5\n}\n")
    done = _client("--target", live_server.target, "render", str(pts), "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert f"{pts}:5: expected two numbers 'x y', got 3" in done.stderr


def test_preview_of_one_channel_cropped_to_the_face(live_server, tmp_path):
    from PIL import Image

    png = tmp_path / "face.png"
    done = _client("--target", live_server.target, "render", str(DATA / "face" / "einstein.pts"),
                   "--size", "64", "64", "--image", str(DATA / "face" / "einstein.jpg"),
                   "--out", str(tmp_path / "face.npy"), "--png", str(png), "--png-crop",
                   "--png-channel", "30")
    assert done.returncode == 0, done.stderr
    with Image.open(png) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    # Cropped to the landmarks (the photo is 817x1024), with the chosen landmark's red dot.
    assert pixels.shape[0] < 1024 / 2 and pixels.shape[1] < 817 / 2
    assert (pixels == (230, 20, 20)).all(axis=-1).sum() > 10


def test_preview_channel_out_of_range_names_the_flag(live_server, tmp_path):
    done = _client("--target", live_server.target, "render", str(DATA / "face" / "einstein.pts"),
                   "--input-size", "1024", "817", "--out", str(tmp_path / "x.npy"),
                   "--png", str(tmp_path / "x.png"), "--png-channel", "68")
    assert done.returncode == 2
    assert "--png-channel 68:" in done.stderr and "68 keypoints" in done.stderr


def test_render_reports_bad_input_with_the_field(live_server, tmp_path):
    keypoints = tmp_path / "bad.npy"
    np.save(keypoints, np.full((1, 3, 2), np.nan, np.float32))
    done = _client("--target", live_server.target, "render", str(keypoints), "--out",
                   str(tmp_path / "x.npy"))
    assert done.returncode == 2
    assert "INVALID_ARGUMENT: keypoints:" in done.stderr


def test_server_flags_have_environment_variables():
    config = parse_config(["serve", "--port", "6000"],
                          {"HEATMAP_PORT": "7000", "HEATMAP_DEVICE": "cpu",
                           "HEATMAP_GRACE_S": "2.5"})
    assert config.port == 6000  # the flag wins over the variable
    assert config.device == "cpu" and config.grace_s == 2.5
    assert parse_config([], {}).port == 50051 and parse_config([], {}).host == "0.0.0.0"


def test_server_help_names_every_variable():
    done = subprocess.run([str(BIN / "heatmap-server"), "serve", "--help"], capture_output=True,
                          text=True, check=True)
    for variable in ("HEATMAP_HOST", "HEATMAP_PORT", "HEATMAP_DEVICE",
                     "HEATMAP_MAX_OUTPUT_ELEMENTS"):
        assert variable in done.stdout


@pytest.mark.parametrize("module", ["heatmap_server", "heatmap_client"])
def test_python_dash_m_entry_points(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage:" in done.stdout


@pytest.mark.parametrize("wait", ["0", "1.5"])
def test_info_against_a_dead_target_waits_at_most_ready_timeout(wait):
    started = time.monotonic()
    done = _client("--target", _dead_target(), "--ready-timeout", wait, "info")
    waited = time.monotonic() - started
    assert done.returncode == 2
    assert "UNAVAILABLE" in done.stderr, done.stderr
    # Bounded by the flag (plus start-up and gRPC's own retries), far below the client's 60 s.
    assert waited < float(wait) + 20, waited
