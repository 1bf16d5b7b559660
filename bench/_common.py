"""Helpers the benchmark scripts share: progress lines, machine facts, the checkout's revision."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def loadavg() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def dist_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def git_rev() -> str | None:
    """The checkout's short revision, marked when adpipe/ has uncommitted changes."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "adpipe"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return f"{rev}{' (adpipe/ has uncommitted changes)' if dirty else ''}" if rev else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine(load_before: float | None, **extra) -> dict:
    """What a result was measured on: Python, OS, cores, library versions, revision, load before/after."""
    import platform

    import numpy
    import pandas
    import sklearn

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "numpy": numpy.__version__, "pandas": pandas.__version__, "scikit-learn": sklearn.__version__,
            **extra, "adpipe": dist_version("adpipe"), "git": git_rev(),
            "loadavg_1m_before_after": [load_before, loadavg()]}


def save_figure(fig, path: Path) -> None:
    """Lay out, write (PNG, 110 dpi) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
