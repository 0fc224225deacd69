#!/usr/bin/env bash
# The one prepared GPU check: the device, the device-parametrised tests on CUDA, the renderer
# against the device's copy bandwidth, and the service benchmark on CUDA (and CPU for contrast).
# Runs from the repository root on a machine with an NVIDIA GPU and PyTorch; finishes in < 8 min.
# Packages the machine lacks may be given as wheels in .whl/ (installed to a temporary folder).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/out}
mkdir -p "$out"
python=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $python -m pip install -q --no-index --no-deps --no-compile --target /tmp/heatmap-site .whl/*.whl \
    && export PYTHONPATH=/tmp/heatmap-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=render/src:client/src:server/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$python -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name())"

echo "== tests on cuda (renderer, wire, service, the torch helpers; the servers render on cuda)"
timeout 240 $python -m pytest tests/render tests/wire tests/service \
  tests/client/test_torch_separable.py tests/client/test_dataloader_workers.py \
  -q -p no:cacheprovider --device cuda 2>&1 | tee "$out/gpu_tests.txt" | tail -n 15
tests_status=${PIPESTATUS[0]}

echo "== profiles made dense on the device vs a device-to-device copy of the dense bytes"
timeout 60 $python bench/gpu_expand.py --json "$out/gpu_expand.json" | tee "$out/gpu_expand.txt"

echo "== the loader benchmark with CUDA as the training device (S3, short rows)"
timeout 120 $python bench/loader.py --device cuda --quick --scenarios S3 \
  --json "$out/gpu_loader.json" > "$out/gpu_loader.txt" 2>&1

echo "== renderer vs the device's copy bandwidth"
timeout 60 $python bench/gpu_render.py --json "$out/gpu_render.json" | tee "$out/gpu_render.txt"

echo "== service benchmark, cuda then cpu servers"
# Single-process rows only: spawning eight clients that each import torch costs more than the
# time this check has. On the GPU the cores only compress: 8 encoder threads, as a GPU
# deployment would run, so that a large reply is compressed in slabs across them.
timeout 90 $python bench/service.py --device cuda --quick --scenarios S2,S3 --no-multi \
  --server-flag=--encode-threads=8 \
  --json "$out/gpu_service_cuda.json" > "$out/gpu_service_cuda.txt" 2>&1
timeout 90 $python bench/service.py --device cpu --quick --scenarios S2,S3 --no-multi \
  --json "$out/gpu_service_cpu.json" > "$out/gpu_service_cpu.txt" 2>&1

echo "== summary"
echo "tests: exit $tests_status, $(tail -n 1 "$out/gpu_tests.txt")"
grep '^|' "$out/gpu_render.txt" || echo "renderer benchmark: no table"
grep '^|' "$out/gpu_expand.txt" || echo "expand benchmark: no table"
echo "-- loader, cuda training device"; tail -n 25 "$out/gpu_loader.txt"
echo "-- service on cuda"; grep -E '^\|' "$out/gpu_service_cuda.txt" | head -n 30 || tail -n 20 "$out/gpu_service_cuda.txt"
echo "-- service on cpu (same machine)"; grep -E '^\|' "$out/gpu_service_cpu.txt" | head -n 30 || tail -n 20 "$out/gpu_service_cpu.txt"
