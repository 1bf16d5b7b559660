"""Conformance checks for plugins, in the spirit of scikit-learn's ``check_estimator``.

Use them in a plugin package's own tests::

    from adpipe.testing import check_plugin, check_registration
    import my_pkg.plugin

    def test_conformance():
        check_registration(my_pkg.plugin)          # every class it registers
        check_plugin(MedianDistance, {"p": 1})     # one class, with parameters

Each check raises ``AssertionError`` saying what is wrong and how to fix it.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from adpipe.core.context import RunContext
from adpipe.core.plugin import NAME_RE, Detector, Params, Plugin, Preprocessor, Sink, Source, Threshold
from adpipe.core.registry import Registry, kind_of

__all__ = ["check_plugin", "check_registration", "check_detector", "check_preprocessor", "check_threshold",
           "check_source", "check_sink", "outlier_data"]


def outlier_data(n: int = 300, d: int = 4, n_outliers: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian blob with far-away planted outliers: (X, y) with y = 1 for outliers."""
    rng = np.random.default_rng(seed)
    inliers = rng.normal(0, 1, size=(n - n_outliers, d))
    outliers = rng.uniform(6, 9, size=(n_outliers, d)) * rng.choice([-1, 1], size=(n_outliers, d))
    X = np.vstack([inliers, outliers])
    y = np.r_[np.zeros(n - n_outliers), np.ones(n_outliers)]
    return X, y


def _fail(cls: type, what: str, fix: str) -> None:
    raise AssertionError(f"{cls.__module__}.{cls.__qualname__}: {what}\n  fix: {fix}")


def check_contract(cls: type[Plugin], params: dict | None = None) -> Plugin:
    """Name, docstring summary, Params model rejecting unknown keys; returns an instance."""
    kind = kind_of(cls)
    if not NAME_RE.match(getattr(cls, "name", "") or ""):
        _fail(cls, f"name {getattr(cls, 'name', None)!r} is not lower_snake_case", "set name = 'my_plugin'")
    if not cls.summary():
        _fail(cls, "has no docstring", "its first line is the summary `adpipe plugins list` prints")
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, Params)):
        _fail(cls, "Params does not subclass adpipe.Params", "class Params(adpipe.Params): ...")
    try:
        cls.Params(**(params or {}), adpipe_conformance_unknown_key=1)
        _fail(cls, "Params accepts unknown keys", "derive Params from adpipe.Params (extra='forbid')")
    except ValidationError:
        pass
    for pname, field in cls.Params.model_fields.items():
        if not field.description:
            _fail(cls, f"parameter '{pname}' has no description",
                  f"declare it as {pname}: T = adpipe.Field(default, description='...')")
    try:
        plugin = cls(**(params or {}))
    except ValidationError as exc:
        _fail(cls, f"cannot be built with parameters {params or {}}: {exc}", "pass valid params to the check")
    if plugin.kind != kind:
        _fail(cls, f"kind {plugin.kind!r} does not match its base class ({kind})", "don't override `kind`")
    repr(plugin)
    return plugin


def check_detector(cls: type[Detector], params: dict | None = None) -> None:
    """fit returns self; scores are 1-D, finite, repeatable, higher for planted outliers; input untouched."""
    X, y = outlier_data()
    X_before = X.copy()
    det = check_contract(cls, params)
    if det.fit(X) is not det:
        _fail(cls, "fit() does not return self", "end fit() with `return self`")
    if not np.array_equal(X, X_before):
        _fail(cls, "fit() modified its input array", "copy X before changing it")
    scores = np.asarray(det.score(X))
    if scores.shape != (len(X),):
        _fail(cls, f"score() returned shape {scores.shape} for {len(X)} rows", "return one score per row (1-D)")
    if not np.isfinite(scores).all():
        _fail(cls, "score() returned NaN or inf", "scores must be finite floats")
    if not np.allclose(scores, det.score(X), equal_nan=True):
        _fail(cls, "scoring the same rows twice gives different scores", "score() must not change the model")
    if scores[y == 1].mean() <= scores[y == 0].mean():
        _fail(cls, "planted outliers score lower than normal rows", "orient scores so higher = more anomalous")
    one = np.asarray(det.score(X[:1]))
    if one.shape != (1,):
        _fail(cls, "score() of a single row does not return one score", "support batches of any size")
    train = getattr(det, "training_scores_", None)
    if train is not None and len(train) != len(X):
        _fail(cls, "training_scores_ does not have one score per training row", "set it from fit's own scores")


