"""What bench/render.py and bench/service.py write beside their numbers: the machine and commit
they ran on (for the metadata), matplotlib when it is installed (for --png), the --json file.

Only the standard library at import time: bench/service.py's spawned client processes import it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()`` or "unknown"."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout bench/ is in, or None."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def pyplot(path: str):
    """``matplotlib.pyplot`` on the Agg backend, or None (with a note) when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"Note: matplotlib is not installed; skipping --png {path}", file=sys.stderr)
        return None
    return plt


def write_json(path: str, data: dict) -> None:
    """``data`` to ``path`` (its folder made if missing), one space of indent."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    print(f"wrote {path}", file=sys.stderr)


def grouped_bars(ax, results: list[dict], order, value, error=None) -> None:
    """One group of bars per scenario on a log axis: a bar per name of ``order`` that has stats in
    some result, ``value(stats)`` high, with ``error(list of stats)`` as its yerr when given."""
    names = [n for n in order if any(n in r["stats"] for r in results)]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        rows = [(j, r["stats"][name]) for j, r in enumerate(results) if name in r["stats"]]
        stats = [s for _, s in rows]
        ax.bar(
            [j + i * width for j, _ in rows],
            [value(s) for s in stats],
            width,
            yerr=None if error is None else error(stats),
            label=name,
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(results))])
    ax.set_xticklabels([r["scenario"]["name"] for r in results])
    ax.set_yscale("log")
