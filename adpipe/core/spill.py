"""Parsed batches kept in an anonymous temporary file for a second pass over a source.

With ``fit.sample_rows`` the engine reads the source twice: once to draw the
training sample, once to score. Parsing CSV or JSON twice costs more than
writing the parsed batches to disk once and reading them back, so the first
pass keeps them here. The file is private to this process (created unlinked)
and disappears when closed; if the disk fills up, spilling stops and the
scoring pass reads the source again.
"""

from __future__ import annotations

import pickle
import tempfile
from typing import Iterator

from adpipe.core.plugin import Batch


class Spill:
    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="adpipe-spill-")
        self._count = 0
        self.ok = True

    def add(self, batch: Batch) -> None:
        if not self.ok:
            return
        try:
            pickle.dump(batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._count += 1
        except OSError:  # disk full: give up spilling, the source is read again
            self.close()

    def batches(self) -> Iterator[Batch]:
        self._file.seek(0)
        for _ in range(self._count):
            yield pickle.load(self._file)  # written by this process, above

    def close(self) -> None:
        self.ok = False
        self._file.close()