def check_preprocessor(cls: type[Preprocessor], params: dict | None = None, frame: pd.DataFrame | None = None) -> None:
    """fit returns self; transform keeps rows, is repeatable and leaves its input untouched."""
    if frame is None:
        X, _ = outlier_data(n=100, d=3)
        frame = pd.DataFrame(X, columns=["a", "b", "c"])
    before = frame.copy()
    pre = check_contract(cls, params)
    if pre.fit(frame) is not pre:
        _fail(cls, "fit() does not return self", "end fit() with `return self`")
    out = pre.transform(frame)
    if not isinstance(out, pd.DataFrame) or len(out) != len(frame):
        _fail(cls, "transform() must return a DataFrame with one row per input row", "keep every row")
    pd.testing.assert_frame_equal(frame, before, obj="transform() input (must not be modified)")
    pd.testing.assert_frame_equal(out, pre.transform(frame), obj="transform() repeated on the same rows")


def check_threshold(cls: type[Threshold], params: dict | None = None) -> None:
    """fit returns self; predict returns one boolean per row and flags the top scores first."""
    rng = np.random.default_rng(0)
    scores = rng.normal(size=500)
    probs = (scores.argsort().argsort() + 1) / len(scores)
    thr = check_contract(cls, params)
    if thr.fit(scores, probs) is not thr:
        _fail(cls, "fit() does not return self", "end fit() with `return self`")
    flags = np.asarray(thr.predict(scores, probs))
    if flags.shape != scores.shape or flags.dtype != bool:
        _fail(cls, "predict() must return a boolean array with one value per row", "return scores > cutoff")
    if flags.any() and (~flags).any() and scores[flags].min() < scores[~flags].max() - 1e-12:
        _fail(cls, "a lower score is flagged while a higher one is not", "label monotonically in the score")


def check_source(cls: type[Source], params: dict | None = None, batch_rows: int = 10) -> None:
    """batches() yields Batch objects holding DataFrames of at most about batch_rows rows."""
    src = check_contract(cls, params)
    try:
        for i, batch in enumerate(src.batches(batch_rows)):
            if not isinstance(batch.data, pd.DataFrame):
                _fail(cls, "a batch's data is not a DataFrame", "yield adpipe.Batch(frame, meta)")
            src.ack(batch)
            if not src.finite and i >= 3:
                break
    finally:
        src.close()


def check_sink(cls: type[Sink], params: dict | None = None) -> None:
    """open, write twice (at-least-once replay), close(True); then a failed run closes cleanly."""
    frame = pd.DataFrame({"id": [1, 2, 3], "anomaly_score": [0.1, 0.5, 2.0], "anomaly_probability": [0.1, 0.5, 0.99],
                          "is_anomaly": [0, 0, 1], "severity": ["none", "none", "high"],
                          "model_version": "m-1", "run_id": "r-1"})
    ctx = RunContext(pipeline="conformance", id_columns=["id"])
    for success in (True, False):
        sink = check_contract(cls, params)
        sink.open(ctx)
        sink.write(frame)
        sink.write(frame)
        sink.close(success)


CHECKS = {"detector": check_detector, "preprocessor": check_preprocessor, "threshold": check_threshold,
          "source": check_source, "sink": check_sink}


def check_plugin(cls: type[Plugin], params: dict | None = None) -> None:
    """Run the checks for the plugin's kind (the contract checks for kinds without behaviour checks)."""
    check = CHECKS.get(kind_of(cls))
    if check is None:
        check_contract(cls, params)
    else:
        check(cls, copy.deepcopy(params))


def check_registration(module: Any, params: dict[str, dict] | None = None) -> Registry:
    """Register ``module``'s plugins into a fresh registry and check every class (params by name)."""
    registry = Registry()
    registry.register_module(module, dist="<conformance>", entry_point=getattr(module, "__name__", "plugin"))
    if not len(registry):
        raise AssertionError(f"{module!r} registered no plugin: does adpipe_register call registry.add(...)?")
    for info in registry.infos():
        check_plugin(info.cls, (params or {}).get(info.name))
    return registry
