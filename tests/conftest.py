"""Options shared by every test directory.

``--device`` (or the environment variable ``HEATMAP_TEST_DEVICE``, default ``cpu``) picks where the
tensor tests run, so that the same tests run on a GPU when one is there::

    pytest tests/render --device cuda
    HEATMAP_TEST_DEVICE=cuda pytest tests/render

torch is imported lazily, inside the fixture: the client's tests must be able to run without it.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default=os.environ.get("HEATMAP_TEST_DEVICE", "cpu"),
        help="torch device for the tensor tests, e.g. cpu, cuda, cuda:1 "
        "(default: $HEATMAP_TEST_DEVICE or cpu)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # The network tests' servers (tests/live_server.py) render on the same device.
    os.environ["HEATMAP_TEST_DEVICE"] = config.getoption("--device")


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config):
    """The ``torch.device`` the tests run on; skips them when it is asked for but absent."""
    import torch

    name = pytestconfig.getoption("--device")
    try:
        chosen = torch.device(name)
    except RuntimeError as error:
        raise pytest.UsageError(f"--device={name!r} is not a torch device: {error}") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            pytest.skip(f"--device={name} asks for CUDA, but torch {torch.__version__} sees no GPU")
        if chosen.index is None:
            # Tensors report "cuda:0", never "cuda": compare devices with the index filled in.
            chosen = torch.device("cuda", torch.cuda.current_device())
        if chosen.index >= torch.cuda.device_count():
            pytest.skip(f"--device={name}: only {torch.cuda.device_count()} GPU(s) visible")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        pytest.skip(f"--device={name} asks for MPS, which is not available here")
    return chosen
