"""Bad input: a ``ValueError`` whose message starts with the argument at fault."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heatmap_render import (
    RenderArgumentError,
    RenderArgumentTypeError,
    render_heatmaps,
    render_profiles,
)

SIZE = (8, 11)
SHAPE = (2, 3)  # (B, K)


def _keypoints(device, shape=(*SHAPE, 2), fill=2.0):
    return torch.full(shape, fill, device=device)


def _with(device, **overrides):
    """Valid render arguments with some of them replaced."""
    kwargs = {"keypoints": _keypoints(device), "size": SIZE, "sigma": 1.5}
    kwargs.update(overrides)
    return kwargs


def _nan_at(device, value):
    keypoints = _keypoints(device)
    keypoints[1, 2, 0] = value
    return keypoints


# (field, arguments(device)): every case is checked on render_heatmaps and render_profiles.
SHARED_CASES = {
    "nan": ("keypoints", lambda d: _with(d, keypoints=_nan_at(d, math.nan))),
    "inf": ("keypoints", lambda d: _with(d, keypoints=_nan_at(d, math.inf))),
    "-inf": ("keypoints", lambda d: _with(d, keypoints=_nan_at(d, -math.inf))),
    "rank-2": ("keypoints", lambda d: _with(d, keypoints=_keypoints(d, (3, 2)))),
    "rank-5": ("keypoints", lambda d: _with(d, keypoints=_keypoints(d, (1, 2, 2, 3, 2)))),
    "last-dim-3": ("keypoints", lambda d: _with(d, keypoints=_keypoints(d, (2, 3, 3)))),
    "instances-last-dim-1": (
        "keypoints", lambda d: _with(d, keypoints=_keypoints(d, (2, 1, 3, 1)))
    ),
    "sigma-0": ("sigma", lambda d: _with(d, sigma=0.0)),
    "sigma-negative": ("sigma", lambda d: _with(d, sigma=-1.0)),
    "sigma-nan": ("sigma", lambda d: _with(d, sigma=math.nan)),
    "sigma-inf": ("sigma", lambda d: _with(d, sigma=math.inf)),
    "sigma-over-size": ("sigma", lambda d: _with(d, sigma=11.5)),
    "sigma-list-short": ("sigma", lambda d: _with(d, sigma=[1.0, 2.0])),
    "sigma-list-long": ("sigma", lambda d: _with(d, sigma=[1.0, 2.0, 3.0, 4.0])),
    "sigma-2d": ("sigma", lambda d: _with(d, sigma=np.ones((3, 1)))),
    "sigma-list-one-bad": ("sigma", lambda d: _with(d, sigma=[1.0, 0.0, 2.0])),
    "sigma-tensor-one-nan": ("sigma", lambda d: _with(d, sigma=torch.tensor([1.0, math.nan, 2.0]))),
    "size-0": ("size", lambda d: _with(d, size=(0, 11))),
    "size-negative": ("size", lambda d: _with(d, size=(8, -1))),
    "size-fraction": ("size", lambda d: _with(d, size=(8, 10.5))),
    "size-one-side": ("size", lambda d: _with(d, size=(8,))),
    "size-three-sides": ("size", lambda d: _with(d, size=(8, 11, 3))),
    "size-scalar": ("size", lambda d: _with(d, size=8)),
    "visibility-short": ("visibility", lambda d: _with(d, visibility=torch.ones(2, 2, device=d))),
    "visibility-instances": (
        "visibility", lambda d: _with(d, visibility=torch.ones(2, 1, 3, device=d))
    ),
    "visibility-missing-instances": (
        "visibility",
        lambda d: _with(d, keypoints=_keypoints(d, (2, 4, 3, 2)), visibility=torch.ones(2, 3)),
    ),
    "visibility-nan": (
        "visibility", lambda d: _with(d, visibility=torch.full((2, 3), math.nan, device=d))
    ),
    "method": ("method", lambda d: _with(d, method="gaussian")),
    "method-case": ("method", lambda d: _with(d, method="MSRA")),
    "coords": ("coords", lambda d: _with(d, coords="image")),
    "pixel-without-input-size": ("input_size", lambda d: _with(d, coords="pixel")),
    "input-size-with-heatmap-coords": ("input_size", lambda d: _with(d, input_size=(32, 44))),
    "input-size-with-normalized-coords": (
        "input_size", lambda d: _with(d, coords="normalized", input_size=(32, 44))
    ),
    "input-size-0": ("input_size", lambda d: _with(d, coords="pixel", input_size=(0, 44))),
    "input-size-float": ("input_size", lambda d: _with(d, coords="pixel", input_size=(32.5, 44))),
    "udp-pixel-height-1": (
        "size", lambda d: _with(d, method="udp", coords="pixel", size=(1, 11), input_size=(4, 44))
    ),
    "udp-pixel-width-1": (
        "size", lambda d: _with(d, method="udp", coords="pixel", size=(8, 1), input_size=(32, 4))
    ),
}


@pytest.mark.parametrize("function", [render_heatmaps, render_profiles])
@pytest.mark.parametrize("case", SHARED_CASES)
def test_bad_input_names_the_argument(device, function, case):
    field, arguments = SHARED_CASES[case]
    with pytest.raises(ValueError, match=f"^{field}: ") as caught:
        function(**arguments(device))
    assert isinstance(caught.value, RenderArgumentError)
    assert caught.value.argument == field
    assert str(caught.value) == f"{field}: {caught.value.detail}"


@pytest.mark.parametrize("dtype", ["float64", torch.float64, torch.int8, "half", None])
def test_bad_dtype(device, dtype):
    with pytest.raises(ValueError, match="^dtype: ") as caught:
        render_heatmaps(**_with(device), dtype=dtype)
    assert caught.value.argument == "dtype"


def test_udp_pixel_with_an_input_side_of_1(device):
    # (input - 1) / (heatmap - 1) is 0 here; the message names "size" (see the report on naming).
    with pytest.raises(ValueError, match="^(input_)?size: "):
        render_heatmaps(
            **_with(device), method="udp", coords="pixel", input_size=(1, 44)
        )


OUT_CASES = {
    "shape": lambda d: torch.empty((2, 3, 11, 8), device=d),
    "missing-batch": lambda d: torch.empty((3, *SIZE), device=d),
    "dtype": lambda d: torch.empty((2, 3, *SIZE), dtype=torch.float16, device=d),
    "device": lambda d: torch.empty((2, 3, *SIZE), device="meta"),
    "non-contiguous": lambda d: torch.empty((2, 3, SIZE[1], SIZE[0]), device=d).transpose(2, 3),
}


@pytest.mark.parametrize("case", OUT_CASES)
def test_bad_out(device, case):
    out = OUT_CASES[case](device)
    with pytest.raises(ValueError, match="^out: ") as caught:
        render_heatmaps(**_with(device), out=out)
    assert caught.value.argument == "out"


def test_out_must_be_a_tensor(device):
    with pytest.raises(TypeError, match="^out: ") as caught:
        render_heatmaps(**_with(device), out=np.zeros((2, 3, *SIZE), dtype=np.float32))
    # Also a RenderArgumentError (so a ValueError): one except clause catches every bad argument.
    assert isinstance(caught.value, RenderArgumentTypeError)
    assert isinstance(caught.value, RenderArgumentError) and caught.value.argument == "out"


TYPE_CASES = {
    "keypoints-strings": ("keypoints", lambda d: _with(d, keypoints=[["a", "b"]])),
    "keypoints-object-array": (
        "keypoints", lambda d: _with(d, keypoints=np.array([[[None, 1]]], dtype=object))
    ),
    "keypoints-complex": ("keypoints", lambda d: _with(d, keypoints=torch.ones(2, 3, 2) * 1j)),
    "sigma-string": ("sigma", lambda d: _with(d, sigma="wide")),
    "visibility-strings": ("visibility", lambda d: _with(d, visibility=[["x"] * 3] * 2)),
}


@pytest.mark.parametrize("function", [render_heatmaps, render_profiles])
@pytest.mark.parametrize("case", TYPE_CASES)
def test_arguments_of_the_wrong_type_name_the_argument(device, function, case):
    field, arguments = TYPE_CASES[case]
    with pytest.raises(TypeError, match=f"^{field}: ") as caught:
        function(**arguments(device))
    assert isinstance(caught.value, RenderArgumentError) and caught.value.argument == field


def test_out_untouched_on_error(device):
    out = torch.full((2, 3, *SIZE), 7.0, device=device)
    with pytest.raises(ValueError, match="^sigma: "):
        render_heatmaps(**_with(device, sigma=-1.0), out=out)
    assert bool((out == 7.0).all())


# --- Valid input that looks odd -----------------------------------------------------------------

ACCEPTED = {
    "numpy-int-size": lambda d: _with(d, size=(np.int64(8), np.int32(11))),
    "torch-size": lambda d: _with(d, size=torch.Size([8, 11])),
    "list-size": lambda d: _with(d, size=[8, 11]),
    "int-sigma": lambda d: _with(d, sigma=2),
    "numpy-sigma": lambda d: _with(d, sigma=np.float32(1.5)),
    "0d-tensor-sigma": lambda d: _with(d, sigma=torch.tensor(1.5)),
    "sigma-equal-to-larger-side": lambda d: _with(d, sigma=11.0),
    "off-image-keypoints": lambda d: _with(d, keypoints=_keypoints(d, fill=-1e6)),
    "huge-keypoints": lambda d: _with(d, keypoints=_keypoints(d, fill=3e38)),
    "udp-pixel-size-2": lambda d: _with(
        d, method="udp", coords="pixel", size=(2, 2), input_size=(8, 8), sigma=1.0
    ),
    "pixel-size-1": lambda d: _with(d, coords="pixel", size=(1, 1), input_size=(1, 1), sigma=1.0),
}


@pytest.mark.parametrize("case", ACCEPTED)
def test_valid_input_is_accepted(device, case):
    kwargs = ACCEPTED[case](device)
    heatmaps, weights = render_heatmaps(**kwargs)
    assert tuple(heatmaps.shape) == (*SHAPE, *kwargs["size"])
    assert tuple(weights.shape) == SHAPE


@pytest.mark.parametrize("fill", [-1e6, 1e6, -50.0, 3e38])
@pytest.mark.parametrize("method", ["seed", "msra", "udp", "dark"])
def test_off_image_keypoints_give_empty_channels_and_zero_weights(device, method, fill):
    heatmaps, weights = render_heatmaps(_keypoints(device, fill=fill), SIZE, 1.5, method=method)
    assert not bool(heatmaps.any())
    assert not bool(weights.any())
