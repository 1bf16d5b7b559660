"""One exception hierarchy for everything adpipe raises on purpose.

Every error carries a one-paragraph message (what went wrong, where, how to
fix it) and maps to a documented CLI exit code.
"""

from __future__ import annotations


class AdpipeError(Exception):
    """Base class of every error adpipe raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(AdpipeError):
    """The config is malformed, incomplete or names something that does not exist."""

    exit_code = 2


class DataError(AdpipeError):
    """The input data cannot be used as it is (empty, non-numeric, NaN, wrong columns)."""

    exit_code = 3


class PluginError(AdpipeError):
    """A plugin failed to load, clashes with another one, or misbehaved."""

    exit_code = 4


class PluginConflictError(PluginError):
    """Two distributions register a plugin of the same kind and name."""


class ModelError(AdpipeError):
    """A model is not fitted, cannot be loaded, or does not match the data."""

    exit_code = 5


class ModelNotFoundError(ModelError):
    """No model at that path, name, version or stage."""


class ModelIntegrityError(ModelError):
    """A model file is damaged, truncated, edited or not a model file at all."""


class ModelTrustError(ModelError):
    """A model file is intact but not signed with a trusted key (strict trust policy)."""


class ModelCompatibilityError(ModelError):
    """A model was made by a newer adpipe, or by library versions this install cannot load."""


class ModelCompatibilityWarning(UserWarning):
    """A model was made with other (compatible) library versions; its scores may differ slightly."""


class SchemaMismatchError(DataError):
    """The data to score does not have the columns and types the model was fitted on."""

    def __init__(self, message: str, differences: list[str], *, hint: str | None = None):
        self.differences = differences
        super().__init__(message, hint=hint)


class SourceError(AdpipeError):
    """A source cannot be opened or read (missing file, unreadable format)."""

    exit_code = 6


class SinkError(AdpipeError):
    """A sink cannot write its output."""

    exit_code = 7


class AlertError(AdpipeError):
    """An alert channel failed to deliver (recorded, never stops scoring)."""

    exit_code = 8


# Exit codes of the CLI, documented in the README.
EXIT_CODES = {
    0: "success",
    1: "unexpected internal error (a bug: please report it with --debug output)",
    2: "config error (bad YAML, unknown plugin or key, out-of-range value)",
    3: "data error (empty input, non-numeric or missing values, missing columns)",
    4: "plugin error (a plugin failed to load or misbehaved)",
    5: "model error (fit/score failure; model missing, damaged, untrusted or incompatible)",
    6: "source error (missing or unreadable input)",
    7: "sink error (output cannot be written)",
    8: "alert delivery error",
    130: "interrupted (Ctrl-C)",
}
