"""The wire, both directions, in one public place: names, dtypes, tensors, codecs, framing.

The client and the server both speak through this package (the server imports it; nothing
outside the client imports the client's private modules):

- :mod:`.vocabulary`: every proto enum value <-> the name users write, and request fields <->
  client arguments;
- :mod:`.dtypes`: wire dtypes with their storage, render dtype and fixed-point scale;
- :mod:`.tensors`: float32 ``Tensor`` messages <-> numpy;
- :mod:`.codecs`: the payload codecs, each an encode/decode pair;
- :mod:`.framing`: a reply's chunks out (server) and in (client), bounded;
- :mod:`.requests` and :mod:`.replies`: requests out, replies in as results (client).
"""

from .codecs import CODECS, Codec, CodecError, codec_by_name, payload_crc32, rebuild_dense
from .dtypes import DTYPES, WireDType, dequantize, dtype_by_name, quantize
from .framing import (
    FramingError,
    Reply,
    ReplyReader,
    collect_reply,
    compressed_bound,
    reply_chunks,
)
from .replies import PendingReply, profiles_from_chunks, result_from_chunks
from .requests import build_request, build_simcc_request
from .tensors import (
    FLOAT32_LE,
    FLOAT64_LE,
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
    "DTYPES",
    "DTYPE_NAMES",
    "EnumTable",
    "FIELDS_OF_ARGUMENT",
    "FLOAT32_LE",
    "FLOAT64_LE",
    "FramingError",
    "METHODS",
    "PendingReply",
    "Reply",
    "ReplyReader",
    "SMOOTHINGS",
    "TARGETS",
    "WireDType",
    "array_from_double_tensor",
    "array_from_tensor",
    "build_request",
    "build_simcc_request",
    "codec_by_name",
    "collect_reply",
    "compressed_bound",
    "dequantize",
    "double_tensor_from_array",
    "dtype_by_name",
    "payload_crc32",
    "profiles_from_chunks",
    "quantize",
    "rebuild_dense",
    "reply_chunks",
    "result_from_chunks",
    "tensor_from_array",
]
