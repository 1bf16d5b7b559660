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
