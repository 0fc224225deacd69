"""Each distribution installs and works on its own, in a fresh venv, as a user installs it.

- ``pip install ./render`` beside torch alone renders, and nothing of gRPC or protobuf is there;
- then ``pip install './client[torch]'`` gives a working ``HeatmapCollate("local")`` (dense and
  separable) with no ``heatmap_server`` installed.

One venv serves both steps (the second adds to the first), from this checkout and the package
registry (pip's own cache under ~/.cache keeps reruns fast); torch is the pinned build the Makefile
installs first, so no other build is pulled.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TORCH = re.search(r"^TORCH_VERSION \?= (\S+)", (REPO / "Makefile").read_text(), re.M)[1]

RENDER_ALONE = textwrap.dedent("""
    import importlib.util
    import heatmap_render
    heatmaps, weights = heatmap_render.render_heatmaps([[[10.0, 12.0], [40.0, 3.0]]], (32, 48), 2.0)
    assert tuple(heatmaps.shape) == (1, 2, 32, 48) and float(heatmaps[0, 0, 12, 10]) == 1.0
    absent = [name for name in ("grpc", "google.protobuf", "heatmap_client", "heatmap_server")
              if importlib.util.find_spec(name.split(".")[0]) is not None]
    print("absent" if not absent else f"present: {absent}")
""")

LOCAL_COLLATE = textwrap.dedent("""
    import importlib.util
    import numpy as np
    import torch
    from heatmap_client.torch import HeatmapCollate
    import heatmap_render

    samples = [{"keypoints": np.array([[10.0, 12.0], [40.5, 3.25]], np.float32)} for _ in range(3)]
    dense = HeatmapCollate("local", size=(32, 48), sigma=2.0)(samples)
    separable = HeatmapCollate("local", size=(32, 48), sigma=2.0, output="separable")(samples)
    expected = heatmap_render.render_heatmaps(np.stack([s["keypoints"] for s in samples]),
                                              (32, 48), 2.0).heatmaps
    assert torch.equal(dense["heatmaps"], expected)
    assert torch.equal(separable["heatmaps"].to("cpu"), expected)
    print("server", importlib.util.find_spec("heatmap_server") is not None)
""")


def _pip(python: Path, *args: str, timeout: float = 600) -> None:
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode != 0 and "No matching distribution" in done.stderr + done.stdout:
        pytest.skip(f"the package registry is not reachable here: {done.stderr[-500:]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _run(python: Path, code: str) -> str:
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_the_renderer_alone_then_the_client_with_its_torch_extra(tmp_path):
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    _pip(python, f"torch=={TORCH}")
    _pip(python, "./render")
    assert _run(python, RENDER_ALONE) == "absent"
    _pip(python, "./render", "./client[torch]")
    assert _run(python, LOCAL_COLLATE) == "server False"
