"""The import arrows point down (render <- client.torch, render <- server, client.wire <- server),
and each file holds one idea.

Read from the sources as text, as a reviewer would: a fresh interpreter then checks what importing
each layer really loads.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "client/src/heatmap_client"
WIRE = CLIENT / "wire"
RENDER = ROOT / "render/src/heatmap_render"
SERVER = ROOT / "server/src/heatmap_server"


def _hand_written(*folders: Path) -> list[Path]:
    return [
        path for folder in folders for path in sorted(folder.rglob("*.py"))
        if "_pb2" not in path.name and ".venv" not in path.parts
    ]


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import statement of a file (relative ones resolved)."""
    package = ".".join(path.relative_to(path.parents[len(path.relative_to(ROOT).parts) - 3])
                       .with_suffix("").parts[:-1])
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.match(r"\s*(?:from\s+(\.*)([\w.]*)\s+import|import\s+([\w.]+))", line)
        if not match:
            continue
        dots, name, plain = match.groups()
        if plain:
            found.append((number, plain))
        elif dots:
            base = package.split(".")[: len(package.split(".")) - (len(dots) - 1)]
            found.append((number, ".".join(base + ([name] if name else []))))
        else:
            found.append((number, name))
    return found


def _offenders(paths: list[Path], forbidden) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{number} imports {module}"
        for path in paths for number, module in _imports(path) if forbidden(module)
    ]


def test_the_wire_imports_nothing_above_it():
    def above(module: str) -> bool:
        return module.startswith("heatmap_client") and not module.startswith(
            "heatmap_client.wire")

    assert not _offenders(_hand_written(WIRE), above)
    assert not _offenders(_hand_written(WIRE), lambda m: m.startswith(("heatmap_server",
                                                                        "heatmap_render")))


def test_no_client_module_imports_the_server():
    assert not _offenders(_hand_written(CLIENT), lambda m: m.startswith("heatmap_server"))


def test_the_renderer_imports_nothing_of_ours_nor_grpc():
    ours = ("heatmap_server", "heatmap_client", "heatmap.", "grpc", "google.protobuf")
    assert not _offenders(_hand_written(RENDER), lambda m: m.startswith(ours))


def test_nobody_imports_a_private_module_of_another_package():
    private = re.compile(r"^heatmap_(client|server|render)(\.\w+)*\._[a-z]")
    for package, folder in (("heatmap_client", CLIENT), ("heatmap_server", SERVER),
                            ("heatmap_render", RENDER)):
        others = [path for path in _hand_written(ROOT / "client/src", ROOT / "server/src",
                                                 ROOT / "render/src", ROOT / "bench",
                                                 ROOT / "tests", ROOT / "examples")
                  if folder not in path.parents]
        assert not _offenders(others, lambda m, p=package: m.startswith(p) and private.match(m))


def test_hand_written_source_files_hold_one_idea_each():
    long = {
        str(path.relative_to(ROOT)): count
        for path in _hand_written(CLIENT, SERVER, RENDER)
        if (count := len(path.read_text().splitlines())) > 400
    }
    assert not long, long


LOADED = """
import json, sys
import {module}
ours = ("heatmap_server", "heatmap_client", "heatmap_render", "torch", "grpc", "google.protobuf")
print(json.dumps(sorted({{m.split(".")[0] if not m.startswith("heatmap_client") else m
                          for m in sys.modules if m.startswith(ours)}})))
"""


def _loaded(module: str) -> set[str]:
    # A fresh interpreter: this process holds everything already.
    done = subprocess.run([sys.executable, "-c", LOADED.format(module=module)],
                          capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module, absent", [
    ("heatmap_render", {"heatmap_client", "heatmap_server", "grpc", "google"}),
    ("heatmap_client", {"torch", "heatmap_render", "heatmap_server"}),
    ("heatmap_client.wire", {"torch", "heatmap_client._client", "heatmap_client.results",
                             "heatmap_server"}),
    ("heatmap_client.torch", {"heatmap_server"}),
])
def test_importing_a_layer_loads_nothing_above_it(module, absent):
    loaded = _loaded(module)
    assert not {name for name in loaded for prefix in absent
                if name == prefix or name.startswith(prefix + ".")}, loaded


@pytest.mark.parametrize("package", ["heatmap_render", "heatmap_client", "heatmap_server"])
def test_every_public_name_exists(package):
    """``from package import *`` works: each name in ``__all__`` is really there."""
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, missing
