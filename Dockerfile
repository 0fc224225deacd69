# The heatmap server image (the demo loader runs from it too).
#
# CPU (default): slim Python 3.11 and CPU-only torch.
#   docker build -t heatmap-service:cpu .
# CUDA: a CUDA base and the torch build for the same CUDA version.
#   docker build -t heatmap-service:cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# Air-gapped: `make wheelhouse` (TORCH_BUILD/TORCH_INDEX_URL there pick CPU or CUDA) gathers every
# wheel into wheelhouse/; when it holds wheels, the build installs from them alone, with no index.
# Any base with python3 and python3-venv of the wheelhouse's Python version serves as BASE_IMAGE.
#
# Configuration comes from HEATMAP_* variables (see `heatmap-server serve --help`).

ARG BASE_IMAGE=python:3.11-slim

# --- base: Python, shared by the build and the runtime stage (the venv is copied across) -------
FROM ${BASE_IMAGE} AS base
# python:3.11-slim has Python; a CUDA base (Ubuntu) gets its distribution's python3 (>= 3.10).
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# --- build: the install steps are the Makefile's (`make install-packages`), not a second list ---
FROM base AS build
# The index torch comes from: PyPI's Linux torch wheels are CUDA builds of several GB, so the CPU
# image takes the CPU-only build from PyTorch's own index (a CUDA build passes its CUDA index).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# make runs the install steps; a base that has it needs no package mirror here.
RUN if ! command -v make >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends make \
        && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY Makefile ./
# Only README.md unless `make wheelhouse` filled it; the wheels stay in this stage.
COPY wheelhouse ./wheelhouse
COPY render ./render
COPY client ./client
COPY server ./server
# With wheels, FIND_LINKS makes both pip steps --no-index (the index URL is then unused).
RUN find_links=$(if ls wheelhouse/*.whl >/dev/null 2>&1; then echo wheelhouse; fi) \
    && python3 -m venv /opt/venv \
    && make install-packages PIP="/opt/venv/bin/python -m pip" FIND_LINKS="$find_links" \
        TORCH_INDEX_URL="$TORCH_INDEX_URL" EDITABLE= DEV_REQUIREMENTS= \
    && heatmap-server --version && heatmap-client --help >/dev/null
# What the server never runs: torch's C++ tests, headers and test binaries (torch_shm_manager,
# which DataLoader workers use, stays), and pip itself. The compiled bytecode stays: without it
# every start, and every loader worker, compiles torch's Python again (1.5 s more here).
RUN site=$(/opt/venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
    && rm -rf "$site/torch/test" "$site/torch/include" "$site/torch/share/cmake" \
    && find "$site/torch/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} + \
    && /opt/venv/bin/python -m pip uninstall --quiet --yes pip \
    && find "$site" -depth -type d -name tests -exec rm -rf {} + \
    && heatmap-server --version

# --- runtime ----------------------------------------------------------------------------------
FROM base AS runtime
RUN useradd --create-home --uid 10001 --user-group heatmap
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY examples ./examples
USER 10001:10001
ENV HEATMAP_HOST=0.0.0.0 \
    HEATMAP_PORT=50051 \
    HEATMAP_METRICS_PORT=9100 \
    HEATMAP_DEVICE=auto
# gRPC, Prometheus metrics
EXPOSE 50051 9100
# The health RPC (grpc.health.v1) on the configured port; Docker wants 1, not 2, for unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "heatmap-client --target 127.0.0.1:${HEATMAP_PORT:-50051} --timeout 3 health || exit 1"]
# Flags after the image name go to the server: docker run IMAGE serve --device cpu
ENTRYPOINT ["heatmap-server"]
CMD ["serve"]
