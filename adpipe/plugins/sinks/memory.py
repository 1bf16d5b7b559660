"""Memory sink: keeps result frames in a list, for the Python API and tests."""

from __future__ import annotations

from typing import Any

import pandas as pd

import adpipe


class MemorySink(adpipe.Sink):
    """Keep results in memory (sink.frames, sink.frame()) for the Python API."""

    name = "memory"

    class Params(adpipe.Params):
        pass

    def __init__(self, params=None, **kwargs: Any):
        super().__init__(params, **kwargs)
        self.frames: list[pd.DataFrame] = []

    def open(self, context: Any = None) -> None:
        self.frames = []

    def write(self, frame: pd.DataFrame) -> None:
        self.frames.append(frame)

    def close(self, success: bool) -> None:
        if not success:  # like the file sinks: a failed run leaves no partial output
            self.frames = []

    def frame(self) -> pd.DataFrame:
        """Every frame written so far, concatenated (an empty frame when there is none)."""
        frames = [f for f in self.frames if len(f.columns)]
        return pd.concat(frames) if frames else pd.DataFrame()

    def outputs(self) -> list[str]:
        return []  # nothing on disk (the engine puts the run summary beside file outputs)
