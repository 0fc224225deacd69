"""``HeatmapCollate("local", ...)``: the in-process renderer, dense or separable, equals the
renderer itself; without the server package it says which package to install."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from heatmap_client.torch import HeatmapCollate, SeparableHeatmaps  # noqa: E402
from heatmap_render import render_heatmaps  # noqa: E402

SIZE = (32, 24)
K = 6


def _samples(count: int = 4, instances: int | None = None) -> list[dict]:
    samples = []
    for index in range(count):
        rng = np.random.default_rng(index)
        shape = (K,) if instances is None else (instances, K)
        samples.append({
            "keypoints": rng.uniform(-4, 120, size=(*shape, 2)).astype(np.float32),
            "visibility": (rng.random(shape) > 0.25).astype(np.float32),
        })
    return samples


def _expected(batch: dict, **options):
    options = {"size": SIZE, "sigma": 2.0, "coords": "pixel", "input_size": (128, 96), **options}
    return render_heatmaps(batch["keypoints"], options.pop("size"), options.pop("sigma"),
                           visibility=batch["visibility"], **options)


@pytest.mark.parametrize("instances", [None, 3])
@pytest.mark.parametrize("method", ["seed", "msra", "udp", "dark"])
@pytest.mark.parametrize("output", ["dense", "separable"])
def test_local_collate_equals_the_renderer(device, output, method, instances):
    collate = HeatmapCollate("local", size=SIZE, sigma=2.0, method=method, coords="pixel",
                             input_size=(128, 96), output=output)
    batch = collate(_samples(instances=instances))
    expected = _expected(batch, method=method)
    heatmaps = batch["heatmaps"]
    assert isinstance(heatmaps, SeparableHeatmaps if output == "separable" else torch.Tensor)
    assert torch.equal(heatmaps.to(device).cpu(), expected.heatmaps)
    assert torch.equal(batch["heatmap_weights"], expected.weights)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_separable_keep_dtype_expands_into_that_dtype(device, dtype):
    collate = HeatmapCollate("local", size=SIZE, sigma=2.0, coords="pixel", input_size=(128, 96),
                             output="separable", dtype=dtype, keep_dtype=True)
    batch = collate(_samples())
    dense = batch["heatmaps"].to(device)
    expected = _expected(batch, dtype=getattr(torch, dtype)).heatmaps
    assert dense.dtype == expected.dtype and torch.equal(dense.cpu(), expected)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "uint16", "uint8"])
@pytest.mark.parametrize("keep_dtype", [False, True])
def test_local_dense_dtypes_are_what_the_wire_would_give(dtype, keep_dtype):
    collate = HeatmapCollate("local", size=SIZE, sigma=2.0, coords="pixel", input_size=(128, 96),
                             dtype=dtype, keep_dtype=keep_dtype)
    batch = collate(_samples())
    exact = _expected(batch).heatmaps.numpy()
    heatmaps = batch["heatmaps"]
    if dtype in ("uint16", "uint8"):
        scale = 65535 if dtype == "uint16" else 255
        stored = np.rint(exact * np.float32(scale))
        expected = torch.from_numpy(stored.astype(dtype) if keep_dtype
                                    else (stored / np.float32(scale)).astype(np.float32))
    else:
        expected = _expected(batch, dtype=getattr(torch, dtype)).heatmaps
        if not keep_dtype:
            expected = expected.float()
    assert heatmaps.dtype == expected.dtype and torch.equal(heatmaps, expected)


def test_local_errors_name_the_argument():
    with pytest.raises(ValueError, match="sigma"):
        HeatmapCollate("local", size=SIZE, sigma=-1.0)(_samples())
    with pytest.raises(ValueError, match="codec"):
        HeatmapCollate("local", size=SIZE, sigma=2.0, codec="gzip")(_samples())


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"output": "sparse"}, "output: expected one of dense, separable"),
        ({"output": "separable", "dtype": "uint8"}, "dtype: output='separable'"),
        ({"output": "separable", "dtype": "float16"}, "keep_dtype"),
        ({"output": "separable", "codec": "none"}, "codec: output='separable'"),
    ],
)
def test_options_that_cannot_be_honoured_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        HeatmapCollate("local", size=SIZE, sigma=2.0, **options)


def test_separable_needs_render_profiles():
    class DenseOnly:
        def render(self, keypoints, **options):
            raise AssertionError("not called")

    with pytest.raises(TypeError, match="render_profiles"):
        HeatmapCollate(DenseOnly(), size=SIZE, sigma=2.0, output="separable")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_without_the_renderer_the_torch_helpers_name_the_extra():
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    out = _python(
        "import sys; sys.modules['heatmap_render'] = None\n"
        "try:\n"
        "    from heatmap_client.torch import HeatmapCollate\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    assert out.returncode == 0, out.stderr
    assert "heatmap-render" in out.stdout and "pip install 'heatmap-client[torch]'" in out.stdout


def test_the_torch_package_does_not_import_the_server():
    out = _python(
        "import sys, heatmap_client.torch\n"
        "print(any(name.startswith('heatmap_server') for name in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
