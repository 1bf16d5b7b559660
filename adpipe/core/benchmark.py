"""Benchmark detectors over a folder of labelled datasets, ADBench style, with the statistics to read it.

    result = benchmark("data/adbench", ["iforest", "ecod", "lof"], seeds=3, max_rows=10_000, out="bench_out")

Protocol (unsupervised, as in ADBench): each detector is fitted on every row of a dataset (labels never
shown to it) and scores the same rows; ROC-AUC and PR-AUC (average precision) are measured against the
labels. Each (dataset, algorithm) runs once per seed: the seed is the detector's ``random_state`` where
it has one, numpy's global seed, and the seed of the stratified sub-sample when ``max_rows`` caps a
dataset (the same rows for every algorithm). Results are averaged over seeds, ranked per dataset, and
tested: Friedman across datasets, then Nemenyi's critical difference and pairwise Wilcoxon signed-rank
tests with Holm's correction (Demšar, JMLR 7, 2006).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import platform
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from adpipe.core.algorithm_eval import check_algorithm, evaluate_algorithm, parse_algorithms, warm_up
from adpipe.core.benchmark_stats import ranks, statistics
from adpipe.core.config import PipelineConfig, load_config
from adpipe.core.errors import ConfigError, DataError
from adpipe.core.progress import progress_bar
from adpipe.core.registry import Registry, get_registry

LABEL = "__label__"  # the label column of the frames built from the datasets
METRICS = ("roc_auc", "pr_auc")
LIBRARIES = ("adpipe", "numpy", "scipy", "pandas", "scikit-learn", "pyod")


# --------------------------------------------------------------------------- datasets
@dataclass
class Dataset:
    """One labelled dataset: features ``X`` (float64), labels ``y`` (0 normal / 1 anomaly)."""

    name: str
    path: Path
    sha256: str
    X: np.ndarray
    y: np.ndarray
    columns: list[str]

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.path.name, "sha256": self.sha256, "rows": int(len(self.y)),
                "features": int(self.X.shape[1]), "anomalies": int(self.y.sum()),
                "anomaly_rate": round(float(self.y.mean()), 5)}

    def frame(self, rows: np.ndarray | None) -> pd.DataFrame:
        X, y = (self.X, self.y) if rows is None else (self.X[rows], self.y[rows])
        frame = pd.DataFrame(X, columns=self.columns)
        frame[LABEL] = y
        return frame


def find_datasets(folder: str | Path) -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"The datasets folder {folder} does not exist.", hint="pass --datasets DIR: a folder of "
                        "ADBench .npz files (X, y) or CSV files with a label column")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in (".npz", ".csv") and p.is_file()),
                   key=lambda p: p.name.lower())
    if not files:
        raise DataError(f"{folder} holds no .npz or .csv datasets.", hint="put ADBench .npz files (arrays X and "
                        "y) or CSV files with a label column (--label-column) in it")
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_dataset(path: str | Path, label_column: str = "y") -> Dataset:
    """Read an ADBench ``.npz`` (arrays ``X``, ``y``) or a CSV with ``label_column``; typed errors if unusable."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("X", "y") if k not in data.files]
            if missing:
                raise DataError(f"{path.name} has no array {' or '.join(missing)} (it has {', '.join(data.files)}).",
                                hint="ADBench .npz files hold the features as X and the 0/1 labels as y")
            X, y = np.asarray(data["X"]), np.asarray(data["y"]).reshape(-1)
        if X.ndim != 2:
            raise DataError(f"{path.name}: X must be 2-D (rows x features), got shape {X.shape}.")
        columns = [f"x{i}" for i in range(X.shape[1])]
    else:
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
        if frame.empty:
            raise DataError(f"{path.name} is empty.", hint="a CSV dataset needs a header and data rows")
        if label_column not in frame.columns:
            shown = ", ".join(map(str, frame.columns[:20]))
            raise DataError(f"{path.name} has no label column '{label_column}'; its columns are {shown}.",
                            hint="name the 0/1 label column with --label-column")
        y = pd.to_numeric(frame.pop(label_column), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if text:
            raise DataError(f"{path.name}: column '{text[0]}' is not numeric.",
                            hint="a benchmark dataset holds numeric features and the label only; encode or drop it")
        X, columns = frame.to_numpy(dtype=np.float64), [str(c) for c in frame.columns]
    X = X.astype(np.float64)
    if len(y) == 0 or X.shape[1] == 0:
        raise DataError(f"{path.name} is empty ({X.shape[0]} rows, {X.shape[1]} features).",
                        hint="a dataset needs rows and at least one feature")
    if len(y) != len(X):
        raise DataError(f"{path.name}: {len(X)} rows of X but {len(y)} labels.")
    if not np.isfinite(X).all():
        raise DataError(f"{path.name} has {int((~np.isfinite(X)).sum())} missing or infinite feature values.",
                        hint="impute or drop them before benchmarking")
    values = set(np.unique(y[~np.isnan(y.astype(np.float64))]).tolist())
    if not values <= {0, 1} or np.isnan(y.astype(np.float64)).any():
        raise DataError(f"{path.name}: labels must be 0 (normal) or 1 (anomaly), found {sorted(values)[:5]}.")
    if len(values) < 2:
        raise DataError(f"{path.name}: every label is {values.pop():g}: ROC-AUC and PR-AUC need both classes.",
                        hint="leave this dataset out, or label its anomalies")
    return Dataset(path.stem, path, _sha256(path), X, y.astype(np.int64), columns)


def sample_rows(y: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray | None:
    """Positions of a stratified, seeded sub-sample of ``max_rows`` rows; None when the data fits."""
    if max_rows is None or len(y) <= max_rows:
        return None
    from sklearn.model_selection import train_test_split

    try:
        rows, _ = train_test_split(np.arange(len(y)), train_size=max_rows, stratify=y, random_state=seed)
    except ValueError:  # a class too small to stratify: a plain seeded sample
        rows = np.random.default_rng(seed).choice(len(y), max_rows, replace=False)
    return np.sort(rows)


# --------------------------------------------------------------------------- cells
def detector_config(algorithm: str, seed: int, preprocess: Iterable[str | dict] = (),
                    registry: Registry | None = None) -> tuple[PipelineConfig, bool]:
    """The pipeline of one cell; True when the detector takes the seed as ``random_state``."""
    registry = registry or get_registry()
    check_algorithm(algorithm, registry)
    seeded = "random_state" in registry.get("detector", algorithm).Params.model_fields
    detector = {"type": algorithm, **({"random_state": seed} if seeded else {})}
    data = {"name": "benchmark", "detector": detector, "columns": {"id": [], "label": LABEL},
            "fit": {"holdout": 0}, "preprocess": [p if isinstance(p, dict) else {"type": p} for p in preprocess],
            "threshold": {"type": "contamination", "contamination": 0.1}}
    return load_config(data=data, registry=registry), seeded


def run_cell(config: PipelineConfig, frame: pd.DataFrame, seed: int) -> dict[str, Any]:
    """Fit on every row, score the same rows: ROC-AUC, PR-AUC, times, peak memory (or the error)."""
    np.random.seed(seed)  # detectors that draw from numpy's global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = evaluate_algorithm(config, frame)
    out = {"ok": e.ok, "error": e.error, "fit_seconds": e.fit_seconds, "score_seconds": e.score_seconds,
           "peak_mb": e.peak_mb}
    out.update({m: (round(e.metrics[m], 6) if m in e.metrics else None) for m in METRICS})
    if e.ok and not e.metrics:
        out.update(ok=False, error="no metrics: the scored rows hold one class only")
    return out


def _cell_key(record: dict[str, Any]) -> str:
    return json.dumps([record["sha256"], record["algorithm"], record["seed"], record["max_rows"],
                       record["preprocess"]], sort_keys=True)


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TimeoutError in this (main) thread after ``seconds``; nothing elsewhere or without a limit."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"stopped after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_forked(tasks: list[tuple[dict, Callable[[], dict]]], jobs: int, timeout: float | None,
                done: Callable[[dict, dict], None]) -> None:
    """Run each task in a forked process, ``jobs`` at a time; one that outlives ``timeout`` is killed."""
    ctx = multiprocessing.get_context("fork")
    pending, running = list(tasks), {}

    def child(fn, conn):
        try:
            conn.send(fn())
        except BaseException as exc:  # noqa: B036 - report anything to the parent
            conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        conn.close()

    while pending or running:
        while pending and len(running) < jobs:
            record, fn = pending.pop(0)
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=child, args=(fn, send), daemon=True)
            proc.start()
            send.close()
            running[recv] = (proc, record, time.monotonic() + timeout if timeout else None)
        for conn in wait(list(running), timeout=0.2):
            proc, record, _ = running.pop(conn)
            try:
                result = conn.recv()
            except EOFError:
                result = {"ok": False, "error": f"the worker process died (exit code {proc.exitcode})"}
            proc.join()
            conn.close()
            done(record, result)
        now = time.monotonic()
        for conn, (proc, record, deadline) in list(running.items()):
            if deadline is not None and now > deadline:
                proc.kill()
                proc.join()
                conn.close()
                del running[conn]
                done(record, {"ok": False, "error": f"timeout: stopped after {timeout:g} s"})


# --------------------------------------------------------------------------- the run
@dataclass
class BenchmarkResult:
    """Every raw cell result plus the summaries and tests; ``to_dict()`` is ``results.json``."""

    settings: dict[str, Any]
    datasets: list[dict[str, Any]]
    results: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    tests: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.meta, "settings": self.settings, "datasets": self.datasets, "summary": self.summary,
                "tests": self.tests, "results": self.results}

    def table(self, metric: str | None = None) -> pd.DataFrame:
        """Datasets x algorithms: mean ``metric`` over the seeds that succeeded (NaN where none did)."""
        metric = metric or self.settings["metric"]
        frame = pd.DataFrame([r for r in self.results if r["ok"]], columns=["dataset", "algorithm", metric])
        table = frame.pivot_table(index="dataset", columns="algorithm", values=metric, aggfunc="mean")
        names = [d["name"] for d in self.datasets]
        return table.reindex(index=names, columns=self.settings["algorithms"])


