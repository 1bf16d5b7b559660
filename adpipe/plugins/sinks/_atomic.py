"""Base of file sinks: write a hidden temp file beside the target, publish it atomically.

A run writes ``.<name>.tmp-<pid>`` in the target's folder. ``close(True)``
flushes it to disk and renames it over the target with ``os.replace`` (atomic
on one file system), so readers see the previous complete output or the new
one, never half of it; ``close(False)`` deletes the temp file. A rerun
replaces the file, so a replayed run is idempotent.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path
from typing import IO, Any, Literal

import pandas as pd

import adpipe
from adpipe.core.errors import SinkError

Compression = Literal["infer", "gzip", "bz2", "xz"] | None
OPENERS = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
SUFFIXES = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}


def open_text(path: Path, compression: str | None, encoding: str) -> IO[str]:
    """Open ``path`` for writing text, compressed with ``compression`` (gzip, bz2, xz or None)."""
    opener = OPENERS.get(compression or "", open)
    return opener(path, "wt", encoding=encoding, newline="")


def resolve_compression(compression: str | None, target: Path) -> str | None:
    return SUFFIXES.get(target.suffix) if compression == "infer" else compression


def temp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


class FileSink(adpipe.Sink):
    """Base class of sinks that write one file (not registered itself)."""

    durable = False  # the file is published at close: a stream needs a sink that stores on write

    class Params(adpipe.Params):
        path: Path = adpipe.Field(description="output file; relative paths resolve against the config file's folder")

    _tmp: Path | None = None
    context: Any = None
    rows: int = 0

    # -- what a subclass implements ---------------------------------------
    def _start(self, tmp: Path) -> None:
        """Open the temp file (or defer until the first frame)."""

    def _write(self, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def _finish(self, tmp: Path) -> None:
        """Flush and close; the temp file must exist afterwards (an empty output when nothing was written)."""

    # -- the Sink interface --------------------------------------------------
    @property
    def target(self) -> Path:
        return self.params.path

    def open(self, context: Any = None) -> None:
        if self._tmp is not None:
            self.close(False)
        self.context, self.rows = context, 0
        target = self.target
        if target.is_dir():
            raise SinkError(f"Output path '{target}' is a folder; a {self.name} sink writes one file.",
                            hint="point the sink's `path` at a file inside that folder")
        tmp = temp_path(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = tmp
            self._start(tmp)
        except OSError as exc:
            self._discard()
            raise SinkError(f"Cannot create output '{target}': {exc}") from exc

    def write(self, frame: pd.DataFrame) -> None:
        if self._tmp is None:
            self.open(self.context)
        try:
            self._write(frame)
        except SinkError:
            raise
        except (OSError, ValueError, TypeError) as exc:
            raise SinkError(f"Cannot write to '{self.target}': {type(exc).__name__}: {exc}") from exc
        self.rows += len(frame)

    def close(self, success: bool) -> None:
        tmp = self._tmp
        if tmp is None:
            return
        if not success:
            try:
                self._finish(tmp)
            except Exception:  # best effort: the run already failed, keep its error
                pass
            self._discard()
            return
        try:
            self._finish(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.target)
        except (OSError, ValueError) as exc:
            raise SinkError(f"Cannot publish output '{self.target}': {exc}") from exc
        finally:
            self._discard()

    def outputs(self) -> list[str]:
        return [str(self.target)]

    def _discard(self) -> None:
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


class TextFileSink(FileSink):
    """A file sink that streams text (CSV, JSON Lines) through an optionally compressed handle."""

    _fh: IO[str] | None = None

    def _start(self, tmp: Path) -> None:
        p = self.params
        self._fh = open_text(tmp, resolve_compression(p.compression, self.target), p.encoding)

    def _finish(self, tmp: Path) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()
