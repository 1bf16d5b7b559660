"""Base classes of every plugin kind: the public plugin contract.

A plugin is a class with a registered ``name`` (lower_snake_case, unique
within its kind), a pydantic ``Params`` model and a docstring whose first line
is its summary. Parameters are validated when the plugin is built::

    det = registry.get("detector", "iforest")(n_estimators=200)
    det.params.n_estimators  # 200
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field  # noqa: F401  (re-exported as adpipe.Field)

from adpipe.core.errors import PluginError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class Params(BaseModel):
    """Base of every plugin's parameter model: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)


class Plugin:
    """Common base: validated parameters, a name, a summary."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    #: importable modules the plugin needs beyond adpipe's core dependencies
    requires: ClassVar[tuple[str, ...]] = ()
    #: how to install what ``requires`` names, shown when it is missing
    install_hint: ClassVar[str | None] = None

    def __init__(self, params: Params | dict | None = None, **kwargs: Any):
        if isinstance(params, Params):
            self.params = params.model_copy(update=kwargs) if kwargs else params
        else:
            self.params = self.Params(**{**(params or {}), **kwargs})
        self.check_requirements()

    @classmethod
    def missing_requirements(cls) -> list[str]:
        return [mod for mod in cls.requires if importlib.util.find_spec(mod) is None]

    @classmethod
    def check_requirements(cls) -> None:
        missing = cls.missing_requirements()
        if missing:
            raise PluginError(
                f"{cls.kind} '{cls.name}' needs {', '.join(missing)}, which is not installed.",
                hint=cls.install_hint or f"pip install {' '.join(missing)}",
            )

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"


@dataclass
class Batch:
    """A chunk of records from a source, plus source metadata (offsets, file, ...)."""

    data: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


class Source(Plugin):
    """Yields batches of records; finite (files) or endless (streams)."""

    kind = "source"
    finite: ClassVar[bool] = True

    def batches(self, batch_rows: int) -> Iterator[Batch]:
        """Yield batches of at most about ``batch_rows`` rows."""
        raise NotImplementedError

    def ack(self, batch: Batch) -> None:
        """Called once every sink has written ``batch`` (commit offsets here)."""

    def dead_letter(self, batch: Batch, rejected: pd.DataFrame) -> bool:
        """Send rows of ``batch`` that failed validation to the source's dead-letter destination.

        ``rejected`` holds those rows (index labels of ``batch.data``) plus ``reject_reason``. Return
        True once they are safely handed over (before :meth:`ack` of the batch commits them), False
        when the source has no dead-letter destination.
        """
        return False

    def stop(self) -> None:
        """Ask an endless source to end :meth:`batches` soon (thread-safe; called on SIGTERM)."""

    def close(self) -> None:
        """Release files and connections."""


class Preprocessor(Plugin):
    """Fitted on training data, then transforms every batch the same way."""

    kind = "preprocessor"
    #: True for stages that fill missing values (NaN then passes validation)
    handles_missing: ClassVar[bool] = False

    def text_columns(self, columns: list[str]) -> list[str]:
        """Which of ``columns`` this stage consumes as text/categories (encoders)."""
        return []

    def output_columns(self, columns: list[str]) -> list[str]:
        """Columns left after this stage, for stages that select or drop columns."""
        return columns

    def fit(self, frame: pd.DataFrame) -> "Preprocessor":
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError


class Detector(Plugin):
    """``fit(X)`` then ``score(X)``: raw scores, higher means more anomalous."""

    kind = "detector"
    #: online detectors also implement ``learn(X)`` (learn as they score)
    online: ClassVar[bool] = False

    def learn(self, X: np.ndarray) -> None:
        """Online detectors: update the model with rows just scored (called after every batch)."""
        raise NotImplementedError(f"{type(self).__name__} does not learn online")
    #: scores of the training rows computed during fit (e.g. PyOD's
    #: ``decision_scores_``); the engine calibrates on them when set
    training_scores_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> "Detector":
        raise NotImplementedError

    def score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Threshold(Plugin):
    """Fitted on training scores (and labels where given), then labels records."""

    kind = "threshold"

    def fit(self, scores: np.ndarray, probabilities: np.ndarray, labels: np.ndarray | None = None) -> "Threshold":
        return self

    def predict(self, scores: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Return a boolean array: True where the record is an anomaly."""
        raise NotImplementedError


class Sink(Plugin):
    """Writes result frames; idempotent on the record key (at-least-once)."""

    kind = "sink"
    #: True when ``write`` returns only once the rows are stored for good; endless sources (streams)
    #: acknowledge records after ``write``, so they need durable sinks. File sinks publish at close.
    durable: ClassVar[bool] = True

    def open(self, context: Any) -> None:
        """Prepare to write (``context`` is the :class:`adpipe.RunContext`)."""

    def write(self, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def close(self, success: bool) -> None:
        """Finish: publish the output when ``success``, else remove partial output."""

    def outputs(self) -> list[str]:
        """Where the output went (paths or URIs), for the run summary."""
        return []


class AlertChannel(Plugin):
    """Delivers alerts about anomalies; failures are recorded, never fatal."""

    kind = "alert_channel"

    def open(self, context: Any) -> None:
        """Prepare to send (``context`` is the :class:`adpipe.RunContext`)."""

    def send(self, anomalies: pd.DataFrame, context: Any) -> None:
        raise NotImplementedError

    def event(self, kind: str, severity: str, summary: str, context: Any, **labels: str) -> None:
        """Something other than anomalies happened (``pipeline_failed``, ``drift``): alert if the rules say so."""

    def close(self) -> None:
        """Flush and release resources."""

    def stats(self) -> dict[str, int]:
        """Delivery counts for the run summary (alerts, notifications delivered/failed/pending)."""
        return {}


@dataclass
class DriftFinding:
    """What a drift detector found in the values it was given."""

    statistic: float  # the test's statistic (KS D, PSI, ADWIN's mean difference, ...)
    threshold: float  # the value the statistic crossed
    p_value: float | None = None
    position: int = -1  # index into the values of the last update where drift was detected
    window: int = 0  # values in the window compared with the reference
    reference: int = 0  # values in the reference
    detail: str = ""  # one readable sentence: "mean rose from 0.10 to 0.85"


class DriftDetector(Plugin):
    """Watches one stream of values (a feature or the anomaly score) for a change in distribution."""

    kind = "drift_detector"
    #: detectors that compare a window with a reference sample (KS, PSI); streaming ones (ADWIN) don't
    needs_reference: ClassVar[bool] = False

    def start(self, reference: np.ndarray | None) -> "DriftDetector":
        """Begin watching; ``reference`` holds values from training (None: use the first window)."""
        return self

    def update(self, values: np.ndarray) -> list[DriftFinding]:
        """Take the next values (finite floats, in arrival order); return drift found in them."""
        raise NotImplementedError


class Integration(Plugin):
    """Runs adpipe inside another system (Airflow, Spark, ...)."""

    kind = "integration"


KINDS: dict[str, type[Plugin]] = {
    cls.kind: cls for cls in (Source, Preprocessor, Detector, Threshold, Sink, AlertChannel, DriftDetector,
                              Integration)
}
