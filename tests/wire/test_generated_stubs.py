"""The committed stubs are exactly what ``make proto`` writes from the .proto."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATED = ["heatmap_pb2.py", "heatmap_pb2.pyi", "heatmap_pb2_grpc.py"]


def test_regenerated_stubs_match_the_committed_ones(tmp_path):
    # make install provides the pinned generator; a machine running the tests from a bare
    # environment (the GPU check) may not have it, and then has nothing to compare.
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (make install has it)")
    subprocess.run(
        [sys.executable, str(REPO / "proto" / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = REPO / "client" / "src" / "heatmap" / "v1"
    for name in GENERATED:
        assert filecmp.cmp(tmp_path / "heatmap" / "v1" / name, committed / name, shallow=False), (
            f"{name} differs from proto/heatmap/v1/heatmap.proto: run `make proto` and commit"
        )
