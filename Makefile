# One entry point for developers and CI. `make test` installs first when .venv is missing.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-packages wheelhouse test test-fast bench proto serve clean

install: $(STAMP)

# torch goes first and pinned: the packages declare torch>=2.4, and with no torch present an
# open range would pull a multi-GB CUDA build.
#
# `make serve &` and `make test` on a fresh clone both need the venv: two pips writing into one
# venv at once break each other, so the build runs under an exclusive lock on $(VENV).lock (fcntl,
# released by the kernel even when the installer is killed). Whoever gets the lock second re-runs
# make inside it, finds the stamp fresh and installs nothing. The stamp is touched last, so it
# exists only after a complete install.
$(STAMP): render/pyproject.toml client/pyproject.toml server/pyproject.toml requirements-dev.txt
ifeq ($(INSTALL_LOCK_HELD),)
	@mkdir -p $(dir $(VENV))
	@$(PYTHON) -c "$$WITH_LOCK" $(VENV).lock $(MAKE) --no-print-directory INSTALL_LOCK_HELD=1 $(STAMP)
else
	$(PYTHON) -m venv $(VENV)
	$(MAKE) install-packages
	touch $(STAMP)
endif

# Runs argv[2:] while holding an exclusive lock on the file argv[1]; exits with its status.
define WITH_LOCK
import fcntl, subprocess, sys
with open(sys.argv[1], "a") as lock:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"make: another install holds {sys.argv[1]}; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    sys.exit(subprocess.call(sys.argv[2:]))
endef
export WITH_LOCK

# The install steps, in one place: `make install` runs them into .venv, the Dockerfile runs them
# into the image's environment with
#   make install-packages PIP=... TORCH_INDEX_URL=... EDITABLE= DEV_REQUIREMENTS=
# TORCH_INDEX_URL (empty: pip's configured index) picks the torch build, e.g. CPU-only or CUDA.
PIP ?= $(BIN)/python -m pip
TORCH_INDEX_URL ?=
EDITABLE ?= -e
DEV_REQUIREMENTS ?= -r requirements-dev.txt
# FIND_LINKS (a folder of wheels) installs from that folder alone, with no index: the image's
# air-gapped build passes FIND_LINKS=wheelhouse.
FIND_LINKS ?=
FROM_WHEELS := $(if $(FIND_LINKS),--no-index --find-links $(FIND_LINKS))

# The client's extras the image and `make install` carry; the wheelhouse gathers the same.
CLIENT_EXTRAS := preview,progress,torch

install-packages:
	$(PIP) install --quiet $(FROM_WHEELS) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==$(TORCH_VERSION)
	$(PIP) install --quiet $(FROM_WHEELS) $(EDITABLE) ./render $(EDITABLE) './client[$(CLIENT_EXTRAS)]' \
		$(EDITABLE) ./server $(DEV_REQUIREMENTS)

# Every wheel the image installs, for `docker build` with no index (see the Dockerfile):
#   make wheelhouse                                   torch's CPU build
#   make wheelhouse TORCH_BUILD=cu128 TORCH_INDEX_URL=<PyTorch's CUDA 12.8 wheel index>
# TORCH_BUILD is the local version label the torch wheel must carry, so that a wheelhouse never
# silently holds a multi-GB CUDA build instead of the CPU one (empty: any build of the version).
# Where pip's own index lacks the CPU build, pass PyTorch's CPU wheel index as TORCH_INDEX_URL.
# The wheels must match the image's Python: by default the one running pip here (3.11, as in
# Debian bookworm and python:3.11-slim); WHEELHOUSE_PYTHON=3.12 gathers binary wheels for another
# (Ubuntu 24.04's, under the CUDA base). Wheels already in the folder are not fetched again.
WHEELHOUSE ?= wheelhouse
WHEELHOUSE_PYTHON ?=
TORCH_BUILD ?= cpu
TORCH_WHEEL := torch==$(TORCH_VERSION)$(if $(TORCH_BUILD),+$(TORCH_BUILD))
WHEELS_FOR := $(if $(WHEELHOUSE_PYTHON),--python-version $(WHEELHOUSE_PYTHON) --only-binary=:all:)
# The packages build from source in the image: their build backend comes from the wheelhouse too.
BUILD_REQUIREMENTS ?= 'setuptools>=77'

