#!/usr/bin/env python
"""Alerts: 10,000 anomalies in one batch to a local webhook; messages sent, wall time, overhead.

    python bench/alerts.py                                  # 10,000 rows, 5 repeats (about 1-2 minutes)
    python bench/alerts.py --rows 10000 --repeats 5 --out bench/results
    python bench/alerts.py --nogroup-rows 2000              # a smaller "no grouping" variant

In one process it starts an HTTP receiver on 127.0.0.1 (``ThreadingHTTPServer`` in a thread, HTTP/1.1
keep-alive, answers 200) that records every POST: its size, its ``Idempotency-Key`` header and the
number of alerts it covers (``total`` in the adpipe JSON body). The data is a seeded Gaussian table
(``id`` + 10 float features) written to a CSV in a temporary folder. Each run is the whole
``Pipeline.from_dict(...).run()``: read the CSV, fit an Isolation Forest (100 trees, ``random_state``
0) on every row, ECDF calibration, a ``probability`` threshold with ``cutoff: 0`` (every row is an
anomaly), severity, one Parquet file, all in ONE batch (``engine.batch_rows`` >= rows).

Variants, run interleaved (none, default, severity, max100, none, default, ...), ``--repeats`` each,
every run with a fresh SQLite outbox:

- ``none``: no alert channel (the baseline);
- ``default``: ``webhook`` with the default grouping (``group_by: [pipeline]``): one message;
- ``severity``: ``group_by: [pipeline, severity]``: one message per severity present;
- ``max100``: default grouping, ``max_alerts: 100`` (100 alerts listed in the message instead of 10);
- ``nogroup``: ``group_by: [id]`` (one group per record), ``rate_limit: 10000``, ``burst: 100``,
  ``flush_timeout: 600``: one message per anomaly, run ``--nogroup-repeats`` times (default 1) after
  the others, on ``--nogroup-rows`` rows (default 2,000: each message costs 9-20 ms, more as the outbox
  grows, and 10,000 took 205 s), beside a no-alert run of the same size.

For each: the median wall time of ``run()`` and the overhead against ``none`` (difference and ratio),
the messages received and the alerts they cover (checked against the anomalies), and the channel's
own time, measured by wrapping ``WebhookChannel.open/send/close`` in this script: ``send`` is the
engine's thread turning the anomalies into alerts in the outbox, ``close`` the flush (grouping,
rendering, rate limit, the POSTs).

Then cProfile, in the main thread, of the default channel's ``send`` of the same anomalies and of one
flushing dispatch pass (the dispatcher's work, done here without its thread), and of the no-grouping
flush of ``--profile-nogroup-rows`` anomalies: the top 10 cumulative entries in ``adpipe/core/alerting``
and the top 10 by own time overall, printed and saved.

Writes ``<out>/alerts.json`` and ``<out>/alerts.png`` and prints the tables.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from _common import loadavg, machine, save_figure, say

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmark this checkout, whatever `pip install -e` points at
RESULTS = ROOT / "bench" / "results"
FEATURES = 10
VARIANTS = ("none", "default", "severity", "max100")



# --------------------------------------------------------------------------- the receiver
class Receiver:
    """A local webhook: records each POST (bytes, Idempotency-Key, alerts covered)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                    total, listed = int(body.get("total", 0)), len(body.get("alerts", []))
                except (ValueError, AttributeError):
                    total, listed = -1, -1
                with receiver.lock:
                    receiver.posts.append({"bytes": len(raw), "key": self.headers.get("Idempotency-Key"),
                                           "total": total, "listed": listed, "at": time.perf_counter()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, name="bench-receiver", daemon=True)
        self.thread.start()

    def take(self) -> list[dict]:
        with self.lock:
            posts, self.posts = self.posts, []
        return posts

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- channel timing
class ChannelClock:
    """Wraps WebhookChannel.open/send/close (this process only) to time them."""

    def __init__(self, cls) -> None:
        self.seconds: dict[str, float] = {}
        self.stats: dict[str, int] = {}
        clock = self
        for name in ("open", "send", "close"):
            orig = getattr(cls, name)

            def wrapped(self, *args, _orig=orig, _name=name, **kwargs):
                t = time.perf_counter()
                try:
                    return _orig(self, *args, **kwargs)
                finally:
                    clock.seconds[_name] = clock.seconds.get(_name, 0.0) + time.perf_counter() - t
                    if _name == "close":
                        clock.stats = dict(self.stats())

            setattr(cls, name, wrapped)

    def take(self) -> tuple[dict[str, float], dict[str, int]]:
        out = self.seconds, self.stats
        self.seconds, self.stats = {}, {}
        return out


# --------------------------------------------------------------------------- the pipeline
def make_data(rows: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, FEATURES)) @ rng.normal(size=(FEATURES, FEATURES)) * 0.5
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(FEATURES)])
    frame.insert(0, "id", np.arange(rows))
    frame.to_csv(path, index=False, float_format="%.6g")


