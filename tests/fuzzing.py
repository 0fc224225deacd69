"""What the fuzz tests share: bounded, derandomised hypothesis settings and the rule that a fuzzed
call ends OK or with a clean refusal, never INTERNAL or UNKNOWN, and never with a traceback."""

from __future__ import annotations

import os

import grpc
from hypothesis import HealthCheck, settings

__all__ = ["CLEAN", "fuzz_settings", "rpc_outcome"]

CLEAN = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def fuzz_settings(default_examples: int) -> settings:
    """``default_examples`` per test, or ``HEATMAP_FUZZ_EXAMPLES``; the same examples every run."""
    return settings(
        max_examples=int(os.environ.get("HEATMAP_FUZZ_EXAMPLES", str(default_examples))),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large],
    )


def rpc_outcome(call) -> tuple[grpc.StatusCode, object]:
    """``(OK, result)`` of ``call()``, or ``(code, error)`` for a clean refusal (asserted clean)."""
    try:
        return grpc.StatusCode.OK, call()
    except grpc.RpcError as error:
        assert error.code() in CLEAN, (error.code(), error.details())
        assert "Traceback" not in (error.details() or "")
        return error.code(), error
