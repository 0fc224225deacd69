"""``expand_profiles``: the dense heatmaps from their profiles, bit for bit the renderer's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_render import expand_profiles, render_heatmaps, render_profiles

SIZE = (24, 20)
K = 7
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
_BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _case(method: str, instances: int | None, visible: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (3, K) if instances is None else (3, instances, K)
    keypoints = rng.uniform(-4, 26, size=(*shape, 2)).astype(np.float32)
    visibility = (rng.random(shape) > 0.3).astype(np.float32) if visible else None
    return dict(keypoints=keypoints, size=SIZE, sigma=np.linspace(1.0, 3.0, K), method=method,
                visibility=visibility)


def assert_same_bits(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(got.cpu().view(_BITS[got.dtype]), expected.cpu().view(_BITS[got.dtype]))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("instances", [None, 1, 4])
@pytest.mark.parametrize("method", ["seed", "msra", "udp", "dark"])
def test_equals_the_renderer_bit_for_bit(device, method, instances, dtype):
    case = _case(method, instances, visible=True)
    profiles = render_profiles(**case)
    rows, cols = profiles.rows.to(device), profiles.cols.to(device)
    got = expand_profiles(rows, cols, dtype=dtype)
    expected = render_heatmaps(**case, dtype=dtype).heatmaps
    assert got.device == device
    assert_same_bits(got, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_writes_into_out(device, dtype):
    case = _case("udp", 3, visible=False)
    profiles = render_profiles(**case)
    out = torch.full((3, K, *SIZE), float("nan"), dtype=dtype, device=device)
    got = expand_profiles(profiles.rows.to(device), profiles.cols.to(device), dtype=dtype, out=out)
    assert got is out
    assert_same_bits(out, render_heatmaps(**case, dtype=dtype).heatmaps)


def test_dtype_by_name(device):
    profiles = render_profiles(**_case("msra", None, visible=False))
    got = expand_profiles(profiles.rows.to(device), profiles.cols.to(device), dtype="bfloat16")
    assert got.dtype == torch.bfloat16


def test_no_instances_give_zeros(device):
    rows = torch.ones((2, 0, K, SIZE[0]), device=device)
    cols = torch.ones((2, 0, K, SIZE[1]), device=device)
    out = torch.full((2, K, *SIZE), 7.0, device=device)
    assert torch.count_nonzero(expand_profiles(rows, cols, out=out)) == 0


def test_a_large_low_precision_batch_crosses_scratch_blocks(device):
    # More samples than one float32 scratch block holds on the CPU.
    case = dict(_case("dark", 2, visible=True), size=(96, 72))
    case["keypoints"] = np.tile(case["keypoints"] * 3, (40, 1, 1, 1))
    case["visibility"] = np.tile(case["visibility"], (40, 1, 1))
    profiles = render_profiles(**case)
    got = expand_profiles(profiles.rows.to(device), profiles.cols.to(device), dtype=torch.float16)
    assert_same_bits(got, render_heatmaps(**case, dtype=torch.float16).heatmaps)


def _profiles(batch=2, instances=1, height=SIZE[0], width=SIZE[1], dtype=torch.float32):
    return (torch.zeros((batch, instances, K, height), dtype=dtype),
            torch.zeros((batch, instances, K, width), dtype=dtype))


@pytest.mark.parametrize(
    ("rows", "cols", "options", "error", "match"),
    [
        (*_profiles(dtype=torch.float64), {}, ValueError, "rows: expected float32"),
        (_profiles()[0], _profiles(batch=3)[1], {}, ValueError, "cols: .B, N, K."),
        (_profiles()[0][0], _profiles()[1], {}, ValueError, "rows: expected 4 dimensions"),
        (np.zeros((2, 1, K, 4), np.float32), _profiles()[1], {}, TypeError, "rows: expected a"),
        (*_profiles(), {"dtype": torch.int8}, ValueError, "dtype: expected one of"),
        (*_profiles(), {"dtype": "float64"}, ValueError, "dtype: expected one of"),
        (*_profiles(), {"out": torch.zeros((2, K, 4, 4))}, ValueError, "out: expected shape"),
        (*_profiles(), {"out": torch.zeros((2, K, *SIZE), dtype=torch.float16)}, ValueError,
         "out: expected dtype"),
        (*_profiles(), {"out": torch.zeros((2, K, SIZE[1], SIZE[0])).transpose(-1, -2)},
         ValueError, "out: must be contiguous"),
    ],
)
def test_bad_arguments_are_named(rows, cols, options, error, match):
    with pytest.raises(error, match=match):
        expand_profiles(rows, cols, **options)
