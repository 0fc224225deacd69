# One entry point for developers and CI. `make test` installs first when .venv is missing.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-packages test bench proto serve clean

install: $(STAMP)

# torch goes first and pinned: the packages declare torch>=2.4, and with no torch present an
# open range would pull a multi-GB CUDA build.
$(STAMP): client/pyproject.toml server/pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(MAKE) install-packages
	touch $(STAMP)

# The install steps, in one place: `make install` runs them into .venv, the Dockerfile runs them
# into the image's environment with
#   make install-packages PIP=... TORCH_INDEX_URL=... EDITABLE= DEV_REQUIREMENTS=
# TORCH_INDEX_URL (empty: pip's configured index) picks the torch build, e.g. CPU-only or CUDA.
PIP ?= $(BIN)/python -m pip
TORCH_INDEX_URL ?=
EDITABLE ?= -e
DEV_REQUIREMENTS ?= -r requirements-dev.txt

install-packages:
	$(PIP) install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==$(TORCH_VERSION)
	$(PIP) install --quiet $(EDITABLE) './client[preview]' $(EDITABLE) ./server $(DEV_REQUIREMENTS)

test: $(STAMP)
	$(BIN)/python -m pytest

# The server on loopback with the embedded defaults (CUDA when present, else CPU).
serve: $(STAMP)
	$(BIN)/heatmap-server serve --host 127.0.0.1 --port 50051

proto: $(STAMP)
	$(BIN)/python proto/generate.py

bench: $(STAMP)
	$(BIN)/python bench/render.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
