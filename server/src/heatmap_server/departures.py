"""Clients that go away are not server errors.

When a client cancels a call (or its connection drops, or the server shuts down) while a reply
is being written, grpc.aio logs the failed write at ERROR with a traceback ("ExecuteBatchError
raised in core by servicer method"), unless it had already noticed the cancellation. Nothing
failed on the server's side: the call is counted CANCELLED and its memory is returned. This
filter turns those records into one DEBUG line without a traceback; any other record passes.
"""

from __future__ import annotations

import logging

__all__ = ["GRPC_LOGGER", "DepartedClientFilter", "quiet_departed_clients"]

GRPC_LOGGER = "grpc._cython.cygrpc"

# What grpc.aio logs for a write cut short by a client or a shutdown.
_DEPARTURE = "ExecuteBatchError raised in core by servicer method"


def _is_departure(record: logging.LogRecord) -> bool:
    return str(record.msg).startswith(_DEPARTURE)


class DepartedClientFilter(logging.Filter):
    """Downgrades grpc.aio's records of writes to departed clients to DEBUG, traceback dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and _is_departure(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.msg = "client went away during a write: " + str(record.msg)
            record.exc_info = record.exc_text = None
            return logging.getLogger(GRPC_LOGGER).isEnabledFor(logging.DEBUG)
        return True


def quiet_departed_clients() -> None:
    """Installs :class:`DepartedClientFilter` on grpc.aio's logger (once)."""
    logger = logging.getLogger(GRPC_LOGGER)
    if not any(isinstance(existing, DepartedClientFilter) for existing in logger.filters):
        logger.addFilter(DepartedClientFilter())
