"""The wire, both directions, in one public place: names, dtypes, tensors, codecs, layouts, framing.

The bottom layer of the client, and the only part of it the server imports; it imports nothing
above it:

- :mod:`.vocabulary`: every proto enum value <-> the name users write, and request fields <->
  client arguments;
- :mod:`.dtypes`: wire dtypes with their storage, render dtype and fixed-point scale;
- :mod:`.tensors`: float32 and float64 ``Tensor`` messages <-> numpy;
- :mod:`.codecs`: the payload codecs, each an encode/decode pair;
- :mod:`.layouts`: what the reply to a request holds (shapes, bytes, work), one class per target
  and codec family, used by both ends;
- :mod:`.framing`: a reply's chunks out (server) and in (client), bounded.
"""

from .codecs import CODECS, Codec, CodecError, codec_by_name, payload_crc32, rebuild_dense
from .dtypes import WIRE_DTYPES, WireDType, dequantize, dtype_by_name, quantize
from .framing import FramingError, ReceivedReply, ReplyReader, reply_chunks
from .layouts import (
    MAX_UNARY_REPLY_BYTES,
    PROFILE_ELEMENT_PASSES,
    SIMCC_ELEMENT_PASSES,
    HeatmapLayout,
    ProfilesLayout,
    ProfileTableLayout,
    ReplyLayout,
    SimccLayout,
    compressed_bound,
    layout_of,
)
from .tensors import (
    FLOAT32_LE,
    FLOAT64_LE,
    UINT32_LE,
    array_from_double_tensor,
    array_from_tensor,
    double_tensor_from_array,
    tensor_from_array,
)
from .vocabulary import (
    ARGUMENT_OF_FIELD,
    CODEC_NAMES,
    COORDINATE_SPACES,
    DTYPE_NAMES,
    FIELDS_OF_ARGUMENT,
    METHODS,
    SMOOTHINGS,
    TARGETS,
    ArgumentError,
    EnumTable,
)

__all__ = [
    "ARGUMENT_OF_FIELD",
    "ArgumentError",
    "CODECS",
    "CODEC_NAMES",
    "COORDINATE_SPACES",
    "Codec",
    "CodecError",
    "DTYPE_NAMES",
    "EnumTable",
    "FIELDS_OF_ARGUMENT",
    "FLOAT32_LE",
    "FLOAT64_LE",
    "FramingError",
    "HeatmapLayout",
    "MAX_UNARY_REPLY_BYTES",
    "PROFILE_ELEMENT_PASSES",
    "SIMCC_ELEMENT_PASSES",
    "METHODS",
    "ProfileTableLayout",
    "ProfilesLayout",
    "ReceivedReply",
    "ReplyLayout",
    "ReplyReader",
    "SMOOTHINGS",
    "SimccLayout",
    "TARGETS",
    "UINT32_LE",
    "WIRE_DTYPES",
    "WireDType",
    "array_from_double_tensor",
    "array_from_tensor",
    "codec_by_name",
    "compressed_bound",
    "dequantize",
    "double_tensor_from_array",
    "dtype_by_name",
    "layout_of",
    "payload_crc32",
    "quantize",
    "rebuild_dense",
    "reply_chunks",
    "tensor_from_array",
]
