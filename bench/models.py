#!/usr/bin/env python
"""Saved models: load time and single-record scoring latency, beside bare scikit-learn.

    python bench/models.py                      # 1,000 calls per runner (about 1.5 minutes)
    python bench/models.py --calls 10000        # the issue's 10,000 calls (about 7 minutes)
    python bench/models.py --out /tmp/results --skip-pyod

In one process, on ADBench ``19_landsat`` (6,435 rows x 36 float features; a
seeded Gaussian table of the same shape when the file is missing), it fits two
pipelines, each an Isolation Forest (100 trees, ``max_samples`` auto = 256,
``random_state`` 0) plus a contamination threshold (10 %):

- ``isolation_forest``: scikit-learn's ``IsolationForest`` wrapped directly
  (the fitted forest is ``model.detector.model_``);
- ``iforest``: PyOD's ``IForest`` wrapper (its forest is
  ``model.detector.model_.detector_``; same trees, checked).

1. **Load.** Each pipeline is saved with ``model.save`` (signed; the key goes
   to a temporary ``$ADPIPE_HOME``) and loaded ``--loads`` times with
   ``adpipe.core.model.load`` (checksum, HMAC, JSON metadata, version and
   plugin checks, unpickle), interleaved with ``joblib.load`` and
   ``pickle.load`` of the bare fitted forest saved with ``joblib.dump`` /
   ``pickle.dump``. Median and p90 of each, the ratios, the file sizes, and
   where adpipe's load time goes.
2. **Single-record latency.** ``model.score(one_row_df)`` on the loaded
   models against ``IsolationForest.score_samples(one_row_ndarray)`` on the
   same fitted forest, ``--calls`` timed calls each (``time.perf_counter_ns``
   around each call) after ``--warmup`` untimed ones. The runners take turns
   in blocks of 100 calls so drift in machine load hits them alike; call i
   scores row i mod 1,000 of a fixed random draw of rows (the DataFrames and
   arrays are built beforehand). p50/p90/p99 and the ratios to scikit-learn.
3. **Where the time goes.** ``score_batch`` with a stage timer over
   ``--profile-calls`` calls (validate, preprocess, detect, calibrate,
   threshold, the rest = building the result frame), then cProfile over the
   same number of calls: the top 10 cumulative entries, overall and in
   adpipe's own code, printed to stdout.

Writes ``<out>/models.json`` and ``<out>/models.png`` (latency ECDFs on a log
axis, load times) and prints the tables.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pickle
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from _common import dist_version, loadavg, machine, save_figure, say

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "adbench" / "19_landsat.npz"
N_ESTIMATORS = 100
CONTAMINATION = 0.1
ROW_POOL = 1000
BLOCK = 100
QUANTILES = (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100)



# --------------------------------------------------------------------------- data and models
def load_data(path: Path) -> tuple[pd.DataFrame, str]:
    if path.exists():
        X = np.load(path)["X"].astype(np.float64)
        return pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])]), f"ADBench {path.stem} ({path})"
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (6435, 36))
    return (pd.DataFrame(X, columns=[f"f{j}" for j in range(36)]),
            f"Gaussian N(0, 1), 6435 x 36, numpy default_rng(0) ({path} not found)")


def fit_pipeline(detector: str, frame: pd.DataFrame):
    from adpipe.core.engine import Pipeline

    return Pipeline.from_dict({
        "detector": {"type": detector, "n_estimators": N_ESTIMATORS, "random_state": 0},
        "threshold": {"type": "contamination", "contamination": CONTAMINATION},
    }).fit(frame)


def forest_of(model, detector: str):
    """The fitted scikit-learn IsolationForest inside an adpipe pipeline."""
    est = model.detector.model_
    return est.detector_ if detector == "iforest" else est


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# --------------------------------------------------------------------------- 1. load
def bench_load(models: dict, folder: Path, repeats: int) -> dict:
    import joblib

    from adpipe.core import model as model_mod
    from adpipe.core import modelfile

    files: dict[str, Path] = {}
    loaders = {}
    for det, m in models.items():
        path = folder / f"{det}.adpipe"
        m.save(path)
        files[f"adpipe[{det}]"] = path
        loaders[f"adpipe[{det}]"] = (lambda p=path: model_mod.load(p))
    forest = forest_of(models["isolation_forest"], "isolation_forest")
    jl, pk = folder / "forest.joblib", folder / "forest.pkl"
    joblib.dump(forest, jl)
    with open(pk, "wb") as fh:
        pickle.dump(forest, fh, protocol=5)
    files["joblib"], files["pickle"] = jl, pk
    loaders["joblib"] = lambda: joblib.load(jl)

    def load_pickle():
        with open(pk, "rb") as fh:
            return pickle.load(fh)

    loaders["pickle"] = load_pickle

    # where adpipe's load goes: the steps of adpipe.core.model.load, timed one by one
    def load_steps(path: Path) -> dict[str, float]:
        t0 = time.perf_counter_ns()
        mf = modelfile.read(path)  # read the file, SHA-256 checksum, HMAC, JSON header + metadata
        t1 = time.perf_counter_ns()
        model_mod.check_versions(mf.metadata, path)  # importlib.metadata lookups
        t2 = time.perf_counter_ns()
        model_mod._check_plugins(mf.metadata, path)
        t3 = time.perf_counter_ns()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model_mod._Unpickler(io.BytesIO(mf.payload)).load()
        t4 = time.perf_counter_ns()
        return {"read_verify_ms": (t1 - t0) / 1e6, "check_versions_ms": (t2 - t1) / 1e6,
                "check_plugins_ms": (t3 - t2) / 1e6, "unpickle_ms": (t4 - t3) / 1e6}

    for fn in loaders.values():  # warm: page cache, lazy imports
        fn()
    times: dict[str, list[float]] = {k: [] for k in loaders}
    steps: dict[str, list[dict[str, float]]] = {f"adpipe[{d}]": [] for d in models}
    for r in range(repeats):
        for name, fn in loaders.items():
            t = time.perf_counter_ns()
            fn()
            times[name].append((time.perf_counter_ns() - t) / 1e6)
        for det in models:
            steps[f"adpipe[{det}]"].append(load_steps(files[f"adpipe[{det}]"]))
        print(f"\r  load round {r + 1}/{repeats}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    base = statistics.median(times["joblib"])
    base_pk = statistics.median(times["pickle"])
    out = {}
    for name, ts in times.items():
        out[name] = {"median_ms": round(statistics.median(ts), 3), "p90_ms": round(pct(ts, 90), 3),
                     "min_ms": round(min(ts), 3), "file_bytes": files[name].stat().st_size,
                     "ratio_vs_joblib": round(statistics.median(ts) / base, 2),
                     "ratio_vs_pickle": round(statistics.median(ts) / base_pk, 2)}
        if name in steps:
            out[name]["steps_median_ms"] = {k: round(statistics.median(s[k] for s in steps[name]), 3)
                                            for k in steps[name][0]}
            head = modelfile.read(files[name], payload=False)
            out[name]["payload_bytes"] = head.metadata["payload"]["bytes"]
            out[name]["metadata_bytes"] = head.header["metadata"]
    return {"repeats": repeats, "baseline_forest": "the isolation_forest pipeline's sklearn IsolationForest",
            "runners": out}


# --------------------------------------------------------------------------- 2. latency
def bench_latency(runners: dict, calls: int, warmup: int) -> dict[str, np.ndarray]:
    """Per-call latencies in ns; runners take turns in blocks of BLOCK calls."""
    for name, fn in runners.items():
        for i in range(warmup):
            fn(i)
    lat = {name: np.empty(calls, dtype=np.int64) for name in runners}
    names = list(runners)
    clock = time.perf_counter_ns
    done = 0
    started = time.perf_counter()
    for b, start in enumerate(range(0, calls, BLOCK)):
        stop = min(calls, start + BLOCK)
        order = names[b % len(names):] + names[:b % len(names)]  # rotate who goes first
        for name in order:
            fn, out = runners[name], lat[name]
            for i in range(start, stop):
                t = clock()
                fn(i)
                out[i] = clock() - t
        done = stop
        if b % 5 == 4 or done == calls:
            el = time.perf_counter() - started
            eta = el / done * (calls - done)
            print(f"\r  latency: {done:,}/{calls:,} calls per runner  {el:5.0f} s  (about {eta:3.0f} s left) ",
                  end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return lat


def summarize(ns: np.ndarray) -> dict:
    us = ns / 1e3
    return {"calls": int(len(us)), "mean_us": round(float(us.mean()), 1),
            **{f"p{q:g}_us".replace(".", "_"): round(pct(us, q), 1) for q in QUANTILES}}


# --------------------------------------------------------------------------- 3. breakdown
def stage_breakdown(model, rows: list[pd.DataFrame], calls: int) -> dict:
    from adpipe.core.frames import to_frame
    from adpipe.core.summary import StageTimer

    timer = StageTimer()
    total = 0
    for i in range(calls):
        t = time.perf_counter_ns()
        model.score_batch(to_frame(rows[i % len(rows)]), timer=timer)  # what model.score does, with a timer
        total += time.perf_counter_ns() - t
    per = {k: v * 1e6 / calls for k, v in timer.seconds.items()}
    per["result frame + other"] = total / 1e3 / calls - sum(per.values())
    return {"calls": calls, "mean_us": {k: round(v, 1) for k, v in per.items()},
            "total_mean_us": round(total / 1e3 / calls, 1)}


def profile(model, rows: list[pd.DataFrame], calls: int) -> dict:
    prof = cProfile.Profile()
    prof.enable()
    for i in range(calls):
        model.score(rows[i % len(rows)])
    prof.disable()
    out = {}
    for title, restrict in (("overall", ()), ("adpipe's own code", (r"[/\\]adpipe[/\\]",))):
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("cumulative").print_stats(*restrict, 10)
        text = buf.getvalue()
        out[title] = text[text.find("   ncalls"):].rstrip()
    stats = pstats.Stats(prof)
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)[:25]
    return {"calls": calls, "text": out,
            "top_cumulative": [{"function": f"{Path(f).name}:{line}({fn})", "ncalls": nc,
                                "cumtime_us_per_call": round(ct / calls * 1e6, 1)}
                               for (f, line, fn), (cc, nc, tt, ct, _) in top]}


# --------------------------------------------------------------------------- reporting
def plot(lat: dict[str, np.ndarray], load: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    import matplotlib.ticker

    for name, ns in lat.items():
        ms = np.sort(ns / 1e6)
        y = np.arange(1, len(ms) + 1) / len(ms)
        ax.step(ms, y, where="post", label=f"{name}  (p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([1, 2, 5, 10, 20, 50, 100, 200, 500]))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axhline(0.5, color="grey", lw=0.5, ls=":")
    ax.axhline(0.99, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("latency per call (ms, log scale)")
    ax.set_ylabel("share of calls ≤ x")
    ax.set_title(f"one-row scoring latency, {len(next(iter(lat.values()))):,} calls each (ECDF)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)
    names = list(load["runners"])
    med = [load["runners"][n]["median_ms"] for n in names]
    p90 = [load["runners"][n]["p90_ms"] for n in names]
    y = np.arange(len(names))
    bx.barh(y, med, color="tab:blue", label="median")
    bx.scatter(p90, y, color="black", marker="|", s=200, label="p90", zorder=3)
    for yi, m, hi in zip(y, med, p90):
        bx.text(max(m, hi) + max(p90) * 0.03, yi, f"{m:.1f} ms", va="center", fontsize=8)
    bx.set_yticks(y, [f"{n}\n{load['runners'][n]['file_bytes'] / 1e6:.2f} MB" for n in names], fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("load time (ms)")
    bx.set_xlim(0, max(p90) * 1.35)
    bx.set_title(f"load a saved 100-tree forest ({load['repeats']} loads)")
    bx.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--calls", type=int, default=1000,
                    help="timed one-row calls per runner (default 1000: a call takes 10-25 ms, so 10,000 calls "
                         "x 3 runners take about 9.5 minutes)")
    ap.add_argument("--warmup", type=int, default=200, help="untimed calls per runner first (default 200)")
    ap.add_argument("--loads", type=int, default=30, help="timed loads per file (default 30)")
    ap.add_argument("--profile-calls", type=int, default=200,
                    help="calls for the stage timer and for cProfile (default 200)")
    ap.add_argument("--skip-pyod", action="store_true", help="leave out the iforest (PyOD) pipeline's latency row")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"an ADBench .npz (default {DEFAULT_DATA})")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for models.json and models.png")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    load_before = loadavg()

    work = Path(tempfile.mkdtemp(prefix="adpipe-bench-models-"))
    os.environ["ADPIPE_HOME"] = str(work / "home")  # the signing key goes here, not to ~/.adpipe
    os.environ.pop("ADPIPE_MODEL_KEY", None)
    os.environ.pop("ADPIPE_MODEL_TRUST", None)

    import joblib

    from adpipe.core import model as model_mod

    frame, data_desc = load_data(args.data)
    say(f"data: {data_desc}")
    fitted = {}
    for det in ("isolation_forest", "iforest"):
        t = time.perf_counter()
        fitted[det] = fit_pipeline(det, frame)
        say(f"  fitted {det} in {time.perf_counter() - t:.1f} s")
    X = frame.to_numpy(dtype=np.float64)
    same_trees = bool(np.array_equal(forest_of(fitted["isolation_forest"], "isolation_forest").score_samples(X),
                                     forest_of(fitted["iforest"], "iforest").score_samples(X)))

    say("1. load")
    load = bench_load(fitted, work, args.loads)

    say("2. single-record latency")
    models = {det: model_mod.load(work / f"{det}.adpipe") for det in fitted}  # score what was loaded
    forest = forest_of(models["isolation_forest"], "isolation_forest")
    pool = np.sort(np.random.default_rng(0).choice(len(frame), min(ROW_POOL, len(frame)), replace=False))
    rows_df = [frame.iloc[[i]] for i in pool]
    rows_np = [np.ascontiguousarray(X[i:i + 1]) for i in pool]
    n = len(pool)
    # the same numbers both ways
    r0 = models["isolation_forest"].score(rows_df[0])["anomaly_score"].to_numpy()
    assert np.allclose(r0, -forest.score_samples(rows_np[0])), "adpipe and sklearn disagree on a score"
    m_iso, m_pyod = models["isolation_forest"], models["iforest"]
    runners = {
        "sklearn score_samples": lambda i: forest.score_samples(rows_np[i % n]),
        "adpipe[isolation_forest] score": lambda i: m_iso.score(rows_df[i % n]),
    }
    if not args.skip_pyod:
        runners["adpipe[iforest] score"] = lambda i: m_pyod.score(rows_df[i % n])
    lat = bench_latency(runners, args.calls, args.warmup)
    summary = {name: summarize(ns) for name, ns in lat.items()}
    base = summary["sklearn score_samples"]
    for name, s in summary.items():
        s["p50_ratio"] = round(s["p50_us"] / base["p50_us"], 2)
        s["p99_ratio"] = round(s["p99_us"] / base["p99_us"], 2)
        s["p50_overhead_us"] = round(s["p50_us"] - base["p50_us"], 1)

    say("3. where the time goes")
    gc.collect()
    stages = stage_breakdown(m_iso, rows_df, args.profile_calls)
    prof = profile(m_iso, rows_df, args.profile_calls)
    stages_pyod = None if args.skip_pyod else stage_breakdown(m_pyod, rows_df, args.profile_calls)

    elapsed = time.perf_counter() - started
    report = {
        "benchmark": "models",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/models.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds": round(elapsed, 1),
        "machine": machine(load_before, joblib=joblib.__version__, pyod=dist_version("pyod")),
        "setup": {"data": data_desc, "rows": int(len(frame)), "features": int(frame.shape[1]),
                  "n_estimators": N_ESTIMATORS, "max_samples": "auto (256)", "random_state": 0,
                  "contamination": CONTAMINATION, "preprocess": None, "calls": args.calls, "warmup": args.warmup,
                  "row_pool": n, "block": BLOCK, "iforest_and_isolation_forest_same_trees": same_trees},
        "load": load,
        "latency": summary,
        "stage_breakdown": {"adpipe[isolation_forest]": stages,
                            **({"adpipe[iforest]": stages_pyod} if stages_pyod else {})},
        "profile": {"adpipe[isolation_forest]": {"calls": prof["calls"], "top_cumulative": prof["top_cumulative"]}},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(lat, load, args.out / "models.png")

    # ---- stdout
    print(f"\ndata: {data_desc}; {N_ESTIMATORS} trees, max_samples 256, contamination {CONTAMINATION}")
    print(f"machine: {os.cpu_count()} CPUs, 1-minute load average {load_before} before, {loadavg()} after")
    print(f"\nLoad ({args.loads} loads each; bare forest = the isolation_forest pipeline's sklearn IsolationForest)")
    print(f"{'file':<26} {'MB':>6} {'median ms':>10} {'p90 ms':>8} {'x joblib':>9} {'x pickle':>9}")
    for name, r in load["runners"].items():
        print(f"{name:<26} {r['file_bytes'] / 1e6:>6.2f} {r['median_ms']:>10.2f} {r['p90_ms']:>8.2f} "
              f"{r['ratio_vs_joblib']:>9.2f} {r['ratio_vs_pickle']:>9.2f}")
    for name, r in load["runners"].items():
        if "steps_median_ms" in r:
            print(f"  {name} load steps (median ms): "
                  + ", ".join(f"{k[:-3]} {v:.2f}" for k, v in r["steps_median_ms"].items()))
    print(f"\nOne-row latency ({args.calls:,} calls each after {args.warmup} warm-up calls)")
    print(f"{'runner':<32} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9} {'x p50':>6} {'x p99':>6}")
    for name, s in summary.items():
        print(f"{name:<32} {s['p50_us']:>9,.0f} {s['p90_us']:>9,.0f} {s['p99_us']:>9,.0f} "
              f"{s['p50_ratio']:>6.2f} {s['p99_ratio']:>6.2f}")
    for name, st in report["stage_breakdown"].items():
        print(f"\nStage breakdown of {name}.score, mean us per call over {st['calls']} calls "
              f"(total {st['total_mean_us']:,.0f} us):")
        for k, v in st["mean_us"].items():
            print(f"  {k:<22} {v:>9,.0f}")
    for title, text in prof["text"].items():
        print(f"\ncProfile, adpipe[isolation_forest].score x {prof['calls']}: top 10 cumulative, {title}")
        print(text)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {args.out / 'models.json'} and {args.out / 'models.png'} in {elapsed:.0f} s")
    return 0




if __name__ == "__main__":
    sys.exit(main())
