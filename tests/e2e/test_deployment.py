"""The image's files, checked without a Docker engine: the Dockerfile and docs/deployment.md.

- the Dockerfile through BuildKit's own parser and hadolint, and its install step: the Makefile's,
  from the index or from ``make wheelhouse``'s folder alone;
- docs/deployment.md's commands against the deployment files.

test_compose.py checks docker-compose.yml and test_kubernetes.py deploy/k8s/, the same way;
tests/e2e/test_docker_image.py builds and runs the image itself where a Docker engine can start.
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
import yaml

from deployment_files import (
    COMPOSE,
    K8S,
    OVERLAYS,
    ROOT,
    arg_defaults,
    assert_server_settings,
    compose,
    final_stage,
    image_env,
    instructions,
    one,
    tool,
)

# --- Dockerfile --------------------------------------------------------------------------------

def test_dockerfile_parses_and_passes_hadolint():
    # DL3008 asks to pin apt versions, which breaks with every base image update.
    done = subprocess.run([tool("hadolint"), "--ignore", "DL3008", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_stages_user_ports_healthcheck_and_context():
    commands = instructions()
    stages = [command for command in commands if command.cmd == "FROM"]
    assert len(stages) >= 2, "multi-stage: the build tools stay out of the runtime image"
    args = arg_defaults()
    assert args["BASE_IMAGE"] == "python:3.11-slim" and "TORCH_INDEX_URL" in args
    assert stages[0].value[0] == "${BASE_IMAGE}"
    final = final_stage()
    user = one(final, "USER").value[0].split(":")[0]
    assert user not in {"root", "0"}
    env = image_env()
    config = assert_server_settings(env, "Dockerfile ENV")
    assert {config.port, config.metrics_port} \
        <= {int(p.split("/")[0]) for p in one(final, "EXPOSE").value}
    assert "heatmap-client" in one(final, "HEALTHCHECK").value[-1]
    assert one(final, "ENTRYPOINT").value == ("heatmap-server",)
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
    runs = [" ".join(command.value) for command in instructions() if command.cmd == "RUN"]
    assert not [run for run in runs if re.search(r"pip\S* install", run)], \
        "the Dockerfile installs packages itself instead of through the Makefile"
    (make,) = [run for run in runs if "make install-packages" in run]
    assert "ls wheelhouse/*.whl" in make, "the build picks the wheelhouse when it holds wheels"
    tokens = shlex.split(make.split("make install-packages", 1)[1].split("&&")[0])
    overrides = [token.replace("$TORCH_INDEX_URL", arg_defaults()["TORCH_INDEX_URL"])
                      .replace("$find_links", "wheelhouse" if wheels else "")
                 for token in tokens if "=" in token]
    image = _pip_lines("install-packages", *overrides)
    develop = _pip_lines("-B", str(tmp_path / "venv" / ".installed"), f"VENV={tmp_path / 'venv'}")
    torch_version = re.search(r"^TORCH_VERSION \?= (\S+)", (ROOT / "Makefile").read_text(), re.M)[1]
    assert f"torch=={torch_version}" in image[0] and f"torch=={torch_version}" in develop[0]
    assert image[0][image[0].index("--index-url") + 1] == arg_defaults()["TORCH_INDEX_URL"]
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
    # The image installs the client with the extras `make install` gives it, from these wheels.
    (client,) = [token for token in _pip_lines("install-packages")[1] if "./client" in token]
    assert {"./render", client, "./server"} <= set(second)
    assert any(token.startswith("setuptools") for token in second), "the packages' build backend"


# --- README ------------------------------------------------------------------------------------

def _page_commands() -> list[list[str]]:
    page = ROOT / "docs" / "deployment.md"
    fences = re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), re.M | re.S)
    blocks = [body for language, body in fences
              if language in {"", "bash", "sh", "shell", "console"}]
    return [shlex.split(line.split(" #")[0]) for block in blocks
            for line in block.replace("\\\n", " ").splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def test_the_deployment_page_commands_match_the_files():
    services = compose()["services"]
    profiles = {p for service in services.values() for p in service.get("profiles", [])}
    variables = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    applied = set()
    seen = set()
    for argv in _page_commands():
        # NAME=value before a compose command: a variable the compose file reads.
        while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
            name = argv.pop(0).split("=")[0]
            assert name in variables, f"docker-compose.yml reads no {name}"
            seen.add("variable")
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
                    assert value.split("=")[0] in arg_defaults(), f"{shlex.join(argv)}"
            seen.add("build")
        elif argv[:2] == ["kubectl", "apply"]:
            for option, value in zip(argv, argv[1:]):
                if option == "-f":
                    assert (ROOT / value).exists(), f"{shlex.join(argv)}: no {value}"
                if option == "-k":
                    assert (ROOT / value / "kustomization.yaml").is_file(), \
                        f"{shlex.join(argv)}: no kustomization in {value}"
                    applied.add((ROOT / value).resolve())
            seen.add("k8s")
        elif argv[:2] == ["make", "wheelhouse"]:
            seen.add("wheelhouse")
    missing = {"up", "scale", "gpu", "k8s", "wheelhouse", "build", "variable"} - seen
    assert not missing, f"the Deployment section shows no command for {sorted(missing)}"
    unshown = {overlay.name for overlay in OVERLAYS} - {path.name for path in applied}
    assert not unshown, f"the page applies no overlay {sorted(unshown)}"


def test_the_deployment_page_names_every_kubernetes_file():
    """Every kustomization by its folder, and every manifest no kustomization takes in (an
    optional one, such as the KEDA alternative) by its name."""
    page = (ROOT / "docs" / "deployment.md").read_text()
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        folder = kustomization.parent
        assert f"`{folder.relative_to(ROOT).as_posix()}" in page, \
            f"docs/deployment.md does not mention {folder.relative_to(ROOT)}"
        spec = yaml.safe_load(kustomization.read_text())
        used = {*spec.get("resources", []), *(patch["path"] for patch in spec.get("patches", [])
                                               if "path" in patch)}
        for path in sorted(folder.glob("*.yaml")):
            if path.name != "kustomization.yaml" and path.name not in used:
                assert path.name in page, f"docs/deployment.md does not mention {path.name}"
