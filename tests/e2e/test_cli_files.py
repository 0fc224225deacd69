"""``heatmap-client render`` of whole files, run as a user runs it against the real server: COCO per
person and per image, folders of .pts, a .npy over one request's limit, progress, and output that
never sits whole in the CLI's memory."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client.cli_files import samples_per_request
from heatmap_client.keypoint_files import read_coco, read_pts
from heatmap_client.options import RenderOptions
from heatmap_render import render_heatmaps

from live_server import running_server

DATA = Path(__file__).resolve().parents[1] / "data"
COCO = DATA / "coco" / "test_coco.json"
BIN = Path(sys.executable).parent
SUMMARY = re.compile(r"^(\S+): (\d+(?:x\d+){3}) float32, \d+ bytes on the wire, server \d+ us"
                     r"(?:, (\d+) requests)?$")


def _client(target: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "heatmap-client"), "--target", target, *args],
                          capture_output=True, text=True, timeout=120, **kwargs)


def _requests(stdout: str) -> int:
    """The requests a render took, from its summary line (no count: one)."""
    match = SUMMARY.match(stdout.strip())
    assert match, stdout
    return int(match.group(3) or 1)


# The CLI's main, run as the console script runs it, then its own peak resident memory: VmHWM of
# its address space (getrusage's ru_maxrss would not do: a child's carries the high-water mark of
# the process that spawned it, this test's, across fork and exec).
_MEASURED = """
import re, sys
from heatmap_client.cli import main
code = main(sys.argv[2:])
status = open("/proc/self/status").read()
open(sys.argv[1], "w").write(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
sys.exit(code)
"""


def _peak_rss(args: list[str], cwd: Path) -> tuple[int, int, str, str]:
    """Runs ``heatmap-client *args``; its exit status, its peak resident memory in bytes, stdout
    and stderr."""
    done = subprocess.run([sys.executable, "-c", _MEASURED, str(cwd / "peak.txt"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)
    peak = int((cwd / "peak.txt").read_text()) * 1024
    (cwd / "peak.txt").unlink()
    return done.returncode, peak, done.stdout, done.stderr


def _keypoints(count: int, seed: int = 0) -> np.ndarray:
    """``(count, 17, 3)`` heatmap-pixel keypoints on a 32x32 map with visibility 0, 0.5 or 1."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1, 32, (count, 17, 2)).astype(np.float32)
    visibility = rng.choice(np.array([0, 0.5, 1], np.float32), (count, 17, 1), p=[0.1, 0.1, 0.8])
    return np.concatenate([points, visibility], axis=-1)


def _assert_renders(out: np.ndarray, triplets: np.ndarray, size=(32, 32), step: int = 1000,
                    weights: np.ndarray | None = None) -> None:
    """``out`` is, bit for bit, what the in-process renderer makes of ``triplets``."""
    assert out.shape == (len(triplets), triplets.shape[1], *size) and out.dtype == np.float32
    for start in range(0, len(triplets), step):
        part = triplets[start:start + step]
        expected = render_heatmaps(part[..., :2], size, 2.0, visibility=part[..., 2])
        np.testing.assert_array_equal(out[start:start + step], expected.heatmaps.numpy())
        if weights is not None:
            np.testing.assert_array_equal(weights[start:start + step], expected.weights.numpy())


def test_5000_by_17_npy_renders_in_several_requests_bit_for_bit_in_bounded_memory(
        live_server, tmp_path):
    np.save(tmp_path / "big.npy", _keypoints(5000))
    command = ["--target", live_server.target, "render", "big.npy", "--size", "32", "32",
               "--out", "big_heatmaps.npy", "--weights-out", "weights.npy", "--progress"]
    status, peak, out, err = _peak_rss(command, tmp_path)
    assert status == 0, err
    assert "big_heatmaps.npy: 100%" in err and "5000/5000" in err  # the bar, and no warning
    assert "landed" not in err
    output_bytes = 5000 * 17 * 32 * 32 * 4
    assert out.startswith("big_heatmaps.npy: 5000x17x32x32 float32, ")
    # The live server takes 64 Mi elements a request (5000x17x32x32 is 87 M); the CLI asks for
    # at most 16 MiB of heatmaps (240 samples) a request, the last one smaller.
    assert _requests(out) == -(-5000 // 240)
    heatmaps = np.load(tmp_path / "big_heatmaps.npy", mmap_mode="r")
    _assert_renders(heatmaps, np.load(tmp_path / "big.npy"),
                    weights=np.load(tmp_path / "weights.npy"))
    # The CLI's memory does not grow with the file: against a one-face render it holds a few
    # requests' worth more (~35 MB), far under the 348 MB it wrote.
    status, small, _, err = _peak_rss(
        [*command[:3], str(DATA / "face" / "einstein.pts"), "--input-size", "1024", "817",
         "--out", "face.npy"], tmp_path)
    assert status == 0, err
    assert peak - small < output_bytes / 4, (peak, small)
    assert peak < output_bytes / 2, peak
    assert not list(tmp_path.glob(".*.part"))


def test_a_sample_over_the_clients_16_mib_still_goes_one_a_request(live_server, tmp_path):
    out = tmp_path / "face.npy"  # 68 x 256 x 256 float32: 17.8 MB, a streamed reply
    done = _client(live_server.target, "render", str(DATA / "face" / "einstein.pts"),
                   "--size", "256", "256", "--input-size", "1024", "817", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert _requests(done.stdout) == 1
    expected = render_heatmaps(read_pts(DATA / "face" / "einstein.pts").keypoints, (256, 256), 2.0,
                               coords="pixel", input_size=(1024, 817))
    np.testing.assert_array_equal(np.load(out), expected.heatmaps.numpy())


_LIMITS = dict(max_output_elements=64 << 20, max_request_bytes=16 << 20, max_work_elements=1 << 30,
               reply_budget_bytes=512 << 20)


@pytest.mark.parametrize("limits, lead, size, heatmap_bytes, expected", [
    ({}, (17,), (32, 32), 16 << 20, (240, "16 MiB of heatmaps")),  # 69,632 bytes a sample
    ({}, (17,), (32, 32), 0, ((64 << 20) // (17 * 32 * 32), "max_output_elements")),
    ({"max_request_bytes": 10_000}, (17,), (32, 32), 0, (48, "max_request_bytes")),
    ({"max_work_elements": 10 * 17 * 64 * 48}, (5, 17), (64, 48), 0, (2, "max_work_elements")),
    ({"max_output_elements": 100}, (17,), (32, 32), 16 << 20, (0, "max_output_elements")),
    ({}, (68,), (256, 256), 16 << 20, (1, "16 MiB of heatmaps")),  # over 16 MiB, still one
    ({"max_output_elements": 0, "max_request_bytes": 0, "max_work_elements": 0,
      "reply_budget_bytes": 0}, (17,), (32, 32), 0, (sys.maxsize, "no limit")),
])
def test_samples_per_request_obeys_every_limit(limits, lead, size, heatmap_bytes, expected):
    assert samples_per_request(pb.Limits(**{**_LIMITS, **limits}), RenderOptions(size, 2.0), lead,
                               visibility=True, heatmap_bytes=heatmap_bytes) == expected


@pytest.fixture(scope="module")
def small_server():
    """A server whose requests hold at most 50,000 output elements (2 samples of 17 at 32x32) and
    4 instances per sample."""
    with running_server("--max-output-elements", "50000", "--max-instances", "4") as server:
        yield server


def test_chunks_follow_the_servers_limit_and_a_forced_bar_shows(small_server, tmp_path):
    keypoints = tmp_path / "kp.npy"
    np.save(keypoints, _keypoints(9, seed=1))
    done = _client(small_server.target, "render", str(keypoints), "--size", "32", "32",
                   "--out", str(tmp_path / "hm.npy"), "--progress")
    assert done.returncode == 0, done.stderr
    assert _requests(done.stdout) == 5  # 2 + 2 + 2 + 2 + 1
    assert "hm.npy: 100%" in done.stderr and "9/9" in done.stderr  # tqdm's bar, on stderr
    _assert_renders(np.load(tmp_path / "hm.npy"), np.load(keypoints))


def test_a_terminal_gets_a_bar_unless_told_not_to(small_server, tmp_path):
    np.save(tmp_path / "kp.npy", _keypoints(6, seed=2))

    def stderr_on_a_terminal(*flags: str) -> str:
        master, slave = pty.openpty()
        # A terminal 24 lines by 100 columns (a new pty is 0 by 0: a bar of no width).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        done = subprocess.run(
            [str(BIN / "heatmap-client"), "--target", small_server.target, "render", "kp.npy",
             "--size", "32", "32", "--out", "hm.npy", *flags],
            stdout=subprocess.PIPE, stderr=slave, cwd=tmp_path, timeout=60)
        os.close(slave)
        printed = b""  # a few hundred bytes, within the pty's buffer: read once the CLI is done
        while True:
            try:
                part = os.read(master, 1 << 16)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not part:
                break
            printed += part
        os.close(master)
        assert done.returncode == 0, printed
        return printed.decode()

    assert "6/6" in stderr_on_a_terminal()
    assert stderr_on_a_terminal("--no-progress") == ""


def test_without_tqdm_there_is_no_bar_and_the_render_still_works(small_server, tmp_path):
    np.save(tmp_path / "kp.npy", _keypoints(4, seed=3))
    code = ("import sys; sys.modules['tqdm'] = None; from heatmap_client.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run(
        [sys.executable, "-c", code, "--target", small_server.target, "render", "kp.npy",
         "--size", "32", "32", "--out", "hm.npy", "--progress"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--progress: no bar without tqdm (pip install 'heatmap-client[progress]')" in done.stderr
    _assert_renders(np.load(tmp_path / "hm.npy"), np.load(tmp_path / "kp.npy"))


def test_a_failed_request_names_its_samples_and_leaves_no_file(small_server, tmp_path):
    triplets = _keypoints(8, seed=4)
    triplets[5, 3] = [np.nan, np.nan, 1]  # drawn, so the server refuses its request
    np.save(tmp_path / "kp.npy", triplets)
    done = _client(small_server.target, "render", str(tmp_path / "kp.npy"), "--size", "32", "32",
                   "--out", str(tmp_path / "hm.npz"))
    assert done.returncode == 2
    assert "INVALID_ARGUMENT" in done.stderr and "(samples 4:6 of 8)" in done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kp.npy"]


def test_batch_over_the_servers_limit_names_the_flag_and_the_limit(small_server, tmp_path):
    np.save(tmp_path / "kp.npy", _keypoints(4))
    done = _client(small_server.target, "render", str(tmp_path / "kp.npy"), "--size", "32", "32",
                   "--out", str(tmp_path / "hm.npy"), "--batch", "3")
    assert done.returncode == 2
    assert ("--batch 3: the server's max_output_elements allows at most 2 samples per request"
            in done.stderr)


@pytest.mark.parametrize("source, flags, message", [
    (COCO, ["--all", "--per", "image"],
     "--per image: 5 people in one image, over the server's max_instances of 4"),
    (DATA / "face" / "einstein.pts", ["--input-size", "1024", "817"],
     "--size 64 48: one sample of 68 keypoints is over the server's max_output_elements"),
])
def test_what_no_request_can_hold_is_refused_naming_the_flag(small_server, tmp_path, source,
                                                             flags, message):
    done = _client(small_server.target, "render", str(source), *flags,
                   "--out", str(tmp_path / "x.npy"))
    assert done.returncode == 2
    assert message in done.stderr
    assert not list(tmp_path.iterdir())


def _coco_people() -> dict[int, list[dict]]:
    data = json.loads(COCO.read_text())
    people: dict[int, list[dict]] = {}
    for annotation in data["annotations"]:
        people.setdefault(annotation["image_id"], []).append(annotation)
    return {image["id"]: people[image["id"]] for image in data["images"] if image["id"] in people}


def _coco_expected(image_id: int, instances: bool = False):
    data = read_coco(COCO, image_id)
    keypoints, visibility = data.keypoints, data.visibility
    if instances:
        keypoints, visibility = keypoints[None], visibility[None]
    return render_heatmaps(keypoints, (64, 48), 2.0, coords="pixel", input_size=data.image_size,
                           visibility=visibility)


def test_coco_whole_file_per_person(live_server, tmp_path):
    out = tmp_path / "people.npz"
    done = _client(live_server.target, "render", str(COCO), "--all", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # several requests, but stderr is no terminal: no bar
    assert done.stdout.startswith(f"{out}: 14x17x64x48 float32, ")
    assert _requests(done.stdout) == 4  # the 4 images differ in size: one request each
    saved = np.load(out)
    people = _coco_people()
    assert saved["image_id"].tolist() == [i for i, group in people.items() for _ in group]
    assert saved["annotation_id"].tolist() == [a["id"] for group in people.values() for a in group]
    row = 0
    for image_id, group in people.items():
        expected = _coco_expected(image_id)
        np.testing.assert_array_equal(saved["heatmaps"][row:row + len(group)],
                                      expected.heatmaps.numpy())
        np.testing.assert_array_equal(saved["weights"][row:row + len(group)],
                                      expected.weights.numpy())
        row += len(group)
    # COCO's v = 2 (visible) is labelled, a weight of 1: never 2.
    assert any(2 in a["keypoints"][2::3] for group in people.values() for a in group)
    assert set(np.unique(saved["weights"])) <= {0.0, 1.0}


def test_coco_whole_file_one_multi_person_map_per_image(live_server, tmp_path):
    out, weights, png = tmp_path / "images.npy", tmp_path / "w.npy", tmp_path / "all.png"
    done = _client(live_server.target, "render", str(COCO), "--all", "--per", "image",
                   "--out", str(out), "--weights-out", str(weights), "--png", str(png))
    assert done.returncode == 0, done.stderr
    people = _coco_people()
    most = max(len(group) for group in people.values())
    heatmaps, saved_weights = np.load(out), np.load(weights)
    assert heatmaps.shape == (len(people), 17, 64, 48)
    assert saved_weights.shape == (len(people), most, 17)
    for row, (image_id, group) in enumerate(people.items()):
        expected = _coco_expected(image_id, instances=True)
        np.testing.assert_array_equal(heatmaps[row], expected.heatmaps.numpy()[0])
        np.testing.assert_array_equal(saved_weights[row, :len(group)],
                                      expected.weights.numpy()[0])
        assert not saved_weights[row, len(group):].any()  # padding: visibility 0, weight 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_coco_one_image_as_one_multi_person_map(live_server, tmp_path):
    out = tmp_path / "one.npy"
    done = _client(live_server.target, "render", str(COCO), "--image-id", "196141",
                   "--per", "image", "--out", str(out))
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(out),
                                  _coco_expected(196141, instances=True).heatmaps.numpy())


def _face_folder(tmp_path: Path) -> Path:
    """A 300-W style folder: two faces with their images (sizes differ), one in a subfolder."""
    folder = tmp_path / "faces"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(DATA / "face" / "einstein.pts", folder / "a_einstein.pts")
    shutil.copy(DATA / "face" / "einstein.jpg", folder / "a_einstein.jpg")
    face = json.loads((DATA / "300w" / "test_300w.json").read_text())["annotations"][1]
    assert face["image_id"] == 565
    points = np.array(face["keypoints"], np.float64).reshape(-1, 3)[:, :2]
    lines = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    (folder / "sub" / "indoor_020.pts").write_text(f"version: 1\nn_points: 68\n{{\n{lines}\n}}\n")
    shutil.copy(DATA / "300w" / "indoor_020.png", folder / "sub" / "indoor_020.png")
    return folder


def test_pts_folder_renders_every_face_sorted_by_name(live_server, tmp_path):
    folder = _face_folder(tmp_path)
    out = tmp_path / "faces.npz"
    done = _client(live_server.target, "render", str(folder), "--size", "64", "64",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert _requests(done.stdout) == 2  # one per image size
    saved = np.load(out)
    assert saved["name"].tolist() == ["a_einstein.pts", "sub/indoor_020.pts"]
    for row, (name, size) in enumerate([("a_einstein", (1024, 817)),
                                        ("sub/indoor_020", (768, 726))]):
        expected = render_heatmaps(read_pts(folder / f"{name}.pts").keypoints, (64, 64), 2.0,
                                   coords="pixel", input_size=size)
        np.testing.assert_array_equal(saved["heatmaps"][row], expected.heatmaps.numpy()[0])


def test_pts_folder_without_images_needs_a_size(live_server, tmp_path):
    folder = _face_folder(tmp_path)
    (folder / "sub" / "indoor_020.png").unlink()
    done = _client(live_server.target, "render", str(folder), "--coords", "pixel",
                   "--out", str(tmp_path / "x.npy"))
    assert done.returncode == 2
    assert "--coords pixel: no image size for sub/indoor_020.pts" in done.stderr
    (folder / "a_einstein.jpg").unlink()
    # No size at all: heatmap pixels, where the image-pixel faces land nowhere (nothing written).
    done = _client(live_server.target, "render", str(folder), "--size", "64", "64",
                   "--out", str(tmp_path / "x.npy"))
    assert done.returncode == 3
    assert "0 of 136 keypoints landed on the 64x64 heatmap; image pixels?" in done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["faces"]


@pytest.mark.parametrize("source, flags, message", [
    (COCO, ["--all", "--image-id", "785"], "--all renders every image of the file: --image-id"),
    (DATA / "face" / "einstein.pts", ["--per", "image"], "--per image: only for a COCO .json"),
    (COCO, ["--weights-out", "w.npy", "--out", "x.npz"], "--weights-out: the .npz of --out holds"),
    (DATA / "face", ["--image", str(DATA / "face" / "einstein.jpg")],
     "--image: a folder's faces take their sizes from the images beside them"),
])
def test_contradicting_flags_are_usage_errors(live_server, tmp_path, source, flags, message):
    out = [] if "--out" in flags else ["--out", "x.npy"]
    done = _client(live_server.target, "render", str(source), *flags, *out, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert not list(tmp_path.iterdir())


def _help_examples(text: str) -> list[str]:
    """The commands the help's examples show, continuation lines joined."""
    commands, pending = [], ""
    for line in text.splitlines():
        line = line.strip()
        if pending or line.startswith("heatmap-client render "):
            pending += line.rstrip("\\").strip() + " "
            if not line.endswith("\\"):
                commands.append(pending.strip())
                pending = ""
    return commands


def test_help_shows_both_forms_and_its_examples_run(live_server, tmp_path):
    done = subprocess.run([str(BIN / "heatmap-client"), "render", "--help"], capture_output=True,
                          text=True, check=True)
    assert "examples:" in done.stdout
    examples = _help_examples(done.stdout)
    assert any("einstein.pts" in command and "--png" in command for command in examples)
    assert any("--all" in command and "--per image" in command for command in examples)
    (tmp_path / "tests").symlink_to(DATA.parent)
    runnable = [command for command in examples if "tests/data/" in command]
    assert len(runnable) == 3
    for command in runnable:
        args = command.split()[2:]  # after "heatmap-client render"
        ran = _client(live_server.target, "render", *args, cwd=tmp_path)
        assert ran.returncode == 0, (command, ran.stderr)
        out = args[args.index("--out") + 1]
        assert (tmp_path / out).stat().st_size > 0 and SUMMARY.match(ran.stdout.strip())
