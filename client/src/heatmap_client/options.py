"""The render parameters, defined once: what ``render``, ``render_many``, ``HeatmapCollate`` and
the CLI take (:class:`RenderOptions`), and what ``render_simcc`` takes (:class:`SimccOptions`),
checked where the user wrote them.

Sizes are ``(H, W)``, height first, everywhere in this API. mmpose configs write ``(W, H)``:
``heatmap_size=(48, 64)`` there is ``size=(64, 48)`` here.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from heatmap.v1 import heatmap_pb2 as pb

from .wire.codecs import Codec, codec_by_name
from .wire.dtypes import WireDType, dtype_by_name
from .wire.vocabulary import COORDINATE_SPACES, METHODS, SMOOTHINGS, TARGETS, ArgumentError

__all__ = [
    "AUTO_CODEC", "RenderOptions", "SimccOptions", "made_options", "profiles_codec", "split_sigma",
]

# The codec that picks the cheaper exact wire form for the method (see RenderOptions.codec).
AUTO_CODEC = "auto"
_SEPARABLE_BY_DEFAULT = ("udp", "dark")


def profiles_codec(method: str) -> str:
    """The codec a method's profiles travel with: the windowed methods draw every profile from a
    kernel table, so a batch holds few distinct ones (``profile_table``: tens of KB where the
    profiles are MB); ``udp`` and ``dark`` have one per keypoint (``separable``)."""
    return "separable" if method in _SEPARABLE_BY_DEFAULT else "profile_table"


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


def _positive(argument: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        raise ArgumentError(argument, f"must be a finite number > 0, got {float(values[bad][0])!r}")


def split_sigma(value: Any) -> tuple[Any, np.ndarray | None]:
    """``(shared, per_batch)``: a number or ``(K,)`` sigma is shared by every batch (``per_batch``
    None); an array of two or more axes, ``(B, N, 1)``, ``(B, N, K)``, ``(B, 1, 1)``, ..., belongs
    to its batch and travels as float64 (``shared`` None).

    Raises:
        ArgumentError: naming ``sigma``, for a per-batch array with a value that is not > 0.
    """
    if isinstance(value, (bool, numbers.Real, str, bytes)) or np.ndim(value) < 2:
        return value, None
    try:
        per_batch = np.ascontiguousarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError("sigma", f"expected numbers, got {type(value).__name__}") from None
    _positive("sigma", per_batch)
    return None, per_batch


def _sigma(value: Any) -> float | tuple[float, ...] | None:
    """A checked sigma: one number, or a flat sequence of one number per keypoint."""
    if value is None:
        return None
    expected = "expected a number or one number per keypoint"
    if isinstance(value, bool):
        raise ArgumentError("sigma", f"{expected}, got {value!r}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError("sigma", f"{expected}, got {value!r}") from None
    if array.ndim > 1:
        raise ArgumentError("sigma", f"{expected}, got shape {array.shape}")
    if array.size == 0:
        raise ArgumentError("sigma", f"{expected}, got none")
    _positive("sigma", array)
    return float(array) if array.ndim == 0 else tuple(float(v) for v in array)


class _KeywordOptions:
    """Options that are a call's keyword arguments, one dataclass field each; what they resolve
    to (proto values, the wire dtype and codec) is kept beside them, made once.

    Attributes:
        request_fields: the ``RenderRequest`` fields these options set, which every request built
            with them copies (the names are not translated again per request).
    """

    request_fields: dict[str, Any]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, as the keyword arguments of the call they configure."""
        return tuple(spec.name for spec in fields(cls) if spec.init)

    def as_kwargs(self) -> dict[str, Any]:
        """The options as the call's keyword arguments (for renderers that only take those)."""
        return {name: getattr(self, name) for name in self.names()}


