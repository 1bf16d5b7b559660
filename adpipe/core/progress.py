"""A progress bar on stderr for long commands (compare, benchmark, tune, threshold's bootstrap).

Off (a no-op :class:`Bar`) when disabled or when stderr is not a terminal, so ``--json`` output and logs stay
clean. ``adpipe run`` has its own rows-per-second bar (runner.py).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


class Bar:
    """Advance the bar, change its description, or show a status text beside it; no-ops when off."""

    def __init__(self, progress=None, task=None):
        self.progress, self.task = progress, task

    def update(self, description: str | None = None, status: str | None = None) -> None:
        if self.progress is not None:
            fields = {"status": status} if status is not None else {}
            self.progress.update(self.task, **({"description": description} if description else {}), **fields)

    def advance(self, steps: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, steps)


@contextmanager
def progress_bar(total: int, enabled: bool, description: str) -> Iterator[Bar]:
    if not (enabled and total and sys.stderr.isatty()):
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield Bar(progress, progress.add_task(description, total=total, status=""))
