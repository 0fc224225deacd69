"""The log filter for clients that went away: grpc.aio's records of them become quiet DEBUG lines,
and every other record, a real servicer error included, passes untouched."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from heatmap_server.departures import GRPC_LOGGER, DepartedClientFilter


def _record(message: str, error: BaseException | None) -> logging.LogRecord:
    exc_info = None
    if error is not None:
        try:
            raise error
        except BaseException:  # noqa: BLE001 - capturing it as logging would
            exc_info = sys.exc_info()
    return logging.LogRecord(GRPC_LOGGER, logging.ERROR, __file__, 1, message, (), exc_info)


def test_a_write_to_a_departed_client_becomes_a_debug_line_without_a_traceback():
    message = "ExecuteBatchError raised in core by servicer method [/heatmap.v1.HeatmapRenderer/X]"
    record = _record(message, RuntimeError("the call is gone"))
    DepartedClientFilter().filter(record)
    assert record.levelno == logging.DEBUG and record.exc_info is None


@pytest.mark.parametrize(("message", "error"), [
    ("Exception not handled by _handle_exceptions in servicer method "
     "[/heatmap.v1.HeatmapRenderer/RenderStream]", asyncio.CancelledError()),
    ("Unexpected error in the servicer", RuntimeError("a real bug")),
])
def test_other_errors_pass_untouched(message, error):
    record = _record(message, error)
    assert DepartedClientFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
