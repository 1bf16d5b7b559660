"""Compare detectors on one pipeline config: same data, columns, preprocessing and threshold; only the
detector changes.

    result = compare("configs/fraud.yaml", ["iforest", "lof", "ecod"])
    result.recommendation["reason"]; result.to_dict(); result.report("compare.html")

With a label column (``columns.label``) every detector is fitted (unsupervised: labels are never shown
to it) on the same rows and measured on the same stratified held-out rows; without one, each is fitted
on every row and the detectors are compared by cost and by how much they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from adpipe.core import evaluate
from adpipe.core.algorithm_eval import Evaluation, evaluate_algorithm, parse_algorithms, with_detector
from adpipe.core.config import PipelineConfig, load_config
from adpipe.core.errors import ConfigError, DataError, ModelError
from adpipe.core.progress import progress_bar
from adpipe.core.registry import Registry

DEFAULT_HOLDOUT = 0.2  # held-out share when the config's fit.holdout is 0
PRIMARY = "pr_auc"  # anomalies are rare: PR-AUC separates detectors that ROC-AUC calls equal


def split_params(algorithms: list[str], overrides: Iterable[str]) -> tuple[dict[str, dict], list[str]]:
    """Take ``ALGORITHM.param=value`` (or ``+ALGORITHM.param=value``) out of the Hydra overrides."""
    import yaml

    params: dict[str, dict] = {}
    rest = []
    for item in overrides:
        key, eq, value = item.lstrip("+").partition("=")
        name, dot, param = key.partition(".")
        if eq and dot and name in algorithms and param and "." not in param:
            params.setdefault(name, {})[param] = yaml.safe_load(value)
        else:
            rest.append(item)
    return params, rest


@dataclass
class Comparison:
    """What :func:`compare` found: one :class:`Evaluation` per algorithm, agreement, noise, a recommendation."""

    name: str
    config_path: str | None
    rows: int
    features: int
    label: str | None
    split: dict[str, Any]
    evaluations: list[Evaluation]
    agreement: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)
    recommendation: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return any(e.metrics for e in self.evaluations)

    def ranked(self) -> list[Evaluation]:
        """Best first: by PR-AUC then ROC-AUC with labels, by fit + score time without; failures last."""
        ok = [e for e in self.evaluations if e.ok]
        if self.labelled:
            ok.sort(key=lambda e: (-e.metrics.get(PRIMARY, -1), -e.metrics.get("roc_auc", -1)))
        else:
            ok.sort(key=lambda e: e.seconds)
        return ok + [e for e in self.evaluations if not e.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config_path, "rows": self.rows, "features": self.features,
                "label": self.label, "split": self.split, "ranking": [e.algorithm for e in self.ranked()],
                "results": [e.to_dict() for e in self.ranked()], "agreement": self.agreement,
                "noise": self.noise, "recommendation": self.recommendation, "versions": self.versions}

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per algorithm, ranked: the numbers of the terminal table and the HTML report."""
        rows = []
        for i, e in enumerate(self.ranked(), 1):
            row: dict[str, Any] = {"rank": i if e.ok else None, "algorithm": e.algorithm}
            if self.labelled:
                ci = self.noise.get("ci", {}).get(e.algorithm, {})
                for m in evaluate.METRICS:
                    row[m] = e.metrics.get(m)
                row["pr_auc_ci"] = "{:.3f}–{:.3f}".format(*ci[PRIMARY]) if PRIMARY in ci else None
            else:
                row["mean_spearman"] = self.agreement.get("mean_spearman", {}).get(e.algorithm)
            row.update({"flagged": e.flagged, "fit_s": e.fit_seconds, "score_s": e.score_seconds,
                        "peak_mb": e.peak_mb, "error": e.error})
            rows.append(row)
        return rows

    def report(self, path: str | Path) -> Path:
        """Write the HTML report (tables, curves, histograms, agreement heatmaps) to ``path``."""
        return html_report(self).write(path)


