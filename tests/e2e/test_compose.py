"""docker-compose.yml, checked without a Docker engine.

- against the Compose spec's schema, and with ``docker-compose config`` where Debian's
  docker-compose is installed;
- what it publishes, where: every port on the host's loopback unless HOST_ADDRESS says otherwise;
- the compose server's own command, environment and healthcheck on the host against a real server
  (up -> healthy, down -> unhealthy), and the Dockerfile's HEALTHCHECK the same way.

tests/e2e/test_docker_image.py runs the compose file on a real engine where one can start.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import yaml

from deployment_files import (
    BIN,
    COMPOSE,
    ROOT,
    arg_defaults,
    assert_server_settings,
    compose,
    final_stage,
    image_env,
    interpolate,
    one,
)
from live_server import LiveServer
from probes import free_port


def test_compose_file_follows_the_compose_spec():
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _docker_compose() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"]], ids=["default", "gpu"])
def test_docker_compose_config_is_clean(profile):
    tool = _docker_compose()
    if tool is None:
        pytest.skip("no docker-compose here (Debian: apt-get install docker-compose); "
                    "the Compose-spec schema check still ran")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("COMPOSE_", "DOCKER_"))}
    done = subprocess.run([*tool, "-f", str(COMPOSE), *profile, "config", "-q"], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", f"docker-compose config warns:\n{done.stderr}"


def _published(entry: str) -> tuple[str, str, int]:
    """``[address:][host port]:container port`` after interpolation, as three parts."""
    parts = interpolate(str(entry)).rsplit(":", 2)
    address, host, target = parts if len(parts) == 3 else ["", *parts]
    return address, host, int(target)


def test_compose_wires_server_loader_replicas_and_gpu():
    services = compose()["services"]
    server, loader = services["server"], services["loader"]
    env = {name: interpolate(str(value)) for name, value in server["environment"].items()}
    config = assert_server_settings(env, "docker-compose.yml server")
    # The server: each port published on the same fixed host port, never a range (Docker would
    # pick any free port of a range).
    assert "container_name" not in server
    published = {target: host for _, host, target in map(_published, server["ports"])}
    assert published == {config.port: str(config.port),
                         config.metrics_port: str(config.metrics_port)}
    assert server["restart"] in {"always", "unless-stopped", "on-failure"}
    grace = float(server["stop_grace_period"].rstrip("s"))
    assert grace > config.grace_s, "Docker must not kill the server inside its own grace period"
    # Replicas: the same server under the server's DNS name, on host ports Docker picks, so that
    # `--scale replica=N` never collides with the server's fixed ports or each other.
    replica = services["replica"]
    assert replica["profiles"] == ["replicas"] and "container_name" not in replica
    assert {key: value for key, value in replica.items()
            if key not in {"ports", "profiles", "networks"}} \
        == {key: value for key, value in server.items() if key != "ports"}
    assert replica["networks"]["default"]["aliases"] == ["server"]
    assert sorted((host, target) for _, host, target in map(_published, replica["ports"])) == \
        sorted(("", port) for port in (config.port, config.metrics_port))
    # The demo loader waits for a healthy server and reaches every replica through DNS.
    assert loader["depends_on"] == {"server": {"condition": "service_healthy"}}
    assert f"dns:///server:{config.port}" in loader["command"]
    script = next(arg for arg in loader["entrypoint"] if arg.endswith(".py"))
    assert (ROOT / script).is_file(), f"the loader runs {script}, which the repository lacks"
    assert loader["image"] == server["image"] and loader["build"] == server["build"]
    assert loader["healthcheck"] == {"disable": True}, "the image's check asks for a server"
    # The gpu profile: the same server on the CUDA build, one NVIDIA device reserved.
    gpu, gpu_loader = services["server-gpu"], services["loader-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu_loader["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"] == {**server["environment"], "HEATMAP_DEVICE": "cuda",
                                  "HEATMAP_ENCODE_THREADS": "4"}
    assert gpu["healthcheck"] == server["healthcheck"] and gpu["ports"] == server["ports"]
    assert set(gpu["build"]["args"]) <= set(arg_defaults()), "build args the Dockerfile lacks"
    assert gpu["image"] != server["image"] and gpu_loader["image"] == gpu["image"]
    assert gpu_loader["depends_on"] == {"server-gpu": {"condition": "service_healthy"}}
    assert f"dns:///server-gpu:{config.port}" in gpu_loader["command"]


# Where each service publishes, as Compose reads it: with the variable unset, and set.
PUBLISHED = [({}, "127.0.0.1"), ({"HOST_ADDRESS": "0.0.0.0"}, "0.0.0.0")]


def _address(entry: str | dict) -> str:
    """The host address of a published port: short syntax (``[address:][host:]target``, as
    Debian's docker-compose 1 prints it too) or long syntax (``host_ip``, as Compose 2 prints)."""
    if isinstance(entry, dict):
        return entry.get("host_ip", "")
    parts = entry.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else ""


@pytest.mark.parametrize(("environ", "address"), PUBLISHED, ids=["unset", "every-interface"])
def test_compose_publishes_on_loopback_unless_told(environ, address):
    services = compose()["services"]
    published = {name: {_address(interpolate(str(entry), environ)) for entry in service["ports"]}
                 for name, service in services.items() if "ports" in service}
    assert set(published) == {"server", "replica", "server-gpu"}
    assert published == dict.fromkeys(published, {address})


@pytest.mark.parametrize(("environ", "address"), PUBLISHED, ids=["unset", "every-interface"])
def test_docker_compose_config_publishes_on_loopback_unless_told(environ, address):
    tool = _docker_compose()
    if tool is None:
        pytest.skip("no docker-compose here (Debian: apt-get install docker-compose); "
                    "test_compose_publishes_on_loopback_unless_told read the file itself")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("COMPOSE_", "DOCKER_")) and name != "HOST_ADDRESS"}
    done = subprocess.run([*tool, "-f", str(COMPOSE), "--profile", "replicas", "--profile", "gpu",
                           "config"], cwd=ROOT, capture_output=True, text=True,
                          env={**env, **environ}, timeout=60)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    published = {name: {_address(entry) for entry in service["ports"]}
                 for name, service in services.items() if service.get("ports")}
    assert set(published) == {"server", "replica", "server-gpu"}
    assert published == dict.fromkeys(published, {address})


