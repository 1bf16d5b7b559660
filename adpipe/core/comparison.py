"""Compare two model versions: metadata differences and, on a dataset, scores, flags and metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from adpipe.core import evaluate, schema

SKIP = {"created_at", "payload", "training.fitted_at", "training.seconds", "training.tuning.seconds", "model_version"}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"config.detector.n_estimators": 100, ...}`` (lists stay whole)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def metadata_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every metadata field that differs (timestamps and hashes aside)."""
    fa, fb = flatten(a), flatten(b)
    keys = [k for k in dict.fromkeys([*fa, *fb])
            if not any(k == s or k.startswith(s + ".") for s in SKIP) and not k.startswith("training.feature_stats")]
    return [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]


def compare_on_data(models: dict[str, Any], frame, label: str | None = None) -> dict[str, Any]:
    """Score ``frame`` with each model: score distribution, flags, agreement, and metrics with labels."""
    results = {ref: model.score(frame) for ref, model in models.items()}
    out: dict[str, Any] = {"rows": int(len(frame)), "models": {}}
    for ref, res in results.items():
        probs = res[schema.PROBABILITY].to_numpy()
        entry = {
            "scored": int(len(res)),
            "anomalies": int(res[schema.LABEL].sum()),
            "anomaly_rate": float(res[schema.LABEL].mean()) if len(res) else 0.0,
            "probability_quantiles": {q: float(np.quantile(probs, q)) for q in (0.5, 0.9, 0.99)} if len(res) else {},
            "severity": {k: int(v) for k, v in res[schema.SEVERITY].value_counts().items() if k != "none"},
        }
        if label and label in frame.columns:
            y = frame.loc[res.index, label].to_numpy(dtype=np.float64, na_value=np.nan)
            entry["metrics"] = evaluate.metrics(y, res[schema.SCORE].to_numpy(), res[schema.LABEL].to_numpy())
        out["models"][ref] = entry
    (ra, a), (rb, b) = list(results.items())[:2]
    common = a.index.intersection(b.index)
    fa = a.loc[common, schema.LABEL].to_numpy().astype(bool)
    fb = b.loc[common, schema.LABEL].to_numpy().astype(bool)
    either = (fa | fb).sum()
    from scipy.stats import spearmanr

    rho = spearmanr(a.loc[common, schema.SCORE], b.loc[common, schema.SCORE]).statistic if len(common) > 2 else None
    out["agreement"] = {
        "rows_compared": int(len(common)),
        "same_flag": float((fa == fb).mean()) if len(common) else None,
        "flagged_by_both": int((fa & fb).sum()),
        f"only_{ra}": int((fa & ~fb).sum()),
        f"only_{rb}": int((~fa & fb).sum()),
        "jaccard": float((fa & fb).sum() / either) if either else None,
        "score_rank_correlation": None if rho is None or np.isnan(rho) else float(rho),
    }
    return out
