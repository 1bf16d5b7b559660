"""What a running pipeline tells its plugins about itself."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def new_run_id() -> str:
    now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{now}-{uuid.uuid4().hex[:8]}"


@dataclass
class RunContext:
    """Passed to sinks, alert channels and lifecycle hooks."""

    pipeline: str
    run_id: str = field(default_factory=new_run_id)
    model_version: str = ""
    base_dir: Path = field(default_factory=Path.cwd)
    config_path: Path | None = None
    id_columns: list[str] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"adpipe.run.{self.pipeline}")
