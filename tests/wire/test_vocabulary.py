"""One wire vocabulary: every proto enum value named in one module, and the renderer implements
every name the wire has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client import wire

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = ROOT / "client/src/heatmap_client/wire/vocabulary.py"
TABLES = {
    "Method": wire.METHODS,
    "CoordinateSpace": wire.COORDINATE_SPACES,
    "DType": wire.DTYPE_NAMES,
    "Codec": wire.CODEC_NAMES,
    "Target": wire.TARGETS,
    "Smoothing": wire.SMOOTHINGS,
}


def _hand_written(*folders: str) -> list[Path]:
    return [
        path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))
        if "_pb2" not in path.name and ".venv" not in path.parts
    ]


@pytest.mark.parametrize("enum", list(TABLES))
def test_every_enum_value_has_exactly_one_name(enum):
    values = {v.number for v in pb.DESCRIPTOR.enum_types_by_name[enum].values if v.number != 0}
    table = TABLES[enum]
    assert sorted(table.protos) == sorted(values)
    assert len(set(table.names)) == len(table.names)
    assert all(table.name(table.proto(name)) == name for name in table.names)
    assert table.name(0) == table.default


def test_unknown_names_are_refused_naming_the_argument():
    with pytest.raises(wire.ArgumentError) as caught:
        wire.METHODS.proto("gaussian")
    assert caught.value.argument == "method" and str(caught.value).startswith("method: ")
    assert wire.COORDINATE_SPACES.name(99) is None


def test_proto_enum_values_are_named_in_the_vocabulary_only():
    names = [
        value.name for enum in TABLES for value in pb.DESCRIPTOR.enum_types_by_name[enum].values
    ]
    named = re.compile(r"\b(?:" + "|".join(names) + r")\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _hand_written("client/src", "server/src", "render/src") if path != VOCABULARY
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if named.search(line)
    ]
    assert not offenders, offenders


def test_the_renderer_implements_every_name_the_wire_has():
    import heatmap_render as render

    assert set(render.METHODS) == set(wire.METHODS.names)
    assert set(render.COORDS) == set(wire.COORDINATE_SPACES.names)
    assert {dtype.render_as for dtype in wire.WIRE_DTYPES.values()} <= set(render.DTYPES)
