"""The renderer's one error type: the argument at fault travels as data, not only as text.

The gRPC service maps :attr:`RenderArgumentError.argument` to the request field it came from with
one table, so nothing parses messages; people still read ``"<argument>: what was wrong"``.
"""

from __future__ import annotations

__all__ = [
    "RenderArgumentError",
    "RenderArgumentTypeError",
]


class RenderArgumentError(ValueError):
    """A value the renderer cannot honour exactly.

    Attributes:
        argument: the caller's argument name (``"keypoints"``, ``"size"``, ``"sigma"``, ...), as
            written in the renderer's signatures, never a wire field name.
        detail: the message without its ``"<argument>: "`` prefix, for callers that re-prefix it
            with their own name for the argument.
    """

    def __init__(self, argument: str, detail: str):
        super().__init__(f"{argument}: {detail}")
        self.argument = argument
        self.detail = detail

    def __reduce__(self):
        # Exceptions pickle as cls(*self.args); ours takes two arguments, not the message.
        return (type(self), (self.argument, self.detail))


class RenderArgumentTypeError(RenderArgumentError, TypeError):
    """An argument that is not a number, array or tensor at all.

    A ``TypeError`` for Python's conventions and a :class:`RenderArgumentError` (so a
    ``ValueError``) for callers that catch the renderer's errors in one place.
    """
