"""The front page and the reference pages stay true to the code: every server flag in
docs/server.md, the test command CI runs on the front page, and the front page small."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from heatmap_server.app import ServerConfig, env_name

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_server_flag_and_variable_is_documented():
    reference = (ROOT / "docs" / "server.md").read_text()
    for spec in fields(ServerConfig):
        flag = "--" + spec.name.replace("_", "-")
        assert f"| `{flag}` | `{env_name(spec.name)}` |" in reference, flag


def test_the_front_page_stays_a_front_page():
    assert len(README.encode()) <= 15 * 1024
    for link in re.findall(r"\]\(((?:docs|examples)/[^)#]+)", README):
        assert (ROOT / link).is_file(), link


def test_readme_shows_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in README
