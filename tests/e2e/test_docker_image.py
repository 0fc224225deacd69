"""The real image on a real Docker engine, and the compose file run by docker compose.

The image builds as an air-gapped cluster builds it: the base is a Debian bookworm made by
``debootstrap`` (python3, python3-venv; the mirror is the one this machine's apt configuration
names) and every wheel comes from ``make wheelhouse``, installed with no index. Then, from the
host: ``docker compose up -d`` serves on 127.0.0.1:50051 (published on loopback only, HOST_ADDRESS
unset) and the demo loader exits 0; two more replicas each serve part of a second loader run;
``stop`` ends every server with exit code 0 (nothing killed after the grace period); the server
process is not root. And the server as the Kubernetes cpu overlay runs it: its environment, its
user, a read-only root with only its emptyDir mounts writable, no capabilities, no privilege
escalation; it serves the loader and exits 0 inside the pod's termination grace.

Runs wherever a Docker engine answers or can be started (as root, with ``dockerd`` installed: it is
started here and stopped again), and skips with its reason elsewhere. The base image (tag
``heatmap-test-base:bookworm``) and the wheelhouse (``$HEATMAP_TEST_CACHE``, by default
/var/cache/heatmap-test) are kept between runs as caches; the service image is built under a tag
of its own and removed, and the compose project is always taken down.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dockerfile
import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deployment_files import K8S, k8s_env, kustomize, only, prestop_seconds, server_container
from probes import free_port, scrape

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BASE_TAG = "heatmap-test-base:bookworm"
# The repository's own wheels (if any) stay out: the build takes the test's wheelhouse.
NOT_CONTEXT = shutil.ignore_patterns("__pycache__", "*.py[co]", "*.egg-info", "build", "dist",
                                     ".venv", "*.whl")
REPLICAS = 2  # besides the server: three in all


def _run(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def _ok(argv: list[str], timeout: float, **kwargs) -> str:
    done = _run(argv, timeout, **kwargs)
    assert done.returncode == 0, \
        f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


# --- the engine --------------------------------------------------------------------------------

def _engine_answers() -> bool:
    return _run(["docker", "info"], 30).returncode == 0


def _poll(condition, timeout: float, every: float = 1.0) -> bool:
    """``condition()`` until true or ``timeout`` seconds; each try is a docker call: not often."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[None]:
    """A Docker engine: the running one, or ``dockerd`` started here (and stopped after)."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI (Debian: apt-get install docker.io)")
    if _engine_answers():
        yield
        return
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        pytest.skip("no Docker engine answers, and none can be started here (needs root and "
                    "dockerd; Debian: apt-get install docker.io)")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        _poll(lambda: daemon.poll() is not None or _engine_answers(), timeout=60, every=0.5)
        if daemon.poll() is not None or not _engine_answers():
            pytest.skip(f"dockerd did not start here:\n{log.read_text()[-2000:]}")
        yield
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)


def _compose_tool() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if _run(["docker", "compose", "version"], 30).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("no docker compose (Debian: apt-get install docker-compose)")


# --- the base image: debootstrap bookworm from this machine's mirror -----------------------------

def _bookworm_mirror() -> str | None:
    """The first ``deb`` URI this machine's apt configuration gives for the ``bookworm`` suite."""
    apt = Path("/etc/apt")
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":  # deb822 stanzas
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([\w-]+):\s*(.*)$", stanza, re.M))
                if ("deb" in fields.get("Types", "").split()
                        and "bookworm" in fields.get("Suites", "").split()
                        and fields.get("Enabled", "yes") != "no"):
                    return fields["URIs"].split()[0]
        elif path.suffix == ".list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
                    return words[1]
    return None


