"""Clients that go away are not server errors.

When a client cancels a call (or its connection drops, or the server shuts down) while a reply
is being written, grpc.aio logs the failed write at ERROR with a traceback ("ExecuteBatchError
raised in core by servicer method"), unless it had already noticed the cancellation. And when the
shutdown grace runs out with calls still open (a client that never reads holds its call open),
grpc.aio cancels their handlers and logs each CancelledError at ERROR ("Exception not handled by
_handle_exceptions in servicer method"). Nothing failed on the server's side in either case: the
call is counted CANCELLED and its memory is returned. This filter turns those records into one
DEBUG line without a traceback; any other record passes, any other exception included.
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["GRPC_LOGGER", "DepartedClientFilter", "quiet_departed_clients"]

GRPC_LOGGER = "grpc._cython.cygrpc"

# What grpc.aio logs for a write cut short by a client or a shutdown.
_DEPARTURE = "ExecuteBatchError raised in core by servicer method"
# What it logs for a handler it cancelled itself, at the end of the shutdown grace.
_CANCELLED_AT_SHUTDOWN = "Exception not handled by _handle_exceptions in servicer method"


def _cancelled(record: logging.LogRecord) -> bool:
    if record.exc_info and record.exc_info[0] is not None:
        return issubclass(record.exc_info[0], asyncio.CancelledError)
    return str(record.getMessage()).rstrip().endswith("CancelledError")


def _is_departure(record: logging.LogRecord) -> bool:
    message = str(record.msg)
    if message.startswith(_DEPARTURE):
        return True
    return message.startswith(_CANCELLED_AT_SHUTDOWN) and _cancelled(record)


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
