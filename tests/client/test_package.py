"""The client package stays light and its public surface is deliberate."""

from __future__ import annotations

import pickle
import subprocess
import sys

import heatmap_client


def test_import_does_not_pull_in_torch():
    code = "import sys, heatmap_client; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_client_never_imports_the_server():
    code = (
        "import sys, heatmap_client, heatmap_client.cli, heatmap_client.keypoint_files;"
        "print(any(name.startswith('heatmap_server') for name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_all_is_complete_and_sorted():
    public = {
        name for name in dir(heatmap_client)
        if not name.startswith("_") and not isinstance(getattr(heatmap_client, name), type(sys))
    }
    assert sorted(heatmap_client.__all__) == heatmap_client.__all__
    assert public == set(heatmap_client.__all__) - {"__version__"}


def test_client_pickles_without_its_channel():
    client = heatmap_client.HeatmapClient("127.0.0.1:1", timeout=3)
    copy = pickle.loads(pickle.dumps(client))
    assert copy.target == client.target and copy.timeout == 3