wheelhouse: $(STAMP)
	mkdir -p $(WHEELHOUSE)
	$(PIP) download --quiet --dest $(WHEELHOUSE) $(WHEELS_FOR) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) '$(TORCH_WHEEL)'
	$(PIP) download --quiet --dest $(WHEELHOUSE) $(WHEELS_FOR) --find-links $(WHEELHOUSE) '$(TORCH_WHEEL)' \
		./render './client[$(CLIENT_EXTRAS)]' ./server $(BUILD_REQUIREMENTS)

# The linter first (rules in pyproject.toml: pyflakes, pycodestyle, import order, bugbear), then
# every test.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The code's own tests, a few minutes: everything but the packaging tests (fresh installs, pinned
# stacks, the image and Compose on a real engine), which `make test` runs too.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not packaging"

# The server on loopback with the embedded defaults (CUDA when present, else CPU).
serve: $(STAMP)
	$(BIN)/heatmap-server serve --host 127.0.0.1 --port 50051

proto: $(STAMP)
	$(BIN)/python proto/generate.py

bench: $(STAMP)
	$(BIN)/python bench/render.py

clean:
	rm -rf $(VENV) $(MMPOSE_VENV) .pytest_cache .hypothesis
	rm -f $(WHEELHOUSE)/*.whl

# ---------------------------------------------------------------------------------------------
# mmpose: the drop-in (heatmap_render.mmpose) checked against the real mmpose 1.3.2, in a venv
# of its own, .venv-mmpose (numpy < 2, mmcv-lite): mmpose is never a dependency of our packages.
#   make mmpose-venv    build it (once; ~2 minutes, ~1.6 GB)
#   make test-mmpose    tests/mmpose in it (they skip in the main venv, which has no mmpose)
#   make bench-mmpose   bench/mmpose.py: mmpose's pipeline vs the drop-in codecs vs the device
#                       preprocessor
# Versions: requirements-mmpose.txt (constraints; it says why the steps are these).
MMPOSE_VENV ?= .venv-mmpose
MMPOSE_BIN := $(MMPOSE_VENV)/bin
MMPOSE_STAMP := $(MMPOSE_VENV)/.installed
MMPOSE_PIP = $(MMPOSE_BIN)/python -m pip install --quiet $(FROM_WHEELS) -c requirements-mmpose.txt
# What mmpose.codecs, mmpose.registry, mmpose.models and the tests import; their versions and
# everything they pull in come from the constraints.
MMPOSE_DEPS := numpy mmengine mmcv-lite xtcocotools scipy munkres json_tricks six pycocotools \
	shapely terminaltables tqdm setuptools pytest pytest-timeout

.PHONY: mmpose-venv mmpose-packages test-mmpose bench-mmpose

mmpose-venv: $(MMPOSE_STAMP)

# The same lock-and-stamp build as $(STAMP) above; the lock file lives inside the venv's folder.
$(MMPOSE_STAMP): requirements-mmpose.txt render/pyproject.toml client/pyproject.toml \
		server/pyproject.toml
ifeq ($(MMPOSE_LOCK_HELD),)
	@mkdir -p $(MMPOSE_VENV)
	@$(PYTHON) -c "$$WITH_LOCK" $(MMPOSE_VENV)/.install.lock $(MAKE) --no-print-directory \
		MMPOSE_LOCK_HELD=1 $(MMPOSE_STAMP)
else
	$(PYTHON) -m venv $(MMPOSE_VENV)
	$(MAKE) --no-print-directory mmpose-packages
	touch $(MMPOSE_STAMP)
endif

# torch first and pinned (as for .venv); then mmpose's runtime; then mmpose and mmdet without
# their declared requirements (chumpy, torchvision: see requirements-mmpose.txt); then our
# renderer, editable, whose requirements (torch, numpy) are already there; then the client and
# the server, for the tests that ask the service (tests/mmpose/test_mmpose_service.py).
mmpose-packages:
	$(MMPOSE_PIP) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==$(TORCH_VERSION)
	$(MMPOSE_PIP) $(MMPOSE_DEPS)
	$(MMPOSE_PIP) --no-deps mmpose mmdet
	$(MMPOSE_PIP) --no-deps -e ./render
	$(MMPOSE_PIP) -e ./client -e ./server

test-mmpose: $(MMPOSE_STAMP)
	$(MMPOSE_BIN)/python -m pytest tests/mmpose

bench-mmpose: $(MMPOSE_STAMP)
	$(MMPOSE_BIN)/python bench/mmpose.py
