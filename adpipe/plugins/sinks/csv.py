"""CSV sink: result frames appended to one CSV file, published atomically."""

from __future__ import annotations

import pandas as pd

import adpipe
from adpipe.core.errors import SinkError
from adpipe.plugins.sinks._atomic import Compression, FileSink, TextFileSink


def aligned(frame: pd.DataFrame, columns: list | None, target) -> pd.DataFrame:
    """``frame`` with the first frame's columns in the first frame's order (one header for the whole file)."""
    if columns is None or list(frame.columns) == columns:
        return frame
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    if missing or extra:
        raise SinkError(
            f"A batch for '{target}' has different columns from the first batch "
            f"(missing: {missing or 'none'}, new: {extra or 'none'}); one file has one header.",
            hint="every batch written to one file sink must have the same columns",
        )
    return frame[columns]


class CsvSink(TextFileSink):
    """Write results to a CSV file (atomically replaced on success)."""

    name = "csv"

    class Params(FileSink.Params):
        sep: str = adpipe.Field(",", min_length=1, description="field delimiter")
        encoding: str = adpipe.Field("utf-8", description="text encoding")
        float_format: str | None = adpipe.Field(None, description="printf format of floats, e.g. '%.6g'")
        compression: Compression = adpipe.Field(
            "infer", description="gzip, bz2, xz or null; 'infer' picks it from the path (.gz, .bz2, .xz)"
        )

    _columns: list | None = None

    def _start(self, tmp) -> None:
        self._columns = None
        super()._start(tmp)

    def _write(self, frame: pd.DataFrame) -> None:
        frame = aligned(frame, self._columns, self.target)
        first = self._columns is None
        self._columns = list(frame.columns)
        p = self.params
        frame.to_csv(self._fh, index=False, header=first, sep=p.sep, float_format=p.float_format, lineterminator="\n")
