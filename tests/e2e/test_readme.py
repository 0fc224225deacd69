"""The README's tables stay true to the code."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from heatmap_server.app import ServerConfig, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_server_flag_and_variable_is_documented():
    for spec in fields(ServerConfig):
        flag = "--" + spec.name.replace("_", "-")
        assert f"| `{flag}` | `{env_name(spec.name)}` |" in README, flag


def test_readme_shows_the_test_command_ci_runs():
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in README