def _cache_dir(tmp_path_factory) -> Path:
    wanted = Path(os.environ.get("HEATMAP_TEST_CACHE", "/var/cache/heatmap-test"))
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        if os.access(wanted, os.W_OK):
            return wanted
    except OSError:
        pass
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def base_image(engine, tmp_path_factory) -> str:
    if _run(["docker", "image", "inspect", BASE_TAG], 30).returncode == 0:
        return BASE_TAG
    if shutil.which("debootstrap") is None:
        pytest.skip("no debootstrap to make the bookworm base image (Debian: apt-get install "
                    "debootstrap)")
    mirror = _bookworm_mirror()
    if mirror is None:
        pytest.skip("this machine's apt configuration names no Debian bookworm mirror")
    rootfs = Path(tmp_path_factory.mktemp("rootfs")) / "bookworm"
    try:
        # make too, so that the build needs no network at all (it runs with --network none).
        _ok(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,make",
             "bookworm", str(rootfs), mirror], 900)
        # The base keeps apt's sources (the build may apt-get make) but not its downloads.
        for leftover in [rootfs / "var/cache/apt/archives", rootfs / "var/lib/apt/lists"]:
            for path in leftover.glob("*"):
                if path.is_file():
                    path.unlink()
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            _ok(["docker", "import", "-", BASE_TAG], 300, stdin=tar.stdout)
        assert tar.returncode == 0
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_TAG


# --- the service image: make wheelhouse, then docker build from it alone -------------------------

def _copied() -> list[str]:
    """What the Dockerfile copies from the context, besides the Dockerfile itself."""
    sources = ["Dockerfile", ".dockerignore"]
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "COPY" and not any(flag.startswith("--from") for flag in command.flags):
            sources += command.value[:-1]
    return sources


def _build_context(destination: Path, wheelhouse: Path) -> Path:
    """The repository's files the build copies, and the wheelhouse's wheels in wheelhouse/."""
    for name in _copied():
        source, target = ROOT / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=NOT_CONTEXT)
        else:
            shutil.copy2(source, target)
    for wheel in wheelhouse.glob("*.whl"):
        try:
            os.link(wheel, destination / "wheelhouse" / wheel.name)
        except OSError:  # another file system
            shutil.copy2(wheel, destination / "wheelhouse" / wheel.name)
    return destination


@pytest.fixture(scope="module")
def image(base_image, tmp_path_factory) -> Iterator[str]:
    wheelhouse = _cache_dir(tmp_path_factory) / "wheelhouse-cpu"
    venv = Path(sys.prefix)
    _ok(["make", "--no-print-directory", "-C", str(ROOT), "wheelhouse", f"VENV={venv}",
         "-o", str(venv / ".installed"), f"PIP={sys.executable} -m pip",
         f"WHEELHOUSE={wheelhouse}"], 900)
    torch = sorted(path.name for path in wheelhouse.glob("torch-*.whl"))
    assert torch and all("+cpu-" in name for name in torch), f"not the CPU build: {torch}"
    context = _build_context(tmp_path_factory.mktemp("context"), wheelhouse)
    tag = f"heatmap-service:test-{uuid.uuid4().hex[:12]}"
    # No network: every package comes from the wheelhouse, as in an air-gapped cluster.
    build = _run(["docker", "build", "--network", "none", "--build-arg",
                  f"BASE_IMAGE={base_image}", "-t", tag, str(context)], 1200)
    shutil.rmtree(context, ignore_errors=True)
    try:
        assert build.returncode == 0, build.stdout[-6000:] + build.stderr[-6000:]
        yield tag
    finally:
        # --no-prune keeps the layers underneath as the next build's cache.
        _run(["docker", "rmi", "--no-prune", tag], 120)


# --- compose -----------------------------------------------------------------------------------