@dataclass(frozen=True)
class RenderOptions(_KeywordOptions):
    """How a batch is rendered and sent: everything but the keypoints and their visibility.

    Args:
        size: ``(H, W)`` of the heatmaps (mmpose's ``heatmap_size=(W, H)`` reversed).
        sigma: Gaussian standard deviation in heatmap pixels: a number, or one per keypoint
            ``(K,)``; None when each batch brings its own (``render(sigma=array)``, see
            :func:`split_sigma`).
        method: ``seed``, ``msra`` (default), ``udp`` or ``dark``.
        coords: what the keypoints are measured in: ``heatmap`` pixels (default), input-image
            ``pixel`` (needs ``input_size``) or ``normalized`` ([-1, 1]).
        input_size: ``(H_in, W_in)`` of the input image, for ``coords="pixel"`` only (mmpose's
            ``input_size=(W, H)`` reversed).
        dtype: wire dtype: ``float32`` (default), ``float16``, ``bfloat16``, ``uint16``, ``uint8``.
        codec: wire codec: ``auto`` (default), ``zstd``, ``none`` or ``separable``. ``auto`` is
            ``separable`` for ``udp`` and ``dark`` and ``zstd`` for the others: the Gaussian tails
            of udp and dark compress poorly as a dense tensor (B=32, K=68, 64x64: 1.3 MB and
            17 MB of zstd against 210 KB and 810 KB of profiles, with less client CPU), while
            seed and msra windows compress to less than their profiles cost to expand.

    Raises:
        ArgumentError: a ``ValueError`` naming the argument, for any value the server would refuse
            on its face.
    """

    size: tuple[int, int]
    sigma: float | tuple[float, ...] | None
    method: str = "msra"
    coords: str = "heatmap"
    input_size: tuple[int, int] | None = None
    dtype: str = "float32"
    codec: str = AUTO_CODEC
    wire: WireDType = field(init=False, repr=False, compare=False)
    wire_codec: Codec = field(init=False, repr=False, compare=False)
    request_fields: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # normalising a frozen instance once, as it is made
        set_field(self, "size", _hw("size", self.size))
        set_field(self, "sigma", _sigma(self.sigma))
        method = METHODS.proto(self.method)
        coords = COORDINATE_SPACES.proto(self.coords)
        set_field(self, "wire", dtype_by_name(self.dtype))
        if self.codec == AUTO_CODEC:
            codec = "separable" if self.method in _SEPARABLE_BY_DEFAULT else "zstd"
        else:
            codec = self.codec
        set_field(self, "wire_codec", codec_by_name(codec))
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
        height, width = self.size
        request = dict(height=height, width=width, method=method, coordinate_space=coords,
                       dtype=self.wire.proto, codec=self.wire_codec.proto)
        if isinstance(self.sigma, tuple):
            request["sigmas"] = self.sigma
        elif self.sigma is not None:
            request["sigma"] = self.sigma
        if self.input_size is not None:
            request["input_height"], request["input_width"] = self.input_size
        set_field(self, "request_fields", request)

    def profiles(self) -> RenderOptions:
        """These options for ``render_profiles``: float32 profiles, in the codec that carries
        this method's profiles cheapest (:func:`profiles_codec`; made once per options object)."""
        if self.wire_codec.name == profiles_codec(self.method) and self.dtype == "float32":
            return self
        made = self.__dict__.get("_profiles")
        if made is None:
            made = RenderOptions(size=self.size, sigma=self.sigma, method=self.method,
                                 coords=self.coords, input_size=self.input_size,
                                 codec=profiles_codec(self.method))
            object.__setattr__(self, "_profiles", made)
        return made