def _start(argv: list[str], env: dict[str, str], port: int, timeout: float = 60) -> LiveServer:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=env)
    lines: list[str] = []
    listening = threading.Event()

    def drain() -> None:
        try:
            for line in process.stderr:
                lines.append(line.rstrip())
                if f"listening on 127.0.0.1:{port}" in line:
                    listening.set()
        except (OSError, ValueError):
            pass  # closed by stop()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not listening.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            pytest.fail(f"{shlex.join(argv)} did not listen on {port}:\n" + "\n".join(lines))
    return LiveServer(process, port, lines)


def _healthchecks() -> dict[str, tuple[list[str], float]]:
    """The compose and the Dockerfile healthcheck, as argv, with the timeout each declares."""
    check = compose()["services"]["server"]["healthcheck"]
    test = check["test"]
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if test[0] == "CMD-SHELL":
        compose_argv = ["sh", "-c", interpolate(test[1])]
    else:
        assert test[0] == "CMD", test
        compose_argv = [interpolate(arg) for arg in test[1:]]
    image = one(final_stage(), "HEALTHCHECK")
    assert image.value[0] == "CMD", image
    image_argv = list(image.value[1:]) if image.json else ["sh", "-c", image.value[1]]
    image_timeout = next(flag for flag in image.flags if flag.startswith("--timeout="))
    return {
        "docker-compose.yml": (compose_argv, float(check["timeout"].rstrip("s"))),
        "Dockerfile": (image_argv, float(image_timeout.split("=")[1].rstrip("s"))),
    }


def _run_check(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, float, str]:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout + 30)
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


def _run_loader(port: int) -> None:
    """The compose loader's command, a few batches through ``dns:///`` to the host's server."""
    services = compose()["services"]
    target = f"dns:///server:{services['server']['environment']['HEATMAP_PORT']}"
    argv = [*services["loader"]["entrypoint"], *services["loader"]["command"]]
    assert argv[0] == "python" and target in argv, argv
    argv = [sys.executable, *(arg.replace(target, f"dns:///127.0.0.1:{port}") for arg in argv[1:])]
    done = subprocess.run([*argv, "--batches", "2", "--num-workers", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "samples/s" in done.stdout, done.stdout + done.stderr


def test_compose_server_and_its_healthcheck_run_on_the_host():
    """The compose server's command and environment on the host; healthy up, unhealthy down."""
    server = compose()["services"]["server"]
    final = final_stage()
    argv = [*(server.get("entrypoint") or one(final, "ENTRYPOINT").value),
            *(server.get("command") or one(final, "CMD").value)]
    assert (BIN / argv[0]).is_file(), f"{argv[0]} is not a console script of the packages"
    port, metrics_port = free_port(), free_port()
    settings = {name: value for name, value in image_env().items() if name.startswith("HEATMAP_")}
    settings.update({name: interpolate(str(value))
                     for name, value in server["environment"].items()})
    # What differs on the host: loopback only, and free ports instead of the container's own.
    settings.update(HEATMAP_HOST="127.0.0.1", HEATMAP_PORT=str(port),
                    HEATMAP_METRICS_PORT=str(metrics_port))
    env = {**os.environ, **settings, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    checks = _healthchecks()

    live = _start([str(BIN / argv[0]), *argv[1:]], env, port)
    try:
        for where, (check, timeout) in checks.items():
            code, took, output = _run_check(check, env, timeout)
            assert code == 0, f"{where} healthcheck on a live server: {code}\n{output}"
            assert took < timeout, f"{where} healthcheck took {took:.1f} s, over its {timeout} s"
        with urllib.request.urlopen(
                f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
            assert reply.status == 200 and b"# TYPE" in reply.read()
        _run_loader(port)
    finally:
        assert live.stop() == 0, live.log
    for where, (check, timeout) in checks.items():
        code, _, output = _run_check(check, env, timeout)
        # Docker reads 1 as unhealthy; 2 is reserved.
        assert code == 1, f"{where} healthcheck on a stopped server: {code}\n{output}"

