"""The wire's names: every proto enum value of heatmap.v1, named here and nowhere else.

Each table maps the names users write (``method="udp"``) to the proto values on the wire and back.
The client, the server, the CLI and ``GetServerInfo`` read these tables, so a new method, space,
dtype or codec is one line here (plus its implementation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from heatmap.v1 import heatmap_pb2 as pb

__all__ = [
    "ARGUMENT_OF_FIELD",
    "CODEC_NAMES",
    "COORDINATE_SPACES",
    "DTYPE_NAMES",
    "FIELDS_OF_ARGUMENT",
    "METHODS",
    "SMOOTHINGS",
    "TARGETS",
    "ArgumentError",
    "EnumTable",
]


class ArgumentError(ValueError):
    """A value the client refuses before sending; ``argument`` is the user's argument at fault
    (the message starts with it, or with the part of it at fault, ``at``: ``keypoints.shape``)."""

    def __init__(self, argument: str, message: str, *, at: str | None = None):
        super().__init__(f"{at or argument}: {message}")
        self.argument = argument


@dataclass(frozen=True)
class EnumTable:
    """One proto enum as names: ``argument`` is what users call it, ``field`` the request's field.

    ``default`` is the name proto's UNSPECIFIED (0) stands for.
    """

    argument: str
    field: str
    values: dict[str, int]
    default: str

    def proto(self, name: str) -> int:
        """The proto value of ``name``.

        Raises:
            ArgumentError: naming :attr:`argument`.
        """
        try:
            return self.values[name]
        except (KeyError, TypeError):
            raise ArgumentError(
                self.argument, f"expected one of {', '.join(self.values)}, got {name!r}"
            ) from None

    def name(self, value: int) -> str | None:
        """The name of proto ``value`` (UNSPECIFIED is :attr:`default`); None when unknown."""
        if value == 0:
            return self.default
        for name, known in self.values.items():
            if known == value:
                return name
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.values)

    @property
    def protos(self) -> tuple[int, ...]:
        return tuple(self.values.values())

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)


METHODS = EnumTable(
    "method",
    "method",
    {"seed": pb.METHOD_SEED, "msra": pb.METHOD_MSRA, "udp": pb.METHOD_UDP, "dark": pb.METHOD_DARK},
    default="msra",
)
COORDINATE_SPACES = EnumTable(
    "coords",
    "coordinate_space",
    {
        "heatmap": pb.COORDINATE_SPACE_HEATMAP,
        "pixel": pb.COORDINATE_SPACE_PIXEL,
        "normalized": pb.COORDINATE_SPACE_NORMALIZED,
        "normalized_edges": pb.COORDINATE_SPACE_NORMALIZED_EDGES,
    },
    default="heatmap",
)
DTYPE_NAMES = EnumTable(
    "dtype",
    "dtype",
    {
        "float32": pb.DTYPE_FLOAT32,
        "float16": pb.DTYPE_FLOAT16,
        "bfloat16": pb.DTYPE_BFLOAT16,
        "uint16": pb.DTYPE_UINT16,
        "uint8": pb.DTYPE_UINT8,
    },
    default="float32",
)
TARGETS = EnumTable(
    "target",
    "target",
    {"heatmap": pb.TARGET_HEATMAP, "simcc": pb.TARGET_SIMCC},
    default="heatmap",
)
SMOOTHINGS = EnumTable(
    "smoothing",
    "simcc.smoothing",
    {"gaussian": pb.SMOOTHING_GAUSSIAN, "standard": pb.SMOOTHING_STANDARD},
    default="gaussian",
)
CODEC_NAMES = EnumTable(
    "codec",
    "codec",
    {"zstd": pb.CODEC_ZSTD, "none": pb.CODEC_NONE, "separable": pb.CODEC_SEPARABLE,
     "profile_table": pb.CODEC_PROFILE_TABLE},
    default="zstd",
)

# Each client argument -> the RenderRequest fields it travels in (the first is the one a complaint
# names). The server names the field at fault; the client re-raises in the argument's name.
FIELDS_OF_ARGUMENT: dict[str, tuple[str, ...]] = {
    "keypoints": ("keypoints",),
    "visibility": ("visibility",),
    "size": ("height", "width"),
    "input_size": ("input_height", "input_width"),
    "sigma": ("sigma", "sigmas", "sigma_map", "simcc.sigma_x", "simcc.sigma_y"),
    METHODS.argument: (METHODS.field,),
    COORDINATE_SPACES.argument: (COORDINATE_SPACES.field,),
    DTYPE_NAMES.argument: (DTYPE_NAMES.field,),
    CODEC_NAMES.argument: (CODEC_NAMES.field,),
    TARGETS.argument: (TARGETS.field,),
    "split_ratio": ("simcc.split_ratio",),
    SMOOTHINGS.argument: (SMOOTHINGS.field,),
    "label_smooth_weight": ("simcc.label_smooth_weight",),
    "normalize": ("simcc.normalize",),
}
ARGUMENT_OF_FIELD: dict[str, str] = {
    field: argument for argument, names in FIELDS_OF_ARGUMENT.items() for field in names
}