def _port_or_free(preferred: int) -> int:
    """The compose default when this shared machine has it free, another free port otherwise."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _health(target: str, service: str = "") -> str:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def _renders(samples) -> float:
    return sum(value for (name, _), value in samples.items()
               if name == "heatmap_render_requests_total")


class Project:
    """One compose project of the repository's docker-compose.yml, under a name of its own."""

    def __init__(self, image: str):
        self.name = f"heatmap-e2e-{uuid.uuid4().hex[:8]}"
        self.grpc_port = _port_or_free(50051)
        self.metrics_port = _port_or_free(9100)
        # HOST_ADDRESS unset: the compose file's default, loopback only.
        self.env = {name: value for name, value in os.environ.items()
                    if not name.startswith(("COMPOSE_", "DOCKER_")) and name != "HOST_ADDRESS"}
        self.env.update(HEATMAP_SERVICE_IMAGE=image, HOST_GRPC_PORT=str(self.grpc_port),
                        HOST_METRICS_PORT=str(self.metrics_port))
        self.tool = [*_compose_tool(), "-p", self.name, "-f", str(ROOT / "docker-compose.yml")]

    def __call__(self, *args: str, replicas: bool = False, timeout: float = 300,
                 check: bool = True) -> str:
        argv = [*self.tool, *(["--profile", "replicas"] if replicas else []), *args]
        done = _run(argv, timeout, cwd=ROOT, env=self.env)
        assert not check or done.returncode == 0, \
            f"{' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout

    def containers(self, service: str) -> list[str]:
        return self("ps", "-a", "-q", service, replicas=True).split()

    def logs(self) -> str:
        return self("logs", "--no-color", "--tail", "60", replicas=True, check=False, timeout=60)


def _inspect(container: str, template: str) -> str:
    return _ok(["docker", "inspect", "-f", template, container], 30).strip()


def _logs(container: str) -> str:
    done = _run(["docker", "logs", "--tail", "30", container], 60)
    return done.stdout + done.stderr  # the server logs to stderr


def _all_healthy(containers: list[str]) -> bool:
    return all(_inspect(c, "{{.State.Health.Status}}") == "healthy" for c in containers)


@pytest.mark.packaging
@pytest.mark.timeout(1800)
def test_image_and_compose_on_a_real_engine(image):
    project = Project(image)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    grace = float(compose["server"]["stop_grace_period"].rstrip("s"))
    try:
        # up -d waits for the healthy server, then starts the loader.
        project("up", "-d", timeout=600)
        target = f"127.0.0.1:{project.grpc_port}"
        assert _health(target) == "SERVING"
        assert _health(target, "heatmap.v1.HeatmapRenderer") == "SERVING"
        cli = _run([str(BIN / "heatmap-client"), "--target", target, "health"], 60)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        (server,) = project.containers("server")
        (loader,) = project.containers("loader")
        for port in ("50051", "9100"):
            published = _ok(["docker", "port", server, port], 30).split()
            assert [address.rsplit(":", 1)[0] for address in published] == ["127.0.0.1"], \
                f"{port} published on {published}, not on loopback only"
        code = _ok(["docker", "wait", loader], 600).strip()
        assert code == "0", f"loader exit {code}\n{project.logs()}"
        assert "samples/s" in _ok(["docker", "logs", loader], 60)
        status = _ok(["docker", "exec", server, "cat", "/proc/1/status"], 60)
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M)[1].split()
        assert set(uids) == {"10001"}, f"the server runs as uids {uids}"

        # The image carries no pip and no torch tests.
        trimmed = _ok(["docker", "run", "--rm", "--entrypoint", "python", image, "-c",
                       "import importlib.util as u; print(u.find_spec('pip'), "
                       "u.find_spec('torch.test'))"], 120).strip()
        assert trimmed == "None None", trimmed

        # Two more replicas behind the same DNS name; a second loader run reaches all three.
        project("up", "-d", "--scale", f"replica={REPLICAS}", "server", "replica",
                replicas=True, timeout=600)
        replicas = project.containers("replica")
        assert len(replicas) == REPLICAS
        assert _poll(lambda: _all_healthy(replicas), timeout=180), project.logs()
        # From the host, as the README says: `docker compose port --index N replica 50051`.
        for index in range(1, REPLICAS + 1):
            published = project("port", "--index", str(index), "replica", "50051",
                                replicas=True).strip()
            assert published.startswith("127.0.0.1:"), published
            assert _health(published) == "SERVING", published
        metrics = {server: project.metrics_port}
        for replica in replicas:
            published = _ok(["docker", "port", replica, "9100"], 30).split()[0]
            metrics[replica] = int(published.rsplit(":", 1)[1])
        before = {container: _renders(scrape(port)) for container, port in metrics.items()}
        assert "samples/s" in project("run", "--rm", "-T", "loader", timeout=600)
        served = {container: _renders(scrape(port)) - before[container]
                  for container, port in metrics.items()}
        assert len(served) == REPLICAS + 1 and all(n > 0 for n in served.values()), served

        # SIGTERM: every server drains and exits 0 (137 would mean killed after the grace).
        started = time.monotonic()
        project("stop", replicas=True, timeout=grace * 4 + 60)
        took = time.monotonic() - started
        for container in [server, *replicas]:
            code = _inspect(container, "{{.State.ExitCode}}")
            assert code == "0", f"{container} exit {code} after stop ({took:.1f} s)\n" \
                                f"{_logs(container)}"
    finally:
        project("down", "-v", "--remove-orphans", replicas=True, timeout=300, check=False)