def benchmark(datasets: str | Path, algorithms: str | Iterable[str], *, seeds: int = 3, max_rows: int | None = None,
              label_column: str = "y", out: str | Path | None = None, jobs: int = 1, timeout: float | None = None,
              resume: bool = False, metric: str = "roc_auc", alpha: float = 0.05, preprocess: Iterable[str] = (),
              progress: bool = False, command: str | None = None, registry: Registry | None = None
              ) -> BenchmarkResult:
    """Run every algorithm on every dataset of the folder ``datasets`` for seeds 0..seeds-1; see the module doc.

    ``out``: write ``results.json``, ``results.md``, ``report.html`` and ``cells.jsonl`` (one line per
    finished cell, written as the run goes) there. ``resume``: keep the successful cells of ``cells.jsonl``
    with the same dataset hash, algorithm, seed, ``max_rows`` and preprocessing, and run only the rest.
    ``jobs`` > 1 or a ``timeout`` (seconds per cell) run each cell in a forked process.
    """
    from adpipe.core.model import installed_version

    names = parse_algorithms(algorithms)
    if len(names) < 2:
        raise ConfigError(f"A benchmark compares algorithms: give at least 2, got {names or 'none'}.",
                          hint="e.g. --algorithms iforest,ecod,lof")
    if metric not in METRICS:
        raise ConfigError(f"Unknown metric '{metric}'.", hint=f"choose {' or '.join(METRICS)}")
    if seeds < 1 or jobs < 1 or (max_rows is not None and max_rows < 10):
        raise ConfigError("seeds and jobs must be at least 1 and max_rows at least 10.")
    preprocess = list(preprocess)
    configs = {(a, s): detector_config(a, s, preprocess, registry) for a in names for s in range(seeds)}
    files = find_datasets(datasets)
    if len(files) < 2:
        raise DataError(f"The statistical tests need at least 2 datasets; {datasets} holds {len(files)}.",
                        hint="add datasets, or use `adpipe compare` for one dataset")
    loaded = [load_dataset(f, label_column) for f in files]
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    settings = {"datasets": str(Path(datasets).expanduser().resolve()), "algorithms": names,
                "params": {a: configs[(a, 0)][0].detector.to_dict() for a in names},
                "seeded_algorithms": [a for a in names if configs[(a, 0)][1]], "seeds": list(range(seeds)),
                "max_rows": max_rows, "label_column": label_column, "preprocess": preprocess, "metric": metric,
                "alpha": alpha, "jobs": jobs, "timeout": timeout,
                "protocol": "unsupervised: fit on every row (labels unused), score the same rows with the "
                            "detector's own training scores; ROC-AUC and average precision against the labels"}
    meta = {"command": command, "started_at": started.isoformat(),
            "versions": {lib: installed_version(lib) or "not installed" for lib in LIBRARIES},
            "platform": {"system": platform.platform(), "python": platform.python_version(),
                         "machine": platform.machine(), "cpus": os.cpu_count()}}
    out_dir = Path(out).expanduser() if out else None
    done_cells: dict[str, dict] = {}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        log = out_dir / "cells.jsonl"
        if resume and log.exists():
            for line in log.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("ok"):
                    done_cells[_cell_key(rec)] = rec
        log.write_text("".join(json.dumps(r) + "\n" for r in done_cells.values()))

    records: list[dict[str, Any]] = []
    tasks = []  # (record, config, dataset, rows, seed) of every cell still to run
    for ds in loaded:
        for seed in range(seeds):
            rows = sample_rows(ds.y, max_rows, seed)
            for a in names:
                config, seeded = configs[(a, seed)]
                rec = {"dataset": ds.name, "sha256": ds.sha256, "algorithm": a, "seed": seed,
                       "random_state": seed if seeded else None, "max_rows": max_rows, "preprocess": preprocess,
                       "rows": int(len(ds.y) if rows is None else len(rows)), "rows_total": int(len(ds.y)),
                       "sample": None if rows is None else {
                           "method": "stratified", "seed": seed,
                           "rows_sha256": hashlib.sha256(rows.astype(np.int64).tobytes()).hexdigest()}}
                if _cell_key(rec) in done_cells:
                    records.append(done_cells[_cell_key(rec)])
                    continue
                tasks.append((rec, config, ds, rows, seed))

    frames: dict[tuple, pd.DataFrame] = {}

    def cell(config: PipelineConfig, ds: Dataset, rows: np.ndarray | None, seed: int) -> dict[str, Any]:
        key = (ds.name, None if rows is None else seed)  # every seed shares the frame of a dataset not sampled
        if key not in frames:
            frames.clear()  # one frame in memory at a time: tasks come dataset by dataset
            frames[key] = ds.frame(rows)
        return run_cell(config, frames[key], seed)

    with progress_bar(len(tasks), progress and bool(tasks), "benchmark") as bar:
        def done(rec: dict, result: dict) -> None:
            rec = {**rec, **{k: None for k in ("fit_seconds", "score_seconds", "peak_mb", *METRICS)}, **result}
            records.append(rec)
            if out_dir is not None:
                with (out_dir / "cells.jsonl").open("a") as f:
                    f.write(json.dumps(rec) + "\n")
            bar.update(f"{rec['dataset']} · {rec['algorithm']} · seed {rec['seed']}")
            bar.advance()

        if tasks:  # untimed first runs (imports, numba compilation) in this process; forks inherit them
            first = tasks[0][2].frame(tasks[0][3])
            for a in names:
                with _time_limit(timeout):
                    warm_up(configs[(a, 0)][0], first)
        if jobs == 1 and timeout is None:
            for rec, *args in tasks:
                done(rec, cell(*args))
        else:
            _run_forked([(rec, partial(cell, *args)) for rec, *args in tasks], jobs, timeout, done)

    position = {(d.name, s, a): i for i, (d, s, a) in enumerate(
        (d, s, a) for d in loaded for s in range(seeds) for a in names)}
    records.sort(key=lambda r: position.get((r["dataset"], r["seed"], r["algorithm"]), -1))
    meta.update(finished_at=datetime.now(timezone.utc).isoformat(), seconds=round(time.perf_counter() - t0, 1))
    result = BenchmarkResult(settings, [d.info() for d in loaded], records, meta)
    summarize(result)
    if out_dir is not None:
        write_outputs(result, out_dir)
    return result


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarize(result: BenchmarkResult) -> None:
    """Per (dataset, algorithm): mean and std over seeds; per algorithm: means and average rank; the tests."""
    names, metric = result.settings["algorithms"], result.settings["metric"]
    cells = []
    for d in result.datasets:
        for a in names:
            runs = [r for r in result.results if r["dataset"] == d["name"] and r["algorithm"] == a]
            good = [r for r in runs if r["ok"]]
            cell = {"dataset": d["name"], "algorithm": a, "runs": len(runs), "failed": len(runs) - len(good),
                    "errors": sorted({r["error"] for r in runs if not r["ok"]})}
            for m in (*METRICS, "seconds"):
                values = [r[m] if m != "seconds" else r["fit_seconds"] + r["score_seconds"] for r in good]
                cell[m], cell[f"{m}_std"] = _mean_std(values)
            cells.append(cell)
    table = result.table(metric)
    complete = table.dropna()
    excluded = [d for d in table.index if d not in complete.index]
    per_algorithm = []
    avg = dict(zip(names, ranks(complete.to_numpy()).mean(axis=0), strict=True)) if len(complete) else {}
    for a in names:
        mine = [c for c in cells if c["algorithm"] == a and c["dataset"] in complete.index]
        row = {"algorithm": a, "average_rank": float(avg[a]) if a in avg else None,
               "wins": int((ranks(complete.to_numpy())[:, names.index(a)] == 1).sum()) if len(complete) else 0,
               "datasets_failed": sum(1 for c in cells if c["algorithm"] == a and c["roc_auc"] is None)}
        for m in (*METRICS, "seconds"):
            row[f"mean_{m}"] = float(np.mean([c[m] for c in mine])) if mine else None
        per_algorithm.append(row)
    per_algorithm.sort(key=lambda r: (r["average_rank"] is None, r["average_rank"] or 0))
    result.summary = {"metric": metric, "datasets_ranked": list(complete.index), "datasets_excluded": excluded,
                      "per_algorithm": per_algorithm, "per_dataset": cells}
    try:
        result.tests = statistics(complete, result.settings["alpha"])
    except DataError as exc:
        result.tests = {"skipped": exc.message}