def _number(argument: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(argument, f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ArgumentError(argument, f"must be finite, got {value!r}")
    return number


def _simcc_sigma(value: Any, input_size: tuple[int, int]) -> tuple[float, float]:
    """``(sigma_x, sigma_y)`` from one number, a pair in mmpose's order, or ``{"x", "y"}``.

    A pair whose larger value lies along the input's shorter side (the mirror image of every
    RTMPose config) is refused: a pair reversed like the (H, W) sizes here, or an ``input_size``
    given in mmpose's (W, H) order, looks exactly so, and gives wrong labels without an error.
    Naming the axes (``{"x": ..., "y": ...}``) passes.
    """
    expected = "expected a number, (sigma_x, sigma_y) or {'x': ..., 'y': ...}"
    if isinstance(value, bool):
        raise ArgumentError("sigma", f"{expected}, got {value!r}")
    named = isinstance(value, Mapping)
    if named:
        if set(value) != {"x", "y"}:
            raise ArgumentError("sigma", f"{expected}, got the keys {sorted(value)}")
        value = (value["x"], value["y"])
    try:
        values = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError("sigma", f"{expected}, got {value!r}") from None
    if values.ndim == 0:
        values = np.stack([values, values])
    if values.shape != (2,):
        raise ArgumentError("sigma", f"{expected}, got shape {values.shape}")
    _positive("sigma", values)
    sigma_x, sigma_y = float(values[0]), float(values[1])
    height, width = input_size
    if not named and sigma_x != sigma_y and height != width \
            and (sigma_x > sigma_y) != (width > height):
        raise ArgumentError(
            "sigma", f"{(sigma_x, sigma_y)} is (sigma_x, sigma_y), mmpose's order, and its larger "
            f"value is along the shorter side of input_size {input_size} (H, W): one of the two "
            "looks reversed (sizes here are (H, W); sigma stays (x, y)); if both are meant, "
            f"pass sigma={{'x': {sigma_x!r}, 'y': {sigma_y!r}}}"
        )
    return sigma_x, sigma_y


@dataclass(frozen=True)
class SimccOptions(_KeywordOptions):
    """How a batch of SimCC labels (mmpose ``SimCCLabel``, RTMPose) is rendered and sent.

    Args:
        input_size: ``(H_in, W_in)`` of the input image the keypoints are in (mmpose's
            ``input_size=(W, H)`` reversed). The labels have ``Wx = round(W_in * split_ratio)``
            and ``Hy = round(H_in * split_ratio)`` bins.
        sigma: in label bins: a number, or ``(sigma_x, sigma_y)`` in mmpose's order (RTMPose at
            256x192 writes ``sigma=(4.9, 5.66)``), or ``{"x": ..., "y": ...}``; kept as the pair.
            A pair whose larger value lies along the input's shorter side is refused as
            ambiguous (a reversed sigma or input_size); the mapping states the axes.
        split_ratio: label bins per input pixel (mmpose ``simcc_split_ratio``).
        smoothing: ``gaussian`` (default) or ``standard`` (mmpose ``smoothing_type``).
        label_smooth_weight: in ``[0, 1]``, with ``smoothing="standard"`` only.
        normalize: divide Gaussian labels by ``sigma * sqrt(2 pi)``.
        dtype: wire dtype, as :class:`RenderOptions`; ``uint16``/``uint8`` hold values up to 1.
        codec: ``zstd`` (default; ``auto`` is the same here) or ``none``.

    Raises:
        ArgumentError: a ``ValueError`` naming the argument.
    """

    input_size: tuple[int, int]
    sigma: tuple[float, float]
    split_ratio: float = 2.0
    smoothing: str = "gaussian"
    label_smooth_weight: float = 0.0
    normalize: bool = True
    dtype: str = "float32"
    codec: str = "zstd"
    wire: WireDType = field(init=False, repr=False, compare=False)
    request_fields: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # normalising a frozen instance once, as it is made
        set_field(self, "input_size", _hw("input_size", self.input_size))
        set_field(self, "sigma", _simcc_sigma(self.sigma, self.input_size))
        ratio = _number("split_ratio", self.split_ratio)
        if ratio <= 0:
            raise ArgumentError("split_ratio", f"must be > 0, got {self.split_ratio!r}")
        set_field(self, "split_ratio", ratio)
        smoothing = SMOOTHINGS.proto(self.smoothing)
        weight = _number("label_smooth_weight", self.label_smooth_weight)
        if not 0 <= weight <= 1:
            raise ArgumentError("label_smooth_weight", f"must lie in [0, 1], got {weight!r}")
        if weight > 0 and self.smoothing != "standard":
            raise ArgumentError(
                "label_smooth_weight", "only used with smoothing='standard' (as in mmpose)"
            )
        set_field(self, "label_smooth_weight", weight)
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise ArgumentError("normalize", f"expected True or False, got {self.normalize!r}")
        set_field(self, "normalize", bool(self.normalize))
        wire = dtype_by_name(self.dtype)
        set_field(self, "wire", wire)
        if self.codec == AUTO_CODEC:
            set_field(self, "codec", "zstd")  # labels are 1D already: nothing to factorise
        codec = codec_by_name(self.codec)
        if codec.separable:
            raise ArgumentError(
                "codec", "SimCC labels travel as zstd or none; separable is for heatmaps"
            )
        if not wire.holds(self.peak):
            # Fixed point would clip or wrap, float16 would carry inf in an OK reply.
            raise ArgumentError(
                "dtype",
                f"{wire.range_text()}, but normalised labels with sigma {min(self.sigma)!r} "
                f"peak at {self.peak:.6g}; use float32 (or a larger sigma)",
            )
        sigma_x, sigma_y = self.sigma
        set_field(self, "request_fields", dict(
            input_height=self.input_size[0], input_width=self.input_size[1], dtype=wire.proto,
            codec=codec.proto, target=TARGETS.proto("simcc"),
            simcc=pb.SimccParameters(
                split_ratio=self.split_ratio, smoothing=smoothing,
                label_smooth_weight=self.label_smooth_weight, normalize=self.normalize,
                sigma_x=sigma_x, sigma_y=sigma_y,
            ),
        ))

    @property
    def label_size(self) -> tuple[int, int]:
        """``(Hy, Wx)``: the y and x label lengths in bins (half to even, as mmpose)."""
        height, width = self.input_size
        return round(height * self.split_ratio), round(width * self.split_ratio)

    @property
    def peak(self) -> float:
        """The largest value a label can hold."""
        if self.smoothing == "gaussian" and self.normalize:
            return 1 / (min(self.sigma) * math.sqrt(2 * math.pi))
        return 1.0


def _plain(value: Any) -> bool:
    """Whether ``value`` is a number, a string, None, or a tuple of numbers (what a typed call's
    options usually are: hashable, and equal only to values of the same types)."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    return type(value) is tuple and all(type(item) in (int, float) for item in value)


@functools.lru_cache(maxsize=128)
def _made(kind: type, typed_key: tuple, items: tuple) -> Any:
    return kind(**dict(items))


def made_options(kind: type, **values: Any) -> Any:
    """``kind(**values)`` (``RenderOptions`` or ``SimccOptions``), reused from the last calls
    with the very same plain values: a loader's typed calls pass the same options every batch,
    and checking and resolving them costs more than the rest of the call's own work. Values that
    are not plain (lists, arrays) make a fresh object each time."""
    if not all(_plain(value) for value in values.values()):
        return kind(**values)
    items = tuple(values.items())
    # The types are in the key: 64.0 == 64, but only the integer is a valid side.
    typed_key = tuple((type(value), tuple(map(type, value)) if type(value) is tuple else ())
                      for value in values.values())
    return _made(kind, typed_key, items)