# --- the Kubernetes pod's settings on the image ------------------------------------------------

def _pod_run_args(deployment: dict) -> list[str]:
    """``docker run`` flags for what the pod's spec asks of the server container."""
    pod = deployment["spec"]["template"]["spec"]
    container = server_container(deployment)
    context = {**pod["securityContext"], **container["securityContext"]}
    args = ["--user", f"{context['runAsUser']}:{context['runAsGroup']}",
            "--cap-drop", "ALL"]
    if context["readOnlyRootFilesystem"]:
        args.append("--read-only")
    if context["allowPrivilegeEscalation"] is False:
        args += ["--security-opt", "no-new-privileges"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        assert "emptyDir" in volumes[mount["name"]], mount  # the only kind the overlays use
        args += ["--tmpfs", mount["mountPath"]]  # world-writable, as an emptyDir is
    for name, value in k8s_env(container).items():
        args += ["--env", f"{name}={value}"]
    return args


@pytest.mark.packaging
@pytest.mark.timeout(600)
def test_image_runs_as_the_kubernetes_pod(image):
    """Read-only root, the pod's user and environment, no capabilities: it serves and drains."""
    deployment = only(kustomize(K8S / "overlays" / "cpu"), "Deployment")
    container = server_container(deployment)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    name = f"heatmap-e2e-pod-{uuid.uuid4().hex[:8]}"
    _ok(["docker", "run", "-d", "--name", name, *_pod_run_args(deployment),
         "-p", f"127.0.0.1::{ports['grpc']}", image, *container["args"]], 120)
    try:
        target = _ok(["docker", "port", name, str(ports["grpc"])], 30).split()[0]
        assert _poll(lambda: _inspect(name, "{{.State.Health.Status}}") == "healthy", 120), \
            _logs(name)
        assert _health(target, "heatmap.v1.HeatmapRenderer") == "SERVING"
        loader = _run([sys.executable, "examples/loader.py", "--target", f"dns:///{target}",
                       "--batches", "3", "--num-workers", "1"], 300, cwd=ROOT)
        assert loader.returncode == 0 and "samples/s" in loader.stdout, \
            loader.stdout + loader.stderr + _logs(name)
        # Nothing but the emptyDir mounts is writable.
        probe = _run(["docker", "exec", name, "sh", "-c", "touch /app/x"], 60)
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe.stderr
        for mount in container["volumeMounts"]:
            _ok(["docker", "exec", name, "touch", f"{mount['mountPath']}/x"], 60)
        # The kubelet's SIGKILL comes terminationGracePeriodSeconds after the preStop hook began.
        _ok(["docker", "stop", "-t", str(int(grace - prestop_seconds(container))), name], 120)
        code = _inspect(name, "{{.State.ExitCode}}")
        assert code == "0", f"exit {code}\n{_logs(name)}"
    finally:
        _run(["docker", "rm", "-f", name], 60)