def channel_spec(variant: str, url: str, outbox: Path) -> dict | None:
    base = {"type": "webhook", "url": url, "outbox": str(outbox)}
    return {
        "none": None,
        "default": base,
        "severity": {**base, "group_by": ["pipeline", "severity"]},
        "max100": {**base, "max_alerts": 100},
        "nogroup": {**base, "group_by": ["id"], "rate_limit": 10000, "burst": 100, "flush_timeout": 600},
    }[variant]


def config(csv: Path, rows: int, out: Path, alert: dict | None) -> dict:
    return {
        "name": "storm",
        "detector": {"type": "isolation_forest", "n_estimators": 100, "random_state": 0},
        "threshold": {"type": "probability", "cutoff": 0.0},  # every row is an anomaly
        "columns": {"id": ["id"]},
        "source": {"type": "csv", "path": str(csv)},
        "sinks": [{"type": "parquet", "path": str(out)}],
        "engine": {"batch_rows": max(rows, 100_000)},  # one batch
        "alerts": [alert] if alert else [],
    }


def run_once(variant: str, csv: Path, rows: int, work: Path, i: int, receiver: Receiver,
             clock: ChannelClock) -> dict:
    from adpipe.core.engine import Pipeline

    outbox = work / "outbox" / f"{variant}-{rows}-{i}.db"
    out = work / "out" / f"{variant}-{rows}-{i}.parquet"
    pipe = Pipeline.from_dict(config(csv, rows, out, channel_spec(variant, receiver.url, outbox)), base_dir=work)
    receiver.take()
    clock.take()
    t = time.perf_counter()
    summary = pipe.run()
    wall = time.perf_counter() - t
    time.sleep(0.05)  # the last POST's handler thread records it after answering
    posts = receiver.take()
    chan, stats = clock.take()
    assert summary.anomalies == rows, f"{variant}: {summary.anomalies} anomalies, expected {rows}"
    rec = {"variant": variant, "rows": rows, "repeat": i, "wall_s": wall, "summary_seconds": summary.seconds,
           "batches": summary.batches, "anomalies": summary.anomalies,
           "stage_seconds": {k: round(v, 4) for k, v in summary.stage_seconds.items() if v},
           "summary_alerts": dict(summary.alerts), "channel_seconds": chan, "channel_stats": stats,
           "messages": len(posts), "alerts_covered": sum(p["total"] for p in posts),
           "alerts_listed": sum(p["listed"] for p in posts), "bytes": sum(p["bytes"] for p in posts),
           "unique_keys": len({p["key"] for p in posts}), "keys_present": all(p["key"] for p in posts)}
    if outbox.exists():
        rec["outbox_bytes"] = sum(f.stat().st_size for f in outbox.parent.glob(outbox.name + "*"))
    if variant != "none":
        rec["delivered_all"] = rec["alerts_covered"] == rows
    shutil.rmtree(out, ignore_errors=True)
    if out.exists():
        out.unlink()
    return rec


def med(values) -> float:
    return statistics.median(values) if values else float("nan")


