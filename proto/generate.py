"""Writes the committed Python stubs for proto/heatmap/v1/heatmap.proto (``make proto``).

The folder tree under proto/ mirrors the import path (``heatmap.v1``), so the generated modules
import each other without any rewriting. Output goes to ``client/src`` unless ``--out`` is given;
the stub test regenerates into a temporary folder and compares byte for byte.

The generator versions are pinned in requirements-dev.txt and checked here: the stubs' own
version floor (protobuf runtime, grpcio) is the generator's, so an upgraded generator would
silently raise the lowest protobuf and grpcio the client installs beside.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO = PROTO_ROOT.parent
PROTOS = ["heatmap/v1/heatmap.proto"]
GENERATORS = ("grpcio-tools", "mypy-protobuf")


def pinned_generators() -> dict[str, str]:
    """``{distribution: version}`` for the generators, from requirements-dev.txt's ``==`` pins."""
    text = (REPO / "requirements-dev.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.MULTILINE))
    return {name: pins[name] for name in GENERATORS}


def check_generators() -> None:
    for name, wanted in pinned_generators().items():
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed: make install") from None
        if found != wanted:
            raise SystemExit(f"{name} {found} is installed, requirements-dev.txt pins {wanted}: "
                             "the stubs' protobuf and grpcio floors follow the generator's version")


def generate(out: Path) -> None:
    check_generators()
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