# --------------------------------------------------------------------------- outputs
def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def algorithm_rows(result: BenchmarkResult) -> tuple[list[str], list[list[Any]]]:
    metric = result.settings["metric"]
    header = ["algorithm", "mean ROC-AUC", "mean PR-AUC", f"average rank ({metric})", "wins", "mean seconds",
              "datasets failed"]
    rows = [[r["algorithm"], r["mean_roc_auc"], r["mean_pr_auc"], r["average_rank"], r["wins"], r["mean_seconds"],
             r["datasets_failed"]] for r in result.summary["per_algorithm"]]
    return header, rows


def dataset_rows(result: BenchmarkResult, metric: str) -> tuple[list[str], list[list[Any]]]:
    names = result.settings["algorithms"]
    cells = {(c["dataset"], c["algorithm"]): c for c in result.summary["per_dataset"]}
    rows = []
    for d in result.datasets:
        row: list[Any] = [d["name"], d["rows"], d["features"], d["anomaly_rate"]]
        for a in names:
            c = cells[(d["name"], a)]
            row.append("failed" if c[metric] is None else f"{c[metric]:.3f} ± {c[f'{metric}_std']:.3f}")
        rows.append(row)
    return ["dataset", "rows", "features", "anomaly rate", *names], rows


def test_lines(result: BenchmarkResult) -> list[str]:
    """The statistical tests in words."""
    t = result.tests
    if "skipped" in t:
        return [f"Statistical tests skipped: {t['skipped']}"]
    lines = []
    f = t["friedman"]
    if "statistic" in f:
        lines.append(f"Friedman test over {t['datasets']} datasets and {t['algorithms']} algorithms: chi-square = "
                     f"{f['statistic']:.3f}, p = {f['p_value']:.3g} (Iman-Davenport F = {f['iman_davenport_f']:.3f}, "
                     f"p = {f['iman_davenport_p']:.3g}): the algorithms "
                     + ("differ" if f["significant"] else "do not differ significantly") + f" at alpha = {t['alpha']}.")
    else:
        lines.append(f"Friedman test: {f['note']}.")
    n = t["nemenyi"]
    groups = "; ".join("{" + ", ".join(g) + "}" for g in n["groups"]) or "none"
    lines.append(f"Nemenyi critical difference: CD = {n['q_alpha']:.3f} x sqrt(k(k+1)/(6N)) = {n['cd']:.3f} "
                 f"(alpha = {t['alpha']}); groups not significantly different: {groups}.")
    sig = [p for p in t["wilcoxon_holm"] if p["significant"]]
    lines.append(f"Wilcoxon signed-rank with Holm's correction: {len(sig)} of {len(t['wilcoxon_holm'])} pairs differ "
                 f"at alpha = {t['alpha']}.")
    return lines