def aggregate(runs: list[dict], base_wall: float, base_runs: list[dict]) -> dict:
    walls = [r["wall_s"] for r in runs]
    agg = {"runs": len(runs), "rows": runs[0]["rows"], "wall_median_s": round(med(walls), 4),
           "wall_min_s": round(min(walls), 4), "wall_max_s": round(max(walls), 4),
           "wall_all_s": [round(w, 4) for w in walls],
           "messages": sorted({r["messages"] for r in runs}), "alerts_covered": sorted({r["alerts_covered"]
                                                                                        for r in runs}),
           "alerts_listed": sorted({r["alerts_listed"] for r in runs}),
           "bytes_median": int(med([r["bytes"] for r in runs])),
           "idempotency_keys_unique_per_run": all(r["unique_keys"] == r["messages"] and r["keys_present"]
                                                  for r in runs)}
    if runs[0]["variant"] != "none":
        for k in ("open", "send", "close"):
            agg[f"{k}_median_ms"] = round(1000 * med([r["channel_seconds"].get(k, 0.0) for r in runs]), 1)
        agg["channel_stats"] = runs[-1]["channel_stats"]
        agg["delivered_all"] = all(r.get("delivered_all") for r in runs)
        if base_wall == base_wall:  # not NaN: a baseline at the same row count
            agg["overhead_ms"] = round(1000 * (agg["wall_median_s"] - base_wall), 1)
            agg["ratio"] = round(agg["wall_median_s"] / base_wall, 3)
            if len(base_runs) == len(runs):  # interleaved pairs
                agg["paired_overhead_median_ms"] = round(
                    1000 * med([r["wall_s"] - b["wall_s"] for r, b in zip(runs, base_runs)]), 1)
    return agg


# --------------------------------------------------------------------------- profile
def profile(csv: Path, rows: int, work: Path, url: str, variant: str = "default") -> dict:
    """cProfile of the channel's send (engine thread) and of one flushing dispatch pass, both in this thread."""
    from adpipe.core.alerting.dispatcher import Dispatcher
    from adpipe.core.context import RunContext
    from adpipe.core.engine import Pipeline
    from adpipe.core.registry import get_registry

    outbox = work / "outbox" / f"profile-{variant}-{rows}.db"
    pipe = Pipeline.from_dict(config(csv, rows, work / "out" / "profile.parquet", None), base_dir=work)
    frame = pd.read_csv(csv)
    model = pipe.fit(frame)
    result = model.score(frame)
    anomalies = result[result["is_anomaly"] == 1]
    spec = channel_spec(variant, url, outbox)
    cls = get_registry().get("alert_channel", "webhook")
    channel = cls(**{k: v for k, v in spec.items() if k != "type"})
    ctx = RunContext(pipeline="storm", model_version=model.model_version, id_columns=model.id_columns)
    ctx.extra["outputs"] = []
    channel._dispatcher = Dispatcher(channel, ctx)  # what open() does, without starting its thread
    out = {"rows": rows, "variant": variant}
    for phase, call in (("send", lambda: channel.send(anomalies, ctx)),
                        ("flush", lambda: channel._dispatcher._dispatch(flushing=True))):
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        call()
        prof.disable()
        out[f"{phase}_s"] = round(time.perf_counter() - t, 4)
        st = pstats.Stats(prof)
        out[f"{phase}_top_alerting"] = top(st, "adpipe/core/alerting")
        out[f"{phase}_top_overall"] = top(st, None)
        out[f"{phase}_top_tottime"] = top(st, None, key="tottime_s")
        text = {}
        for title, restrict, order in (("cumulative, in adpipe/core/alerting", "adpipe/core/alerting", "cumulative"),
                                       ("own time (tottime), overall", None, "tottime")):
            buf = io.StringIO()
            ps = pstats.Stats(prof, stream=buf).sort_stats(order)
            ps.print_stats(*([restrict] if restrict else []), 10)
            text[title] = "\n".join(ln for ln in buf.getvalue().splitlines()
                                    if ln.strip() and not ln.lstrip().startswith(("Ordered by", "List reduced")))
        out[f"{phase}_text"] = text
    closer = getattr(channel, "_client", None)
    if closer is not None and hasattr(closer, "close"):
        closer.close()
    out["messages_in_flush"] = channel._dispatcher.stats.get("notifications_delivered", 0)
    return out