def compare(config: str | Path | PipelineConfig, algorithms: str | Iterable[str], overrides: Iterable[str] = (),
            *, params: dict[str, dict] | None = None, holdout: float | None = None, bootstrap: int = 200,
            top: float = 0.05, progress: bool = False, registry: Registry | None = None) -> Comparison:
    """Run ``config``'s pipeline once per algorithm, replacing only the detector, and compare the results.

    ``algorithms``: detector names (``"iforest,lof"`` or a list). ``params``: per-algorithm parameters,
    ``{"knn": {"n_neighbors": 10}}``; an algorithm without any takes its defaults, except the config's own
    detector, which keeps the config's parameters. ``holdout``: share of labelled rows measured (default
    the config's ``fit.holdout``, or 0.2 when that is 0). ``bootstrap``: resamples of the held-out rows
    used to tell real differences from noise (0: none). ``top``: share of rows in the top-k agreement.
    """
    from adpipe.core.api import library_versions
    from adpipe.core.engine import Pipeline

    names = parse_algorithms(algorithms)
    if len(names) < 2:
        raise ConfigError(f"compare needs at least 2 algorithms, got {names or 'none'}.",
                          hint="e.g. algorithms=[iforest,lof,ecod]; `adpipe plugins list --kind detector` lists them")
    cfg = config if isinstance(config, PipelineConfig) else load_config(config, list(overrides), registry=registry,
                                                                        need_detector=False)
    params = dict(params or {})
    configs = {}
    for name in names:  # every config is validated before any data is read
        own = cfg.detector is not None and cfg.detector.type == name
        base = {k: v for k, v in cfg.detector.to_dict().items() if k != "type"} if own else {}
        configs[name] = with_detector(cfg, name, {**base, **params.get(name, {})}, registry=registry)
    frame = Pipeline(cfg, registry).read_training()
    if len(frame) == 0:
        raise DataError("The data is empty: there are no rows to compare the detectors on.",
                        hint="check the source path and that the file has data rows below its header")
    label = cfg.columns.label
    fit_frame, eval_frame, split = frame, frame, {"protocol": "no labels: fitted on every row, every row scored"}
    if label:
        held, split = _holdout(frame, label, cfg, holdout)
        fit_frame, eval_frame = frame.drop(index=frame.index[held]), frame.iloc[held]
    results = []
    with progress_bar(len(names), progress, "compare") as bar:
        for name in names:
            bar.update(description=f"compare: {name}")
            results.append(evaluate_algorithm(configs[name], fit_frame, eval_frame))
            bar.advance()
    if not any(e.ok for e in results):
        raise ModelError("Every algorithm failed: " + "; ".join(f"{e.algorithm}: {e.error}" for e in results),
                         hint="check the data and each detector's parameters (`adpipe plugins show NAME`)")
    features = len(configs[names[0]].columns.features or []) or _feature_count(frame, cfg)
    out = Comparison(cfg.name, str(cfg.path) if cfg.path else None, int(len(frame)), features, label, split,
                     results, versions=library_versions())
    ok = [e for e in results if e.ok]
    out.agreement = agreement(ok, top)
    if out.labelled and bootstrap:
        out.noise = bootstrap_noise(ok, bootstrap, seed=cfg.fit.seed)
    out.recommendation = recommend(out)
    return out


def _holdout(frame: pd.DataFrame, label: str, cfg: PipelineConfig, holdout: float | None):
    fraction = holdout if holdout is not None else (cfg.fit.holdout or DEFAULT_HOLDOUT)
    if not 0 < fraction < 1:
        raise ConfigError(f"holdout must be between 0 and 1, got {fraction}.", hint="e.g. --holdout 0.3")
    held, y = evaluate.labelled_holdout(frame, label, fraction, cfg.fit.seed, hint="use data with labelled "
                                        "anomalies, or compare without labels (columns.label=null)")
    split = {"protocol": "fitted on the rest (labels unused), measured on a stratified held-out part",
             "holdout": fraction, "seed": cfg.fit.seed, "fit_rows": int(len(frame) - len(held)),
             "eval_rows": int(len(held)), "eval_anomalies": int(np.nansum(y[held] == 1))}
    return held, split


