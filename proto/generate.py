"""Writes the committed Python stubs for proto/heatmap/v1/heatmap.proto (``make proto``).

The folder tree under proto/ mirrors the import path (``heatmap.v1``), so the generated modules
import each other without any rewriting. Output goes to ``client/src`` unless ``--out`` is given;
the stub test regenerates into a temporary folder and compares byte for byte.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO = PROTO_ROOT.parent
PROTOS = ["heatmap/v1/heatmap.proto"]


def generate(out: Path) -> None:
    plugin = shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent))
    if plugin is None:
        raise SystemExit("protoc-gen-mypy not found: install mypy-protobuf (make install)")
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in ("heatmap", "heatmap/v1"):
        init = out / package / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated from proto/; do not edit (make proto)."""\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "client" / "src")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
