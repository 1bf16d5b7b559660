#!/usr/bin/env python
"""The benchmark's baseline: the same batch job as adpipe, hand-written with pandas + scikit-learn only.

    python bench/handwritten.py --input data.csv --output scores.parquet [--sample-rows 100000]

Read the CSV whole -> StandardScaler -> IsolationForest -> ECDF calibration ->
contamination threshold -> severity -> write one Parquet file with the input
columns plus adpipe's result columns (anomaly_score, anomaly_probability,
is_anomaly, severity, model_version, run_id). The steps mirror what
adpipe does, so that ``bench/batch.py`` compares like with like:

- training set: every row, or ``df.sample(sample_rows, random_state=0)``
  when the file has more rows than ``--sample-rows``;
- score: ``-IsolationForest.score_samples`` (higher = more anomalous; the
  ``isolation_forest`` plugin's score; PyOD's ``iforest`` differs by a
  constant, which changes neither probabilities nor flags);
- probability: the empirical CDF of the training scores (levels counted over
  n + 1 rows), interpolated with ``np.interp`` on at most 2001 knots, the
  same as adpipe/core/calibration.py;
- flag: the probability cut-off for which the share of training rows at or
  above it is closest to ``contamination`` (adpipe's ``contamination``);
- severity: ``low/medium/high/critical`` at probability 0.95 / 0.99 / 0.999
  for flagged rows, ``none`` otherwise (adpipe's default bands).

It prints one JSON line with the time of each step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
import uuid
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

MAX_KNOTS = 2001
SEVERITIES = np.array(["none", "low", "medium", "high", "critical"], dtype=object)


def ecdf(train_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, counts = np.unique(train_scores, return_counts=True)
    levels = np.cumsum(counts) / (train_scores.size + 1)  # over n + 1: only scores above training reach 1.0
    if values.size > MAX_KNOTS:
        idx = np.unique(np.linspace(0, values.size - 1, MAX_KNOTS).round().astype(int))
        values, levels = values[idx], levels[idx]
    return values, levels


def contamination_cutoff(train_probs: np.ndarray, contamination: float) -> float:
    values = np.sort(train_probs)
    cuts, first = np.unique(values, return_index=True)
    flagged = values.size - first
    gap = np.abs(flagged - contamination * values.size)
    return float(cuts[np.flatnonzero(gap <= gap.min() + 1e-9)[-1]])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Hand-written pandas + scikit-learn batch scoring (benchmark baseline).")
    ap.add_argument("--input", required=True, help="CSV with an `id` column and numeric feature columns")
    ap.add_argument("--output", required=True, help="Parquet file to write")
    ap.add_argument("--id-column", default="id")
    ap.add_argument("--n-estimators", type=int, default=100)
    ap.add_argument("--max-samples", default="auto", help="'auto' or an int")
    ap.add_argument("--random-state", type=int, default=0)
    ap.add_argument("--contamination", type=float, default=0.01)
    ap.add_argument("--sample-rows", type=int, default=None, help="fit on a random sample of this many rows")
    args = ap.parse_args(argv)
    max_samples = args.max_samples if args.max_samples == "auto" else int(args.max_samples)

    t = {}
    t0 = start = time.perf_counter()
    df = pd.read_csv(args.input)
    t["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    features = [c for c in df.columns if c != args.id_column]
    train = df
    if args.sample_rows is not None and len(df) > args.sample_rows:
        train = df.sample(args.sample_rows, random_state=0)
    X_train = train[features].to_numpy(dtype=np.float64)
    scaler = StandardScaler().fit(X_train)
    X_train = scaler.transform(X_train)
    forest = IsolationForest(n_estimators=args.n_estimators, max_samples=max_samples,
                             random_state=args.random_state).fit(X_train)
    train_scores = -forest.score_samples(X_train)
    knots, levels = ecdf(train_scores)
    cutoff = contamination_cutoff(np.interp(train_scores, knots, levels, left=0.0, right=1.0), args.contamination)
    del X_train, train
    t["fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    X = scaler.transform(df[features].to_numpy(dtype=np.float64))
    scores = -forest.score_samples(X)
    del X
    probs = np.interp(scores, knots, levels, left=0.0, right=1.0)
    flags = probs >= cutoff
    band = np.searchsorted([0.95, 0.99, 0.999], probs, side="right") + 1
    t["score"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fitted_at = datetime.now(timezone.utc)
    digest = hashlib.sha256(f"{vars(args)}{fitted_at.isoformat()}".encode()).hexdigest()
    df["anomaly_score"] = scores
    df["anomaly_probability"] = probs
    df["is_anomaly"] = flags.astype(np.int8)
    df["severity"] = SEVERITIES[np.where(flags, band, 0)]
    df["model_version"] = f"handwritten-{digest[:10]}"
    df["run_id"] = f"{fitted_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    tmp = f"{args.output}.tmp-{os.getpid()}"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, args.output)
    t["write"] = time.perf_counter() - t0
    t["total"] = time.perf_counter() - start
    print(json.dumps({"rows": len(df), "anomalies": int(flags.sum()), "train_rows": int(len(train_scores)),
                      "seconds": {k: round(v, 4) for k, v in t.items()}}))


if __name__ == "__main__":
    main()