def top(st: pstats.Stats, restrict: str | None, n: int = 10, key: str = "cumtime_s") -> list[dict]:
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _) in st.stats.items():  # type: ignore[attr-defined]
        if restrict and restrict not in file:
            continue
        rows.append({"function": f"{Path(file).name}:{line}({func})" if line else func, "calls": nc,
                     "tottime_s": round(tt, 4), "cumtime_s": round(ct, 4)})
    return sorted(rows, key=lambda r: r[key], reverse=True)[:n]


# --------------------------------------------------------------------------- plot
def plot(results: dict, path: Path) -> None:
    """Left: the grouped variants against no alerts; right: no grouping against no alerts at its row count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"none": "no alerts", "default": "group_by\n[pipeline]", "severity": "group_by\n[pipeline,\nseverity]",
              "max100": "max_alerts\n100"}
    base = results["none"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.9), gridspec_kw={"width_ratios": [4, 2]})
    names = [v for v in VARIANTS if v in results]
    xs = np.arange(len(names))
    walls = [results[v]["wall_median_s"] for v in names]
    ax.bar(xs, walls, color=["#9e9e9e" if v == "none" else "#1f77b4" for v in names], width=0.6)
    for x, v in zip(xs, names):
        r = results[v]
        text = f"{r['wall_median_s']:.2f} s" if v == "none" else \
            f"{r['wall_median_s']:.2f} s\n{r['messages'][-1]:,} msg\n+{r['overhead_ms']:,.0f} ms"
        ax.text(x, r["wall_median_s"], text, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, [labels[v] for v in names], fontsize=8)
    ax.set_ylim(0, max(walls) * 1.35)
    ax.set_ylabel("wall time of run(), median s")
    ax.set_title(f"{base['rows']:,} anomalies, one batch, webhook (median of {base['runs']})", fontsize=9)
    ng = results.get("nogroup")
    if ng:
        ng_base = ng.get("base_wall_median_s", base["wall_median_s"])
        ax2.bar([0, 1], [ng_base, ng["wall_median_s"]], color=["#9e9e9e", "#d62728"], width=0.6)
        ax2.text(0, ng_base, f"{ng_base:.2f} s", ha="center", va="bottom", fontsize=8)
        ax2.text(1, ng["wall_median_s"], f"{ng['wall_median_s']:.1f} s\n{ng['messages'][-1]:,} msg",
                 ha="center", va="bottom", fontsize=8)
        ax2.set_xticks([0, 1], ["no alerts", "group_by [id]\n(no grouping)"], fontsize=8)
        ax2.set_ylim(0, ng["wall_median_s"] * 1.3)
        ax2.set_title(f"one message per anomaly, {ng['rows']:,} rows", fontsize=9)
    else:
        ax2.axis("off")
    save_figure(fig, path)


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--rows", type=int, default=10_000, help="rows = anomalies, in one batch (default 10000)")
    ap.add_argument("--repeats", type=int, default=5, help="runs per variant, interleaved (default 5)")
    ap.add_argument("--nogroup-rows", type=int, default=2000,
                    help="rows of the no-grouping variant (default 2000: one message per anomaly costs 9-20 ms "
                         "and grows with the outbox, 10,000 took 205 s); a no-alert baseline at that size runs too")
    ap.add_argument("--nogroup-repeats", type=int, default=1, help="runs of the no-grouping variant (default 1)")
    ap.add_argument("--profile-rows", type=int, default=None, help="rows for cProfile (default --rows)")
    ap.add_argument("--profile-nogroup-rows", type=int, default=500,
                    help="rows for cProfile of the no-grouping flush (default 500; 0: skip)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for alerts.json and alerts.png")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    load_before = loadavg()
    warnings.filterwarnings("ignore")

    work = Path(tempfile.mkdtemp(prefix="adpipe-bench-alerts-"))
    os.environ["ADPIPE_HOME"] = str(work / "home")
    os.environ.pop("ADPIPE_ALERTS_DB", None)
    (work / "outbox").mkdir()
    (work / "out").mkdir()


    from adpipe.core.registry import get_registry

    registry = get_registry()
    if ("alert_channel", "webhook") not in registry:
        raise SystemExit("the `webhook` alert channel is not registered (adpipe/plugins/alerting/webhook.py)")
    webhook_cls = registry.get("alert_channel", "webhook")
    clock = ChannelClock(webhook_cls)
    receiver = Receiver()
    say(f"receiver at {receiver.url}; work folder {work}")

    csv = work / f"data_{args.rows}.csv"
    make_data(args.rows, csv)
    say(f"data: {args.rows:,} rows x {FEATURES} features -> {csv.name}")

    say("warm-up (one run without and one with alerts, not timed)")
    for v in ("none", "default"):
        run_once(v, csv, args.rows, work, -1, receiver, clock)

    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for i in range(args.repeats):
        for v in VARIANTS:
            r = run_once(v, csv, args.rows, work, i, receiver, clock)
            runs[v].append(r)
            say(f"  [{i + 1}/{args.repeats}] {v:<9} {r['wall_s']:6.2f} s  {r['messages']:>6,} msg  "
                f"{r['alerts_covered']:>6,} alerts  "
                + " ".join(f"{k} {1000 * s:,.0f} ms" for k, s in r["channel_seconds"].items()))
    base_wall = med([r["wall_s"] for r in runs["none"]])
    results = {v: aggregate(runs[v], base_wall if v != "none" else float("nan"), runs["none"]) for v in VARIANTS}

    # no grouping: one message per anomaly
    ng_rows = min(args.nogroup_rows, args.rows) if args.nogroup_rows else args.rows
    ng_csv = csv
    if ng_rows != args.rows:
        ng_csv = work / f"data_{ng_rows}.csv"
        make_data(ng_rows, ng_csv)
    say(f"no grouping: group_by [id], {ng_rows:,} rows, {args.nogroup_repeats} run(s)")
    ng_runs, ng_base = [], []
    for i in range(args.nogroup_repeats):
        if ng_rows != args.rows:
            ng_base.append(run_once("none", ng_csv, ng_rows, work, 100 + i, receiver, clock))
        r = run_once("nogroup", ng_csv, ng_rows, work, i, receiver, clock)
        ng_runs.append(r)
        say(f"  nogroup {r['wall_s']:6.2f} s  {r['messages']:>6,} msg  {r['alerts_covered']:>6,} alerts  "
            + " ".join(f"{k} {1000 * s:,.0f} ms" for k, s in r["channel_seconds"].items()))
    ng_base_wall = med([r["wall_s"] for r in ng_base]) if ng_base else base_wall
    results["nogroup"] = aggregate(ng_runs, ng_base_wall, ng_base if ng_base else [])
    results["nogroup"]["params"] = {"group_by": ["id"], "rate_limit": 10000, "burst": 100, "flush_timeout": 600}
    if ng_base:
        results["nogroup"]["base_wall_median_s"] = round(ng_base_wall, 4)
    else:
        results["nogroup"].pop("paired_overhead_median_ms", None)
    close_s = med([r["channel_seconds"].get("close", 0.0) for r in ng_runs])
    results["nogroup"]["messages_per_s_in_close"] = round(med([r["messages"] for r in ng_runs]) / close_s, 1) \
        if close_s else None

    say("cProfile of send and of one flushing dispatch pass")
    prof_rows = args.profile_rows or args.rows
    prof = profile(_data(work, prof_rows), prof_rows, work, receiver.url)
    prof_ng = None
    if args.profile_nogroup_rows:
        prof_ng = profile(_data(work, args.profile_nogroup_rows), args.profile_nogroup_rows, work, receiver.url,
                          variant="nogroup")
    receiver.take()

    receiver.stop()
    elapsed = time.perf_counter() - started
    import httpx

    report = {
        "benchmark": "alerts",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/alerts.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds": round(elapsed, 1),
        "machine": machine(load_before, httpx=httpx.__version__, sqlite=__import__("sqlite3").sqlite_version,
                           adpipe_imported_from=str(Path(__import__("adpipe").__file__).parent)),
        "setup": {"rows": args.rows, "features": FEATURES, "data": "seeded correlated Gaussian, CSV",
                  "detector": "isolation_forest, 100 trees, random_state 0, fitted on every row in each run",
                  "threshold": "probability >= 0 (every row flagged)", "batches": 1,
                  "sink": "parquet", "receiver": "ThreadingHTTPServer on 127.0.0.1, HTTP/1.1, answers 200",
                  "timed": "Pipeline.run() (fit + score + write + alerts), wall clock; from_dict not timed",
                  "repeats": args.repeats, "interleaved": list(VARIANTS), "warmup_runs": 2,
                  "outbox": "a fresh SQLite file per run",
                  "variants": {v: {k: x for k, x in (channel_spec(v, "<url>", Path("<outbox>")) or {}).items()
                                   if k not in ("url", "outbox")} for v in (*VARIANTS, "nogroup")},
                  "channel_timing": "WebhookChannel.open/send/close wrapped in this script"},
        "results": results,
        "runs": {**runs, "nogroup": ng_runs, **({"nogroup_baseline": ng_base} if ng_base else {})},
        "profile": {"default": {k: v for k, v in prof.items() if not k.endswith("_text")},
                    **({"nogroup": {k: v for k, v in prof_ng.items() if not k.endswith("_text")}} if prof_ng else {})},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "alerts.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot(results, args.out / "alerts.png")

    # ---- stdout
    print(f"\n{args.rows:,} anomalies in one batch, {args.repeats} interleaved runs per variant "
          f"(median wall time of Pipeline.run(): fit + score + Parquet + alerts)")
    print(f"machine: {os.cpu_count()} CPUs, 1-minute load average {load_before} before, {loadavg()} after")
    hdr = (f"{'variant':<10} {'rows':>7} {'wall s':>7} {'+ms':>7} {'x':>6} {'msgs':>6} {'alerts':>7} "
           f"{'KB':>7} {'open ms':>8} {'send ms':>8} {'close ms':>9}")
    print(hdr)
    for v, r in results.items():
        msgs = ",".join(f"{m:,}" for m in r["messages"])
        cov = ",".join(f"{m:,}" for m in r["alerts_covered"])
        print(f"{v:<10} {r['rows']:>7,} {r['wall_median_s']:>7.3f} {r.get('overhead_ms', 0):>7,.0f} "
              f"{r.get('ratio', 1):>6.3f} {msgs:>6} {cov:>7} {r['bytes_median'] / 1024:>7.1f} "
              f"{r.get('open_median_ms', 0):>8,.1f} {r.get('send_median_ms', 0):>8,.1f} "
              f"{r.get('close_median_ms', 0):>9,.1f}")
    for pr in (prof, prof_ng):
        if pr is None:
            continue
        phases = ("send", "flush") if pr["variant"] == "default" else ("flush",)
        for phase in phases:
            for title, text in pr[f"{phase}_text"].items():
                print(f"\ncProfile, {phase} of {pr['rows']:,} anomalies ({pr['variant']} channel, "
                      f"{pr['messages_in_flush']:,} message(s)) in {pr[phase + '_s']:.3f} s: top 10 {title}")
                print(text)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {args.out / 'alerts.json'} and {args.out / 'alerts.png'} in {elapsed:.0f} s")
    return 0


def _data(work: Path, rows: int) -> Path:
    path = work / f"data_{rows}.csv"
    if not path.exists():
        make_data(rows, path)
    return path




if __name__ == "__main__":
    sys.exit(main())
