# One entry point for developers and CI. `make test` installs first when .venv is missing.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test bench proto serve clean

install: $(STAMP)

# torch goes first and pinned: the packages declare torch>=2.4, and with no torch present an
# open range would pull a multi-GB CUDA build.
$(STAMP): client/pyproject.toml server/pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e 'client[preview]' -e server -r requirements-dev.txt
	touch $(STAMP)

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
