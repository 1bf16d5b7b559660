"""adpipe: plugin-based anomaly-detection pipelines driven by YAML configs.

Quick start::

    import adpipe
    result = adpipe.detect(df, algorithm="iforest", contamination=0.05)
    result.to_frame()
"""

from adpipe.core.context import RunContext
from adpipe.core.errors import (
    AdpipeError,
    AlertError,
    ConfigError,
    DataError,
    ModelCompatibilityError,
    ModelCompatibilityWarning,
    ModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelTrustError,
    PluginConflictError,
    PluginError,
    SchemaMismatchError,
    SinkError,
    SourceError,
)
from adpipe.core.hookspecs import hookimpl, hookspec
from adpipe.core.plugin import (
    AlertChannel,
    Batch,
    Detector,
    DriftDetector,
    DriftFinding,
    Field,
    Integration,
    Params,
    Plugin,
    Preprocessor,
    Sink,
    Source,
    Threshold,
)
from adpipe.core.registry import Registry, get_registry

__version__ = "0.1.0"

_LAZY = {
    "detect": "adpipe.core.api",
    "algorithms": "adpipe.core.api",
    "DetectionResult": "adpipe.core.api",
    "Pipeline": "adpipe.core.engine",
    "FittedPipeline": "adpipe.core.engine",
    "RunSummary": "adpipe.core.summary",
    "load_model": "adpipe.core.model",
    "ModelStore": "adpipe.core.store",
    "explain": "adpipe.core.explain",
    "feature_importance": "adpipe.core.explain",
    "profile": "adpipe.core.profile",
    "tune": "adpipe.core.tuning",
    "compare": "adpipe.core.compare",
    "benchmark": "adpipe.core.benchmark",
}


def __getattr__(name):  # heavy parts (engine, API) load on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adpipe' has no attribute {name!r}")


__all__ = [
    "AdpipeError", "AlertChannel", "AlertError", "Batch", "ConfigError", "DataError", "Detector",
    "DriftDetector", "DriftFinding",
    "Field", "Integration", "ModelCompatibilityError", "ModelCompatibilityWarning", "ModelError",
    "ModelIntegrityError", "ModelNotFoundError", "ModelTrustError", "SchemaMismatchError", "Params", "Plugin", "PluginConflictError", "PluginError",
    "Preprocessor", "Registry", "RunContext", "Sink", "SinkError", "Source", "SourceError",
    "Threshold", "get_registry", "hookimpl", "hookspec", *_LAZY,
]
