"""The client installs beside training stacks pinned to old protobuf and grpcio, and renders.

Each case builds a fresh venv, installs the client from this checkout with the stack's pins by
name from the package registry (pip's own cache under ~/.cache keeps reruns fast), and renders
against the real server, which runs in this repository's environment, over 127.0.0.1. The stubs'
floors come from the generator pinned in requirements-dev.txt; a newer generator raises them and
these installs or imports fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest

from heatmap_render import render_heatmaps

REPO = Path(__file__).resolve().parents[2]

# (pins a training stack might hold, the majors/minors the client must then run on)
STACKS = {
    "protobuf6-grpcio1.7x": (["protobuf>=6,<7", "grpcio>=1.70,<1.80"], ("6.", "1.7")),
    "protobuf5.26-grpcio1.63": (["protobuf==5.26.1", "grpcio>=1.63,<1.64"], ("5.26.", "1.63.")),
    # The newest runtimes too: the dev tools hold this repository's own venv at protobuf 5.
    "protobuf7-newest": (["protobuf>=7,<8", "grpcio>=1.85"], ("7.", "1.")),
}

# Run inside the fresh venv: -W error, so a stub complaining about its runtime fails the case.
RENDER = textwrap.dedent("""
    import json, sys
    from importlib import metadata
    import numpy as np
    from heatmap_client import HeatmapClient

    target, out = sys.argv[1], sys.argv[2]
    keypoints = np.array([[[10.0, 20.0], [47.0, 3.5], [-30.0, 5.0]]], np.float32)
    with HeatmapClient(target, timeout=30) as client:
        health = client.health()
        result = client.render(keypoints, size=(32, 48), sigma=2.0, method="udp", codec="separable")
    np.save(out, result.heatmaps)
    print(json.dumps({"health": health, "weights": result.weights.tolist(),
                      "versions": {name: metadata.version(name) for name in
                                   ("protobuf", "grpcio", "grpcio-health-checking")}}))
""")


def _registry_reachable(python: Path) -> bool:
    done = subprocess.run([str(python), "-m", "pip", "index", "versions", "protobuf"],
                          capture_output=True, text=True, timeout=120)
    return done.returncode == 0


@pytest.mark.packaging
@pytest.mark.timeout(600)
@pytest.mark.parametrize("stack", list(STACKS))
def test_client_installs_and_renders_beside_a_pinned_stack(stack, live_server, tmp_path):
    pins, (protobuf_prefix, grpcio_prefix) = STACKS[stack]
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    if not _registry_reachable(python):
        pytest.skip("the package registry is unreachable: cannot install the pinned stack")
    # A copy, so that building the wheel writes nothing into the checkout.
    source = tmp_path / "client"
    shutil.copytree(REPO / "client", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(source), *pins],
                             capture_output=True, text=True, timeout=540)
    assert install.returncode == 0, install.stderr[-4000:]

    out = tmp_path / "heatmaps.npy"
    done = subprocess.run([str(python), "-W", "error", "-c", RENDER, live_server.target, str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["versions"]["protobuf"].startswith(protobuf_prefix), report["versions"]
    assert report["versions"]["grpcio"].startswith(grpcio_prefix), report["versions"]
    assert report["health"] == "SERVING"

    keypoints = np.array([[[10.0, 20.0], [47.0, 3.5], [-30.0, 5.0]]], np.float32)
    expected = render_heatmaps(keypoints, (32, 48), 2.0, method="udp")
    np.testing.assert_array_equal(np.load(out), expected.heatmaps.numpy())
    np.testing.assert_array_equal(np.asarray(report["weights"], np.float32),
                                  expected.weights.numpy())
    assert expected.weights.numpy().tolist() == [[1.0, 1.0, 0.0]]  # the off-map one is empty


def test_the_client_declares_the_stubs_floors():
    # The floors in client/pyproject.toml are what the committed stubs need, no higher.
    generated = (REPO / "client" / "src" / "heatmap" / "v1" / "heatmap_pb2_grpc.py").read_text()
    grpc_floor = generated.split("GRPC_GENERATED_VERSION = '")[1].split("'")[0]
    pyproject = (REPO / "client" / "pyproject.toml").read_text()
    major, minor = grpc_floor.split(".")[:2]
    assert f'"grpcio>={major}.{minor}"' in pyproject
    assert f'"grpcio-health-checking>={major}.{minor}"' in pyproject
    header = (REPO / "client" / "src" / "heatmap" / "v1" / "heatmap_pb2.py").read_text()
    protobuf_floor = header.split("# Protobuf Python Version: ")[1].split()[0]
    assert f'"protobuf>={protobuf_floor},<8"' in pyproject
