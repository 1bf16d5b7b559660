#!/usr/bin/env python
"""Raw-score distributions and ROC-AUC of every built-in detector -> docs/detectors.md.

Fits each detector that runs without extra packages (no torch, combo or suod)
with its default parameters on a few small ADBench datasets and records the
distribution of its training scores (the scores adpipe calibrates on), the
ROC-AUC of those scores against the labels, and the fit time. Then it writes
docs/detectors.md: the catalog, the tables, the excluded parameters and
detectors, and how adpipe turns raw scores into ``anomaly_probability``.

    python bench/score_distributions.py                  # writes docs/detectors.md
    python bench/score_distributions.py --out /tmp/d.md --datasets 14_glass

Data: ../shared/data/adbench/<name>.npz next to the repository (or --data).
Features are standardised with the training mean and standard deviation first,
as ``preprocess: [{type: standard_scaler}]`` would do in a pipeline.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import adpipe.plugins.algorithms as algorithms  # noqa: E402
from adpipe.plugins.algorithms._catalog import CATALOG, NOT_WRAPPED  # noqa: E402
from adpipe.plugins.algorithms._describe import allowed  # noqa: E402
from adpipe.plugins.algorithms._params import BLOCK_PARAM  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "adbench"
DEFAULT_DATASETS = ("14_glass", "45_wine", "21_Lymphography")

#: what a raw score *is* for each detector (the scale and sign convention)
SCALE = {
    "isolation_forest": "minus sklearn's score_samples: 2^(-mean path length / c(n)); about 0.35-0.5 for inliers, up to 1",
    "local_outlier_factor": "local outlier factor: about 1 for inliers, > 1 for outliers, unbounded",
    "one_class_svm": "minus sklearn's score_samples (the unshifted decision function): negative here, closer to 0 = further outside the support",
    "elliptic_envelope": "squared robust Mahalanobis distance, >= 0, with a heavy upper tail",
    "knn": "distance to the k-th nearest neighbour, >= 0, in feature units",
    "avg_knn": "mean distance to the k nearest neighbours, >= 0, in feature units",
    "median_knn": "median distance to the k nearest neighbours, >= 0, in feature units",
    "lof": "local outlier factor: about 1 for inliers, > 1 for outliers, unbounded",
    "cof": "connectivity-based outlier factor: about 1 for inliers, > 1 for outliers",
    "abod": "minus the variance of the weighted angles to other rows: <= 0, outliers close to 0; magnitudes span orders of magnitude",
    "sod": "subspace deviation, >= 0",
    "sampling": "distance to the nearest row of a random subset, >= 0, in feature units",
    "inne": "isolation score in [0, 1]",
    "loci": "MDEF / sigma_MDEF at the most deviating radius: about 0 (can be negative) for inliers, around k = 3 and above for outliers",
    "ecod": "sum over features of -log tail probabilities, >= 0, grows with the number of features",
    "copod": "sum over features of -log copula tail probabilities, >= 0, grows with the number of features",
    "hbos": "sum over features of -log histogram density; any sign, grows with the number of features",
    "loda": "weighted mean over random 1-D projections of -log histogram density; small positive values",
    "gmm": "negative log-likelihood under the mixture; any sign",
    "kde": "negative log-density; any sign",
    "mad": "modified z-score |x - median| / (1.4826 MAD), >= 0 (univariate)",
    "mcd": "squared robust Mahalanobis distance, >= 0, with a heavy upper tail",
    "qmcd": "wrap-around discrepancy change; negative here, with a range tiny compared with its magnitude",
    "sos": "outlier probability in [0, 1]",
    "cd": "mean Cook's distance over the per-feature regressions, >= 0",
    "pca": "sum of the distances to the selected eigenvectors, each divided by its explained-variance ratio; >= 0, large",
    "kpca": "reconstruction error in the kernel feature space, >= 0 (about [0, 1] with the rbf kernel)",
    "ocsvm": "minus sklearn's decision_function: negative inside the learned boundary, positive outside",
    "lmdd": "smoothing factor (reduction of dissimilarity when the row is removed), >= 0; most rows score exactly 0",
    "rgraph": "minus the random-walk stationary probability: <= 0, most rows at 0",
    "iforest": "minus sklearn's decision_function: about -0.2..0 for inliers, > 0 for outliers",
    "cblof": "distance to the nearest large cluster centre (optionally weighted), >= 0",
    "lscp": "average of standardised scores of the selected base detectors; any sign",
    "hdbscan": "1 - cluster membership strength, in [0, 1]; noise rows score 1",
    "rod": "sigmoid of the modified z-score of the rotation volume, averaged over 3-D subspaces: in [0.5, 1)",
    "feature_bagging": "average (or maximum) of the base detector's scores over feature subsets",
    "suod": "average (or maximum) of the base detectors' standardised scores",
}


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(path, allow_pickle=False)
    X = np.asarray(data["X"], dtype=float)
    std = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return X, np.asarray(data["y"]).astype(int)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def run(datasets: dict[str, tuple[np.ndarray, np.ndarray]], names: list[str]) -> dict:
    results: dict[str, dict] = {}
    for name in names:
        cls = algorithms.DETECTORS[name]
        results[name] = {}
        X0 = next(iter(datasets.values()))[0][:30]
        with warnings.catch_warnings():  # warm-up: numba compiles PyOD's kernels on first use
            warnings.simplefilter("ignore")
            cls().fit(X0[:, :1] if name == "mad" else X0)
        for ds, (X, y) in datasets.items():
            Xd = X[:, :1] if name == "mad" else X
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                det = cls().fit(Xd)
                train = det.training_scores_ if det.training_scores_ is not None else det.score(Xd)
            seconds = time.perf_counter() - t0
            q = np.percentile(train, [0, 50, 95, 99, 100])
            results[name][ds] = {"q": q, "auc": roc_auc(y, train), "seconds": seconds}
            print(f"{name:22s} {ds:14s} auc={results[name][ds]['auc']:.3f} {seconds:6.2f}s", file=sys.stderr)
    return results


def fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.2e}"
    return f"{x:.4g}"


def render(results: dict, datasets: dict, skipped: dict[str, str]) -> str:
    import pyod
    import sklearn

    ds_names = list(datasets)
    out: list[str] = []
    w = out.append
    w("# Detectors\n")
    w("<!-- Generated by bench/score_distributions.py; edit that script, not this file. -->\n")
    w(f"adpipe ships {len(algorithms.DETECTORS)} detectors: {len(algorithms.SKLEARN_DETECTORS)} from scikit-learn, "
      f"{len(algorithms.PYOD_DETECTORS)} from PyOD ({len(algorithms.TORCH_DETECTORS)} of them need torch) and "
      f"{len(algorithms.ONLINE_DETECTORS)} online ones that learn as they score (docs/online.md). "
      "Pick one by name in a config (`detector: {type: lof, n_neighbors: 35}`) or on the command line "
      "(`detector=lof detector.n_neighbors=35`; `adpipe/configs/detector/<name>.yaml` holds each one's key "
      "parameters). `adpipe plugins show <name>` lists every parameter with its default, range and "
      "description.\n")
    w("Every detector returns raw scores where **higher means more anomalous** (scikit-learn's "
      "`score_samples` is negated; PyOD's `decision_function` already points that way).\n")

    w("## Raw scores are not comparable across detectors\n")
    w("Each algorithm scores on its own scale: a distance in feature units (kNN), a density ratio around 1 "
      "(LOF), a sum of log tail probabilities that grows with the number of features (ECOD, COPOD, HBOS), a "
      "probability in [0, 1] (SOS, INNE), a negative log-likelihood of any sign (GMM, KDE), a tiny negative "
      "variance (ABOD). The tables below show how different the ranges are: a raw score of 3 is unremarkable for "
      "one detector and extreme for another, and the same detector's scale moves with the data (number of "
      "features, units, sample size). A fixed cut-off on raw scores therefore does not transfer between "
      "detectors or datasets.\n")
    w("That is why adpipe **calibrates** raw scores into `anomaly_probability` (the engine does this, not the "
      "detectors): after fitting, it keeps the training scores (the detector's `training_scores_` when it sets "
      "them, e.g. PyOD's `decision_scores_`, otherwise the scores of the training rows) and maps a new raw score "
      "to the share of training rows with a lower raw score: the empirical CDF of the training scores, "
      "interpolated linearly between neighbouring training scores and counted over n + 1 rows, so only a score above everything seen in training reaches 1.0 (`calibration: {method: gaussian}` picks Kriegel et al.'s erf scaling instead). The probability is in [0, 1], monotone in the "
      "raw score, and means the same for every detector: 0.99 = higher than 99 % of the training rows. "
      "Thresholds, ensembles, severities and alerts work on it, so they are algorithm-agnostic.\n")
    w("`training_scores_` matters for neighbour-based detectors: PyOD's kNN/LOF training scores leave each row "
      "out of its own neighbourhood, while re-scoring the training rows would count every row as its own nearest "
      "neighbour and make the training scores too small (the calibration would then call ordinary new rows "
      "anomalous).\n")

    # overview
    w("## Overview\n")
    w(f"Default parameters; features standardised; unsupervised protocol (fit on all rows, labels only for the "
      f"ROC-AUC of the training scores). Datasets (ADBench): "
      + ", ".join(f"`{d}` ({datasets[d][0].shape[0]} rows x {datasets[d][0].shape[1]} features, "
                  f"{100 * datasets[d][1].mean():.1f} % anomalies)" for d in ds_names)
      + f". pyod {pyod.__version__}, scikit-learn {sklearn.__version__}.\n")
    header = "| detector | library | summary | " + " | ".join(f"AUC {d}" for d in ds_names) + " | fit s (max) |"
    w(header)
    w("|" + "---|" * (4 + len(ds_names)))
    for name, cls in algorithms.DETECTORS.items():
        lib = "scikit-learn" if name in algorithms.SKLEARN_DETECTORS else \
            "adpipe (online)" if name in algorithms.ONLINE_DETECTORS else "PyOD"
        summary = cls.summary().replace("|", "\\|")
        if name in results:
            aucs = " | ".join(f"{results[name][d]['auc']:.3f}" for d in ds_names)
            secs = f"{max(r['seconds'] for r in results[name].values()):.2f}"
        else:
            aucs = " | ".join("-" for _ in ds_names)
            secs = skipped.get(name, "-")
        w(f"| `{name}` | {lib} | {summary} | {aucs} | {secs} |")
    w("")
    w("AUC < 0.5 means the detector's notion of \"unusual\" does not match the labels on that dataset (it is not "
      "a sign error: `tests/test_detectors.py` checks that every detector here except `rgraph` scores outliers "
      "planted far outside a Gaussian blob higher than the blob). "
      "Notable: `hdbscan` gives every row it labels as noise the score 1, so on data without clear clusters many "
      "rows tie at the top; `rgraph` assumes inliers lie in a union of low-dimensional subspaces and ranks outliers lower "
      "than inliers on full-rank data (its sign is PyOD's); `one_class_svm`/`ocsvm` depend strongly on `gamma` and "
      "`nu`.\n")

    # batch scoring
    batch = [e for e in CATALOG if e.batch_scoring]
    w("## Detectors that score a batch as a set\n")
    w("Some PyOD classes score a batch of new rows as a set, so a row's score depends on the other rows it is "
      "scored with. "
      + ", ".join(f"`{e.name}`" for e in batch if e.batch_scoring == "with_training")
      + " compute their scores from the rows they are given, using the fitted model little or not at all "
      "(COF, SOD, LOCI, SOS and LMDD ignore it: COF of a one-row batch is meaningless, and a batch smaller "
      "than `n_neighbors` fails); adpipe appends each block of new rows to the training rows, so new scores "
      "are on the scale of the training scores. "
      + ", ".join(f"`{e.name}`" for e in batch if e.batch_scoring == "blocks")
      + " use statistics of the batch (ECOD/COPOD: tail probabilities of training plus batch rows), so a batch "
      "much larger than the training data would shift every score; adpipe scores them block by block. "
      f"Blocks hold `{BLOCK_PARAM}` new rows (default: max(1, min(1000, training rows // 20)), so new rows "
      f"never outweigh the training rows); `{BLOCK_PARAM}: 1` makes scores independent of the batch at the cost "
      "of one call per row.\n")

    # per-detector tables
    w("## Raw-score distributions\n")
    w("Training scores with default parameters (the scores the engine calibrates on).\n")
    for name, per_ds in results.items():
        cls = algorithms.DETECTORS[name]
        w(f"### `{name}`\n")
        w(f"{cls.summary()} Raw score: {SCALE.get(name, 'higher = more anomalous')}.\n")
        w("| dataset | min | median | p95 | p99 | max | ROC-AUC |")
        w("|---|---|---|---|---|---|---|")
        for d in ds_names:
            r = per_ds[d]
            w(f"| {d} | " + " | ".join(fmt(v) for v in r["q"]) + f" | {r['auc']:.3f} |")
        w("")

    # not run here
    w("## Detectors that need extra packages\n")
    w("Their parameters show in `adpipe plugins show <name>` without the package; building one without it raises "
      "a `PluginError` naming the package and how to install it.\n")
    w("| detector | summary | needs | install |")
    w("|---|---|---|---|")
    for name, cls in algorithms.DETECTORS.items():
        if cls.requires:
            w(f"| `{name}` | {cls.summary()} | {', '.join(cls.requires)} | `{cls.install_hint}` |")
    w("")
    w("The torch detectors' parameter models are read from PyOD's source with `ast` (their PyOD modules import "
      "torch at import time), so they need neither torch nor an import of PyOD.\n")

    # excluded
    w("## What is not exposed\n")
    w("- `contamination` (every PyOD detector): adpipe's threshold stage decides what is an anomaly. PyOD gets a "
      "fixed 0.1, which only affects PyOD's own `labels_`/`threshold_`, never the scores. scikit-learn wrappers "
      "likewise leave it at the estimator's default (it only shifts `offset_`).")
    w("- `random_state` defaults to 0 (PyOD's default is None or 42) so runs are reproducible; set it to `null` "
      "for fresh randomness. `verbose` defaults to 0/false.")
    for e in CATALOG:
        for param, why in e.exclude.items():
            w(f"- `{e.name}.{param}`: {why}.")
        for param, spec in e.specs.items():
            w(f"- `{e.name}.{param}` takes PyOD detector objects; adpipe takes detector specs instead "
              f"(a name or `{{type: ..., <params>}}`, validated by that detector's Params).")
        for param in e.from_data:
            w(f"- `{e.name}.{param}` is derived from the training data.")
    w("")
    w("PyOD detectors adpipe does not wrap:\n")
    for name, why in NOT_WRAPPED.items():
        w(f"- `{name}`: {why}.")
    w("")
    w("## Key parameters\n")
    w("| detector | key parameters (accepted values) |")
    w("|---|---|")
    for name, cls in algorithms.DETECTORS.items():
        fields = cls.Params.model_fields
        keys = [k for k in cls.key_params() if k in fields]
        text = "; ".join(f"`{k}`: {allowed(fields[k])}, default `{fields[k].default!r}`" for k in keys)
        w(f"| `{name}` | {text.replace('|', chr(92) + '|') or 'none (parameter-free)'} |")
    w("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "detectors.md")
    parser.add_argument("--only", nargs="+", help="detectors to run (default: all that can run here)")
    args = parser.parse_args(argv)
    datasets = {}
    for ds in args.datasets:
        path = args.data / f"{ds}.npz"
        if not path.exists():
            parser.error(f"dataset not found: {path}")
        datasets[ds] = load(path)
    skipped = {}
    names = []
    for name, cls in algorithms.DETECTORS.items():
        missing = cls.missing_requirements()
        if missing:
            skipped[name] = f"needs {', '.join(missing)}"
        elif args.only is None or name in args.only:
            names.append(name)
    results = run(datasets, names)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, datasets, skipped), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