def write_outputs(result: BenchmarkResult, out_dir: Path) -> None:
    """``results.json``, ``results.md`` and ``report.html`` (each written to a temporary file, then renamed)."""
    def put(name: str, text: str) -> None:
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)

    put("results.json", json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    put("results.md", markdown(result))
    put("report.html", html_report(result).html())


def markdown(result: BenchmarkResult) -> str:
    s, meta = result.settings, result.meta
    parts = ["# adpipe benchmark", "",
             f"`{meta.get('command') or 'adpipe.core.benchmark.benchmark(...)'}`", "",
             f"{len(result.datasets)} datasets, {len(s['algorithms'])} algorithms, seeds {s['seeds']}, max rows "
             f"{s['max_rows'] or 'all'}; {s['protocol']}. Started {meta['started_at'][:19]} UTC, took "
             f"{meta['seconds']:.0f} s on {meta['platform']['cpus']} CPUs "
             f"({', '.join(f'{k} {v}' for k, v in meta['versions'].items())}).", "",
             f"## Algorithms (ranked by average {s['metric']} rank over "
             f"{len(result.summary['datasets_ranked'])} datasets)", "",
             _md_table(*algorithm_rows(result)), ""]
    if result.summary["datasets_excluded"]:
        parts += [f"Left out of the ranking (an algorithm has no result there): "
                  f"{', '.join(result.summary['datasets_excluded'])}.", ""]
    parts += ["## Statistical tests", "", *(f"- {line}" for line in test_lines(result)), ""]
    if "wilcoxon_holm" in result.tests:
        parts += [_md_table(["a", "b", "mean difference", "Wilcoxon p", "Holm p", "significant", "Nemenyi"],
                            [[p["a"], p["b"], p["mean_difference"], p["p_value"], p["p_holm"],
                              "yes" if p["significant"] else "no", "yes" if p["nemenyi_significant"] else "no"]
                             for p in result.tests["wilcoxon_holm"]]), ""]
    for metric, title in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
        parts += [f"## {title} per dataset (mean ± std over seeds)", "", _md_table(*dataset_rows(result, metric)), ""]
    failures = [c for c in result.summary["per_dataset"] if c["errors"]]
    if failures:
        parts += ["## Failures", "", *(f"- {c['dataset']} / {c['algorithm']} ({c['failed']} of {c['runs']} runs): "
                                       f"{'; '.join(c['errors'])}" for c in failures), ""]
    return "\n".join(parts)


def html_report(result: BenchmarkResult):
    from adpipe.core.report import Report

    s = result.settings
    page = Report("adpipe benchmark", subtitle=result.meta.get("command") or "")
    page.text(f"{len(result.datasets)} datasets, {len(s['algorithms'])} algorithms, seeds {s['seeds']}, max rows "
              f"{s['max_rows'] or 'all'}. {s['protocol']}.")
    page.heading("Algorithms")
    header, rows = algorithm_rows(result)
    page.table([dict(zip(header, r, strict=True)) for r in rows], digits=3)
    page.heading("Statistical tests")
    for line in test_lines(result):
        page.text(line)
    if "nemenyi" in result.tests:
        page.figure(cd_diagram(result.tests["average_ranks"], result.tests["nemenyi"]["cd"],
                               result.tests["nemenyi"]["groups"]), "critical difference diagram")
        page.table([{"a": p["a"], "b": p["b"], "mean difference": p["mean_difference"], "Wilcoxon p": p["p_value"],
                     "Holm p": p["p_holm"], "significant": "yes" if p["significant"] else "no"}
                    for p in result.tests["wilcoxon_holm"]])
    for metric, title in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
        page.heading(f"{title} per dataset (mean ± std over seeds)")
        header, rows = dataset_rows(result, metric)
        page.table([dict(zip(header, r, strict=True)) for r in rows])
    page.heading("Reproduce")
    page.table([{"library": k, "version": v} for k, v in result.meta["versions"].items()])
    page.table([{"dataset": d["name"], "sha256": d["sha256"]} for d in result.datasets])
    return page


def cd_diagram(avg_ranks: dict[str, float], cd: float, groups: list[list[str]]):
    """A critical-difference diagram in Demšar's style: the average-rank axis (1 = best, left), each
    algorithm hung from its rank, the CD as a bar, thick lines joining groups not significantly different."""
    from adpipe.core.report import new_figure

    names = sorted(avg_ranks, key=avg_ranks.get)
    k = len(names)
    lo, hi = 1, max(k, math.ceil(max(avg_ranks.values())))
    half = (k + 1) // 2
    step, top = 0.32, 0.5
    depth = top + 0.25 * len(groups) + step * (max(half, k - half) + 1)
    fig, ax = new_figure(8, 1.0 + 0.42 * depth * 2)
    ax.set_xlim(lo - 0.9 - 0.1 * hi, hi + 0.9 + 0.1 * hi)
    ax.set_ylim(-depth, 1.1)
    ax.axis("off")
    ax.plot([lo, hi], [0, 0], color="black", lw=1)
    for tick in range(lo, hi + 1):
        ax.plot([tick, tick], [0, 0.1], color="black", lw=1)
        ax.text(tick, 0.18, str(tick), ha="center", va="bottom", fontsize=9)
    for tick in np.arange(lo + 0.5, hi, 1.0):
        ax.plot([tick, tick], [0, 0.05], color="black", lw=0.7)
    ax.plot([lo, lo + cd], [0.8, 0.8], color="black", lw=1.5)
    for x in (lo, lo + cd):
        ax.plot([x, x], [0.72, 0.88], color="black", lw=1.5)
    ax.text(lo + cd / 2, 0.92, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for g, group in enumerate(groups):
        y = -0.2 - 0.22 * g
        ax.plot([avg_ranks[group[0]] - 0.04, avg_ranks[group[-1]] + 0.04], [y, y], color="black", lw=3.5)
    base = -(top + 0.22 * len(groups))
    for i, name in enumerate(names):
        r = avg_ranks[name]
        left = i < half
        y = base - step * (i if left else k - 1 - i)
        edge = lo - 0.3 if left else hi + 0.3
        ax.plot([r, r, edge], [0, y, y], color="black", lw=0.9)
        ax.text(edge + (-0.05 if left else 0.05), y, f"{name} ({r:.2f})", ha="right" if left else "left",
                va="center", fontsize=9)
    ax.text(hi, 0.92, "average rank (1 = best)", ha="right", va="bottom", fontsize=8, color="dimgray")
    return fig