def _feature_count(frame: pd.DataFrame, cfg: PipelineConfig) -> int:
    spec = cfg.columns
    drop = set(spec.exclude) | set(spec.id or []) | ({spec.label} if spec.label else set())
    return sum(c not in drop for c in frame.columns)


# --------------------------------------------------------------------------- agreement and noise
def _aligned(evals: list[Evaluation]) -> tuple[pd.Index, dict[str, pd.Series]]:
    common = evals[0].index
    for e in evals[1:]:
        common = common.intersection(e.index)
    return common, {e.algorithm: pd.Series(e.scores, index=e.index).loc[common] for e in evals}


def agreement(evals: list[Evaluation], top: float = 0.05) -> dict[str, Any]:
    """Pairwise Spearman correlation of the scores, Jaccard overlap of the flagged rows and of the top ``top``."""
    if len(evals) < 2:
        return {}
    common, scores = _aligned(evals)
    names = list(scores)
    rho = pd.DataFrame(scores).rank().corr()  # Spearman = Pearson on ranks
    flags = {e.algorithm: set(pd.Series(e.flags, index=e.index).loc[common].pipe(lambda s: s[s].index))
             for e in evals}
    k = max(1, int(np.ceil(top * len(common))))
    tops = {n: set(common[np.argsort(-s.to_numpy(), kind="stable")[:k]]) for n, s in scores.items()}

    def jaccard(sets: dict[str, set]) -> dict[str, dict[str, float | None]]:
        return {a: {b: (len(sets[a] & sets[b]) / len(sets[a] | sets[b]) if sets[a] | sets[b] else None)
                    for b in names} for a in names}

    spearman = {a: {b: _num(rho.loc[a, b]) for b in names} for a in names}
    mean = {a: _num(np.nanmean([rho.loc[a, b] for b in names if b != a])) for a in names}
    return {"rows": int(len(common)), "spearman": spearman, "mean_spearman": mean,
            "jaccard_flagged": jaccard(flags), "top_share": top, "top_rows": k, "jaccard_top": jaccard(tops)}


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def weighted_auc_ap(y: np.ndarray, groups: evaluate.ScoreGroups, weights: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and average precision with row weights (bootstrap counts); ``groups`` sorts the scores once
    for every resample. Equals scikit-learn's ``roc_auc_score`` / ``average_precision_score`` with
    ``sample_weight``."""
    curve = groups.curve(y, weights)
    return curve.roc_auc(), curve.average_precision()


def bootstrap_noise(evals: list[Evaluation], resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """Paired, stratified bootstrap of the held-out rows: 95 % intervals of ROC-AUC and PR-AUC per algorithm,
    and of each algorithm's PR-AUC difference to the best (within noise when the interval reaches 0)."""
    common, scores = _aligned(evals)
    labels = pd.Series(evals[0].labels, index=evals[0].index).loc[common].to_numpy()
    known = ~np.isnan(labels)
    y = labels[known]
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0:
        return {}
    prepared = {n: evaluate.ScoreGroups(s.to_numpy()[known]) for n, s in scores.items()}
    rng = np.random.default_rng(seed)
    draws = {n: np.empty((resamples, 2)) for n in scores}
    for b in range(resamples):
        w = np.bincount(rng.choice(pos, len(pos)), minlength=len(y)) + np.bincount(rng.choice(neg, len(neg)),
                                                                                    minlength=len(y))
        for n, groups in prepared.items():
            draws[n][b] = weighted_auc_ap(y, groups, w.astype(np.float64))
    ci = {n: {"roc_auc": _interval(d[:, 0]), "pr_auc": _interval(d[:, 1])} for n, d in draws.items()}
    best = max(evals, key=lambda e: e.metrics.get(PRIMARY, -1)).algorithm
    vs_best = {}
    for n in scores:
        if n != best:
            lo, hi = _interval(draws[best][:, 1] - draws[n][:, 1])
            vs_best[n] = {"difference": round(evals_metric(evals, best) - evals_metric(evals, n), 4),
                          "ci": [lo, hi], "within_noise": lo <= 0}
    return {"resamples": resamples, "rows": int(len(y)), "metric": PRIMARY, "best": best, "ci": ci,
            "vs_best": vs_best}


def evals_metric(evals: list[Evaluation], name: str, metric: str = PRIMARY) -> float:
    return next(e.metrics.get(metric, np.nan) for e in evals if e.algorithm == name)


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


# --------------------------------------------------------------------------- recommendation
def _secs(x: float) -> str:
    return f"{x:.2g} s" if x < 10 else f"{x:.0f} s"


def recommend(result: Comparison) -> dict[str, Any]:
    """Which algorithm to use and why, from the measured numbers."""
    ok = [e for e in result.ranked() if e.ok]
    size = f"{result.split.get('fit_rows', result.rows):,} training rows x {result.features} features"
    if len(ok) == 1:
        e = ok[0]
        return {"algorithm": e.algorithm, "reason": f"{e.algorithm}: the only algorithm that ran ({size})."}
    if result.labelled:
        best = ok[0]
        within = [e for e in ok[1:] if result.noise.get("vs_best", {}).get(e.algorithm, {}).get("within_noise")]
        pick = min([best, *within], key=lambda e: e.seconds)
        m = pick.metrics
        if pick is best:
            nxt = ok[1]
            noise = ("within bootstrap noise" if within else "beyond bootstrap noise") if result.noise \
                else "no bootstrap run"
            reason = (f"{pick.algorithm}: best PR-AUC {m[PRIMARY]:.3f} (next {nxt.algorithm} "
                      f"{nxt.metrics.get(PRIMARY, float('nan')):.3f}, {noise}), ROC-AUC {m['roc_auc']:.3f}; "
                      f"fits and scores in {_secs(pick.seconds)} on {size}")
            if within:
                reason += "; the fastest of those within noise of the best"
        else:
            lo, hi = result.noise["vs_best"][pick.algorithm]["ci"]
            reason = (f"{pick.algorithm}: PR-AUC {m[PRIMARY]:.3f} is within bootstrap noise of the best "
                      f"({best.algorithm} {best.metrics[PRIMARY]:.3f}; 95 % interval of the difference "
                      f"{lo:+.3f} to {hi:+.3f}) and it is {best.seconds / max(pick.seconds, 1e-9):.1f}x faster "
                      f"({_secs(pick.seconds)} vs {_secs(best.seconds)} on {size})")
    else:
        mean = result.agreement.get("mean_spearman", {})
        pick = max(ok, key=lambda e: -1 if mean.get(e.algorithm) is None else mean[e.algorithm])
        fastest = min(ok, key=lambda e: e.seconds)
        reason = (f"{pick.algorithm}: without labels nothing measures accuracy; it agrees most with the others "
                  f"(mean Spearman rho {mean.get(pick.algorithm) or float('nan'):.2f}) and fits and scores in "
                  f"{_secs(pick.seconds)} on {size}")
        if fastest is not pick:
            reason += f"; {fastest.algorithm} is the fastest ({_secs(fastest.seconds)})"
        reason += ". Add a label column (columns.label) to measure ROC-AUC and PR-AUC"
    slow = max(ok, key=lambda e: e.seconds)
    if slow is not pick and slow.seconds >= 10 * max(pick.seconds, 1e-3):
        reason += f"; {slow.algorithm} is {slow.seconds / max(pick.seconds, 1e-3):.0f}x slower"
    return {"algorithm": pick.algorithm, "reason": reason.rstrip(".") + "."}


# --------------------------------------------------------------------------- HTML report
def html_report(result: Comparison):
    """The comparison as a self-contained page (:class:`adpipe.core.report.Report`)."""
    from adpipe.core.report import Report, new_figure

    page = Report(f"Comparing detectors: {result.name}", subtitle=result.config_path or "")
    ok = [e for e in result.ranked() if e.ok]
    page.text(f"{result.rows:,} rows x {result.features} features; {result.split['protocol']}"
              + (f" ({result.split['fit_rows']:,} fitted, {result.split['eval_rows']:,} held out with "
                 f"{result.split['eval_anomalies']} anomalies, seed {result.split['seed']})." if result.labelled
                 else "."))
    page.text("Recommendation: " + result.recommendation.get("reason", ""), note=True)
    page.heading("Results")
    page.table(result.table_rows(), digits=3)
    if result.noise:
        page.text(f"PR-AUC intervals: 95 % percentile intervals over {result.noise['resamples']} stratified "
                  f"bootstrap resamples of the {result.noise['rows']:,} held-out rows (the same resamples for "
                  "every algorithm).")
    if result.labelled:
        from sklearn.metrics import precision_recall_curve, roc_curve

        for title, curve, xlab, ylab in (("ROC curves", roc_curve, "false positive rate", "true positive rate"),
                                          ("Precision-recall curves", precision_recall_curve, "recall",
                                           "precision")):
            page.heading(title)
            fig, ax = new_figure(6.5, 5)
            for e in ok:
                known = ~np.isnan(e.labels)
                a, b, _ = curve(e.labels[known].astype(int), e.scores[known])
                x, y = (a, b) if curve is roc_curve else (b, a)
                metric = "roc_auc" if curve is roc_curve else "pr_auc"
                ax.plot(x, y, label=f"{e.algorithm} ({e.metrics.get(metric, float('nan')):.3f})", lw=1.5)
            if curve is roc_curve:
                ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
            else:
                share = np.nanmean(ok[0].labels)
                ax.axhline(share, ls=":", color="grey", lw=1, label=f"chance ({share:.3f})")
            ax.set(xlabel=xlab, ylabel=ylab, xlim=(0, 1), ylim=(0, 1.02))
            ax.legend(loc="lower right" if curve is roc_curve else "upper right", fontsize=8)
            page.figure(fig, title)
    page.heading("Score histograms")
    fig, _ = new_figure(10, 2.6 * ((len(ok) + 2) // 3))
    fig.clear()
    for i, e in enumerate(ok):
        ax = fig.add_subplot((len(ok) + 2) // 3, 3, i + 1)
        bins = np.histogram_bin_edges(e.scores[np.isfinite(e.scores)], bins=40)
        if e.labels is not None and result.labelled:
            for value, name, color in ((0, "normal", "tab:blue"), (1, "anomaly", "tab:red")):
                ax.hist(e.scores[e.labels == value], bins=bins, density=True, alpha=0.55, color=color, label=name)
            ax.legend(fontsize=7)
        else:
            ax.hist(e.scores, bins=bins, color="tab:blue", alpha=0.8)
        ax.set_title(e.algorithm, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    page.figure(fig, "score histograms")
    if result.agreement:
        page.heading("Agreement between detectors")
        a = result.agreement
        page.text(f"On {a['rows']:,} rows: Spearman correlation of the scores, and Jaccard overlap "
                  f"(shared / either) of the top {a['top_share']:.0%} rows ({a['top_rows']:,}) by score and of "
                  "the rows each detector flags at the config's threshold.")
        fig, _ = new_figure(13, 4.2)
        fig.clear()
        for i, (key, title) in enumerate((("spearman", "Spearman rho of scores"),
                                          ("jaccard_top", f"Jaccard, top {a['top_share']:.0%}"),
                                          ("jaccard_flagged", "Jaccard, flagged rows"))):
            _heatmap(fig.add_subplot(1, 3, i + 1), a[key], title)
        fig.tight_layout()
        page.figure(fig, "agreement heatmaps")
    failed = [e for e in result.evaluations if not e.ok]
    if failed:
        page.heading("Failures")
        page.table([{"algorithm": e.algorithm, "error": e.error} for e in failed])
    page.heading("Settings")
    page.table([{"algorithm": e.algorithm, "parameters": ", ".join(f"{k}={v}" for k, v in e.params.items())}
                for e in result.evaluations])
    page.table([{"library": k, "version": v} for k, v in result.versions.items()])
    return page


def _heatmap(ax, matrix: dict[str, dict[str, float | None]], title: str) -> None:
    names = list(matrix)
    values = np.array([[np.nan if matrix[a][b] is None else matrix[a][b] for b in names] for a in names])
    image = ax.imshow(values, vmin=0 if "Jaccard" in title else -1, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if values[i, j] < 0.6 else "black")
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
