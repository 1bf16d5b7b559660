"""The hook surface of adpipe: one registration hook and six lifecycle hooks.

Plugins implement them with ``@adpipe.hookimpl``. Keep this surface small:
every hook here is a promise to third-party packages.
"""

from __future__ import annotations

import pluggy

PROJECT = "adpipe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def adpipe_register(registry):
    """Add the plugin classes this module provides: ``registry.add(MyDetector)``."""


@hookspec
def adpipe_before_run(context):
    """A run is about to start (``context`` is the :class:`adpipe.RunContext`)."""


@hookspec
def adpipe_after_batch(context, result, rejected):
    """A batch was scored and written by every sink (``result``/``rejected`` are frames)."""


@hookspec
def adpipe_on_anomalies(context, anomalies):
    """A batch held anomalies (``anomalies`` is the result frame's flagged rows)."""


@hookspec
def adpipe_on_drift(context, event):
    """Drift was detected (``event`` is an :class:`adpipe.core.drift.DriftEvent`: feature, test, statistic,
    window)."""


@hookspec
def adpipe_on_error(context, error):
    """The run failed with ``error``; outputs are being rolled back."""


@hookspec
def adpipe_after_run(context, summary):
    """The run finished; ``summary`` is the :class:`adpipe.RunSummary`."""
