"""The renderer is pure torch: importing it pulls in neither gRPC nor protobuf."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys
import heatmap_server.render
forbidden = ("grpc", "google.protobuf")
loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
print(json.dumps(loaded))
"""


def test_renderer_imports_neither_grpc_nor_protobuf():
    # A fresh interpreter: this process may already hold grpc from other tests.
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
