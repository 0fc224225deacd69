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


@pytest.mark.parametrize(("message", "error"), [
    ("ExecuteBatchError raised in core by servicer method [/heatmap.v1.HeatmapRenderer/Render]",
     None),
    ("Exception not handled by _handle_exceptions in servicer method "
     "[/heatmap.v1.HeatmapRenderer/RenderStream]", asyncio.CancelledError()),
])
def test_departures_become_debug_lines_without_a_traceback(message, error):
    record = _record(message, error)
    DepartedClientFilter().filter(record)
    assert record.levelno == logging.DEBUG and record.exc_info is None


@pytest.mark.parametrize(("message", "error"), [
    ("Exception not handled by _handle_exceptions in servicer method "
     "[/heatmap.v1.HeatmapRenderer/RenderStream]", ValueError("a real bug")),
    ("Unexpected error in the servicer", RuntimeError("a real bug")),
])
def test_other_errors_pass_untouched(message, error):
    record = _record(message, error)
    assert DepartedClientFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
