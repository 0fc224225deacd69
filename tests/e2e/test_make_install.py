"""`make serve &` and `make test` on a fresh clone both build the venv: the install must not race.

Two real `make install` runs start at once into one fresh VENV (the test tools left out, which
makes it cheaper and changes nothing about the race: two pips writing into one venv). Both must
succeed, exactly one must build while the other waits, and the venv must work afterwards.
One real install (torch included) takes 1.5-2 minutes on a loaded 2-core machine; the timeout
leaves room for a slower one rather than fail on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.packaging
@pytest.mark.timeout(330)
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_two_installs_started_at_once_both_succeed(tmp_path):
    venv = tmp_path / "venv"
    command = ["make", "-C", str(REPO), "install", f"VENV={venv}", "DEV_REQUIREMENTS="]
    # No byte-compiling: most of an install's time is compiling torch's .py files, which has
    # nothing to do with the race.
    env = {**os.environ, "PIP_NO_COMPILE": "1"}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env) for _ in range(2)]
    outputs = []
    for run in runs:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output[-4000:]
        outputs.append(output)

    built = [output for output in outputs if "-m venv" in output]
    assert len(built) == 1, outputs  # the second waited for the lock, then found the stamp fresh
    waited = [output for output in outputs if "waiting for it" in output]
    assert len(waited) == 1 and "is up to date" in waited[0], outputs
    assert (venv / ".installed").is_file()
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import heatmap_client, heatmap_render, heatmap_server, torch; print(torch.__version__)"],
        capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("2.")
