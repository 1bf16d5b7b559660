"""JSON Lines sink: one JSON object per result row, published atomically."""

from __future__ import annotations

import pandas as pd

import adpipe
from adpipe.plugins.sinks._atomic import Compression, FileSink, TextFileSink


class JsonlSink(TextFileSink):
    """Write results as JSON Lines, one object per row (atomically replaced on success)."""

    name = "jsonl"

    class Params(FileSink.Params):
        encoding: str = adpipe.Field("utf-8", description="text encoding")
        compression: Compression = adpipe.Field(
            "infer", description="gzip, bz2, xz or null; 'infer' picks it from the path (.gz, .bz2, .xz)"
        )

    def _write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        text = frame.to_json(orient="records", lines=True, date_format="iso", force_ascii=False, default_handler=str)
        self._fh.write(text if text.endswith("\n") else text + "\n")
