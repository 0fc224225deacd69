"""The render parameters, defined once: what ``render``, ``render_many``, ``HeatmapCollate`` and
the CLI take, checked where the user wrote them.

Sizes are ``(H, W)``, height first, everywhere in this API. mmpose configs write ``(W, H)``:
``heatmap_size=(48, 64)`` there is ``size=(64, 48)`` here.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .wire.codecs import codec_by_name
from .wire.dtypes import dtype_by_name
from .wire.vocabulary import COORDINATE_SPACES, METHODS, ArgumentError

__all__ = ["RenderOptions"]


def _hw(argument: str, value: Any) -> tuple[int, int]:
    """A checked ``(H, W)`` pair of positive integers."""
    hint = "; sizes are (H, W), height first (mmpose configs write (W, H))"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ArgumentError(argument, f"expected (H, W), got {value!r}{hint}")
    sides = []
    for side in value:
        if isinstance(side, bool) or not isinstance(side, numbers.Integral):
            raise ArgumentError(argument, f"expected two integers (H, W), got {value!r}")
        if side <= 0:
            raise ArgumentError(argument, f"sides must be positive, got {value!r}")
        sides.append(int(side))
    return sides[0], sides[1]


def _sigma(value: Any) -> float | tuple[float, ...]:
    """A checked sigma: one number, or a flat sequence of one number per keypoint."""
    if isinstance(value, bool):
        raise ArgumentError("sigma", f"expected a number or one number per keypoint, got {value!r}")
    if isinstance(value, numbers.Real):
        values: tuple[float, ...] = (float(value),)
    else:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ArgumentError(
                "sigma", f"expected a number or one number per keypoint, got {value!r}"
            ) from None
        if array.ndim > 1:
            raise ArgumentError(
                "sigma", f"expected a number or one number per keypoint, got shape {array.shape}"
            )
        values = tuple(float(v) for v in array.reshape(-1))
        if array.ndim == 0:
            value = values[0]
        if not values:
            raise ArgumentError("sigma", "expected a number or one number per keypoint, got none")
    for number in values:
        if not math.isfinite(number) or number <= 0:
            raise ArgumentError("sigma", f"must be a finite number > 0, got {number!r}")
    return values[0] if isinstance(value, numbers.Real) or np.ndim(value) == 0 else values


@dataclass(frozen=True)
class RenderOptions:
    """How a batch is rendered and sent: everything but the keypoints and their visibility.

    Args:
        size: ``(H, W)`` of the heatmaps (mmpose's ``heatmap_size=(W, H)`` reversed).
        sigma: Gaussian standard deviation in heatmap pixels: a number, or one per keypoint ``(K,)``.
        method: ``seed``, ``msra`` (default), ``udp`` or ``dark``.
        coords: what the keypoints are measured in: ``heatmap`` pixels (default), input-image
            ``pixel`` (needs ``input_size``) or ``normalized`` ([-1, 1]).
        input_size: ``(H_in, W_in)`` of the input image, for ``coords="pixel"`` only (mmpose's
            ``input_size=(W, H)`` reversed).
        dtype: wire dtype: ``float32`` (default), ``float16``, ``bfloat16``, ``uint16``, ``uint8``.
        codec: wire codec: ``zstd`` (default), ``none`` or ``separable``.

    Raises:
        ArgumentError: a ``ValueError`` naming the argument, for any value the server would refuse
            on its face.
    """

    size: tuple[int, int]
    sigma: float | tuple[float, ...]
    method: str = "msra"
    coords: str = "heatmap"
    input_size: tuple[int, int] | None = None
    dtype: str = "float32"
    codec: str = "zstd"

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # normalising a frozen instance once, as it is made
        set_field(self, "size", _hw("size", self.size))
        set_field(self, "sigma", _sigma(self.sigma))
        METHODS.proto(self.method)
        COORDINATE_SPACES.proto(self.coords)
        dtype_by_name(self.dtype)
        codec_by_name(self.codec)
        if self.coords == "pixel":
            if self.input_size is None:
                raise ArgumentError(
                    "input_size",
                    "required when coords='pixel': the (H, W) of the image the keypoints are in",
                )
            set_field(self, "input_size", _hw("input_size", self.input_size))
        elif self.input_size is not None:
            raise ArgumentError(
                "input_size", f"only used with coords='pixel', got coords={self.coords!r}"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, as keyword arguments of ``render`` and ``HeatmapCollate``."""
        return tuple(spec.name for spec in fields(cls))

    def as_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.names()}
