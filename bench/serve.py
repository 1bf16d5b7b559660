"""adpipe serve over loopback HTTP: single-record latency under a steady load, and a 10,000-row batch.

    python bench/serve.py                     # 200 requests/s for 30 s, then 7 rounds of the 10,000-row batch
    python bench/serve.py --rate 400 --seconds 10 --rounds 3

What runs:

1. **The model.** 20 correlated float features with 1 % shifted anomalies (bench/stream.py's generator),
   Isolation Forest with 100 trees, ECDF calibration, contamination threshold: fitted on 20,000 rows and
   saved to a temporary model store as ``bench@1``, promoted to ``production``.
2. **The server.** ``adpipe serve --store S --model bench@production --keys-file K --port P`` in its own
   process, with an API key (role ``score``) on every request, the per-key rate limiter on (set high enough
   never to refuse) and default settings otherwise. On a machine with 2+ cores the server is pinned to CPU 0
   and the load generator to CPU 1.
3. **Single records.** An open-loop load generator (its own process, 4 threads with one keep-alive
   connection each) sends ``POST /v1/models/bench/score`` at ``--rate`` per second for ``--seconds``, each
   request at its scheduled time whether or not earlier ones have answered. Latency is the client's send to
   the full response; the figure "from schedule" also counts any wait behind late requests (coordinated
   omission). The same records are scored in-process with ``FittedPipeline.score_one`` for the ratio.
4. **The batch.** ``POST /v1/models/bench/score/batch`` with 10,000 records in each shape the endpoint
   takes: JSON records (``{"records": [...]}``), JSON columns (``{"columns": {...}}``) and an Arrow IPC
   stream (bodies encoded once beforehand; the client reads the whole response), against
   ``FittedPipeline.score_batch`` on the same rows as a DataFrame, interleaved round by round; medians.

Targets: p99 ≤ 10 ms for single records; the batch request ≤ 1.5 x the in-process call (each shape
is reported against it). Writes
``bench/results/serve.json`` and ``bench/results/serve.png``; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import ROOT, loadavg, machine, save_figure, say
from stream import FEATURES, make_rows

P99_TARGET_MS = 10.0
BATCH_RATIO_TARGET = 1.5
BATCH_ROWS = 10_000
TRAIN_ROWS = 20_000
THREADS = 4
RESULTS = ROOT / "bench" / "results"
ARROW = "application/vnd.apache.arrow.stream"


# --------------------------------------------------------------------------- setup
def fit_model(store: Path):
    import pandas as pd

    import adpipe
    from adpipe.core.store import ModelStore

    train = pd.DataFrame(make_rows(TRAIN_ROWS, seed=1), columns=FEATURES)
    train.insert(0, "id", np.arange(TRAIN_ROWS, dtype=np.int64))
    cfg = {"name": "bench", "detector": {"type": "iforest", "n_estimators": 100, "random_state": 0},
           "columns": {"id": ["id"], "features": FEATURES}}
    model = adpipe.Pipeline.from_dict(cfg).fit(train)
    ms = ModelStore(store)
    stored = ms.add(model)
    ms.promote("bench", stored.version, "production")
    return model


def make_key(keys_file: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "adpipe", "keys", "create", "bench", "--role", "score",
                          "--keys-file", str(keys_file)], capture_output=True, text=True, check=True)
    return [w for w in out.stdout.split() if w.startswith("adp_")][0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cpu: int):
    if (os.cpu_count() or 1) < 2:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def start_server(store: Path, keys_file: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "ADPIPE_SERVE_RATE_LIMIT": "1000000/second"}
    cmd = [sys.executable, "-m", "adpipe", "serve", "--store", str(store), "--model", "bench@production",
           "--keys-file", str(keys_file), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, preexec_fn=pin(0))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"adpipe serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/health/ready")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("adpipe serve did not become ready in 120 s")


# --------------------------------------------------------------------------- load generator (own process)
def load(port: int, key: str, rate: float, seconds: float, bodies: list[bytes]) -> dict:
    """Open loop: request i is sent at start + i / rate by whichever thread is free."""
    total = int(rate * seconds)
    sched = np.zeros(total)
    sent = np.zeros(total)
    done = np.zeros(total)
    status = np.zeros(total, dtype=np.int32)
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    lock = threading.Lock()
    counter = iter(range(total))
    start = time.perf_counter() + 0.5

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            at = start + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sched[i] = at
            sent[i] = time.perf_counter()
            try:
                conn.request("POST", "/v1/models/bench/score", body=bodies[i % len(bodies)], headers=headers)
                resp = conn.getresponse()
                resp.read()
                status[i] = resp.status
            except (OSError, http.client.HTTPException):
                status[i] = -1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            done[i] = time.perf_counter()
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"sched": (sched - start).tolist(), "latency_ms": ((done - sent) * 1e3).tolist(),
            "from_schedule_ms": ((done - sched) * 1e3).tolist(), "status": status.tolist(),
            "elapsed_s": float(done.max() - start)}


def run_load(port: int, key: str, rate: float, seconds: float, bodies: list[bytes], work: Path) -> dict:
    payload = work / "bodies.json"
    payload.write_text(json.dumps([b.decode() for b in bodies]))
    out = work / "load.json"
    cmd = [sys.executable, __file__, "--load-worker", str(port), "--key", key, "--rate", str(rate),
           "--seconds", str(seconds), "--bodies", str(payload), "--out", str(out)]
    say(f"  single records: {rate:g}/s for {seconds:g} s ...")
    subprocess.run(cmd, check=True, preexec_fn=pin(1))
    return json.loads(out.read_text())


# --------------------------------------------------------------------------- measurements
def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def in_process_single(model, records: list[dict], calls: int) -> dict:
    for r in records[:200]:
        model.score_one(r)
    lat = np.empty(calls)
    for i in range(calls):
        t = time.perf_counter()
        model.score_one(records[i % len(records)])
        lat[i] = time.perf_counter() - t
    ms = lat * 1e3
    return {"calls": calls, "p50_ms": round(pct(ms, 50), 3), "p99_ms": round(pct(ms, 99), 3)}


def single_result(raw: dict) -> dict:
    status = np.asarray(raw["status"])
    ok = status == 200
    lat = np.asarray(raw["latency_ms"])[ok]
    sched = np.asarray(raw["from_schedule_ms"])[ok]
    n = len(status)
    return {"requests": n, "ok": int(ok.sum()), "errors": int(n - ok.sum()),
            "statuses": {str(s): int((status == s).sum()) for s in sorted(set(status.tolist()))},
            "achieved_rate_per_s": round(n / raw["elapsed_s"], 1),
            "p50_ms": round(pct(lat, 50), 3), "p90_ms": round(pct(lat, 90), 3), "p99_ms": round(pct(lat, 99), 3),
            "max_ms": round(float(lat.max()), 3),
            "p99_from_schedule_ms": round(pct(sched, 99), 3)}


def batch_bodies(frame) -> dict[str, tuple[bytes, str]]:
    """The 10,000 rows in each request shape the batch endpoint takes: (body, content type)."""
    import orjson
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return {"json records": (orjson.dumps({"records": frame.to_dict(orient="records")}), "application/json"),
            "json columns": (orjson.dumps({"columns": {c: frame[c].to_numpy() for c in frame.columns}},
                                          option=orjson.OPT_SERIALIZE_NUMPY), "application/json"),
            "arrow": (sink.getvalue().to_pybytes(), ARROW)}


def served_scores(shape: str, data: bytes) -> np.ndarray:
    import orjson
    import pyarrow as pa

    if shape == "arrow":
        return pa.ipc.open_stream(data).read_all().column("anomaly_score").to_numpy()
    body = orjson.loads(data)
    if shape == "json columns":
        return np.asarray(body["columns"]["anomaly_score"])
    return np.array([row["anomaly_score"] for row in body["results"]])


def batch_rounds(port: int, key: str, model, frame, rounds: int) -> dict:
    """Each request shape and the in-process call, interleaved round by round; round 0 warms up."""
    bodies = batch_bodies(frame)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times: dict[str, list[float]] = {name: [] for name in [*bodies, "in-process"]}
    expected = None
    for r in range(rounds + 1):
        t = time.perf_counter()
        result, _ = model.score_batch(frame)
        local = time.perf_counter() - t
        expected = result["anomaly_score"].to_numpy()
        line = [f"in-process {local * 1e3:.0f} ms"]
        if r:
            times["in-process"].append(local)
        for shape, (body, ctype) in bodies.items():
            t = time.perf_counter()
            conn.request("POST", "/v1/models/bench/score/batch", body=body,
                         headers={"Content-Type": ctype, "X-API-Key": key})
            resp = conn.getresponse()
            data = resp.read()
            took = time.perf_counter() - t
            if resp.status != 200:
                raise RuntimeError(f"batch request ({shape}) failed: {resp.status} {data[:500]!r}")
            if r == 0:
                got = served_scores(shape, data)
                assert len(got) == len(frame) and np.allclose(got, expected, rtol=0, atol=1e-12), \
                    f"served batch scores ({shape}) differ from the in-process ones"
            else:
                times[shape].append(took)
            line.append(f"{shape} {took * 1e3:.0f} ms")
        say(f"  batch round {r}/{rounds}: " + ", ".join(line))
    conn.close()
    base = float(np.median(times["in-process"]))
    out = {"rows": len(frame), "rounds": rounds, "in_process_median_ms": round(base * 1e3, 1),
           "in_process_ms": [round(x * 1e3, 1) for x in times["in-process"]], "shapes": {}}
    for shape, (body, _) in bodies.items():
        med = float(np.median(times[shape]))
        out["shapes"][shape] = {"body_bytes": len(body), "http_ms": [round(x * 1e3, 1) for x in times[shape]],
                                "http_median_ms": round(med * 1e3, 1), "ratio": round(med / base, 3)}
    return out


def plot(report: dict, raw: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    ok = np.asarray(raw["status"]) == 200
    t = np.asarray(raw["sched"])[ok]
    lat = np.asarray(raw["latency_ms"])[ok]
    a.scatter(t, lat, s=2, alpha=0.4, color="tab:blue")
    a.axhline(P99_TARGET_MS, color="tab:red", ls="--", lw=1, label=f"target p99 {P99_TARGET_MS:g} ms")
    s = report["single"]
    a.axhline(s["p99_ms"], color="tab:orange", lw=1, label=f"p99 {s['p99_ms']:.2f} ms")
    a.set(xlabel="seconds into the run", ylabel="latency (ms)", yscale="log",
          title=f"single record over HTTP at {s['achieved_rate_per_s']:g}/s")
    a.legend(loc="upper right", fontsize=8)
    bins = np.linspace(0, max(P99_TARGET_MS * 1.5, float(np.percentile(lat, 99.9))), 60)
    b.hist(lat, bins=bins, color="tab:blue", alpha=0.8, label="HTTP")
    b.axvline(report["in_process_single"]["p50_ms"], color="k", lw=1, label="in-process score_one p50")
    b.axvline(s["p99_ms"], color="tab:orange", lw=1, label="HTTP p99")
    b.set(xlabel="latency (ms)", ylabel="requests", title="latency distribution")
    b.legend(fontsize=8)
    bt = report["batch"]
    shapes = bt["shapes"]
    c.bar(["in-process\nscore_batch", *(f"HTTP\n{k}" for k in shapes)],
          [bt["in_process_median_ms"], *(v["http_median_ms"] for v in shapes.values())],
          color=["tab:gray", *["tab:blue"] * len(shapes)])
    c.axhline(bt["in_process_median_ms"] * BATCH_RATIO_TARGET, color="tab:red", ls="--", lw=1,
              label=f"target {BATCH_RATIO_TARGET:g}x in-process")
    c.set(ylabel="median ms", title=f"{bt['rows']:,}-row batch request vs in-process")
    c.legend(fontsize=8)
    save_figure(fig, path)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--rate", type=float, default=200.0, help="single-record requests per second")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long the steady load lasts")
    ap.add_argument("--rounds", type=int, default=7, help="batch requests (after one warm-up)")
    ap.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    ap.add_argument("--load-worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.load_worker:
        bodies = [b.encode() for b in json.loads(args.bodies.read_text())]
        args.out.write_text(json.dumps(load(args.load_worker, args.key, args.rate, args.seconds, bodies)))
        return 0

    import orjson
    import pandas as pd

    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="adpipe-bench-serve-") as tmp:
        work = Path(tmp)
        say("fitting the model ...")
        model = fit_model(work / "store")
        keys_file = work / "keys.yaml"
        key = make_key(keys_file)
        X = make_rows(1000, seed=7)
        records = [{"id": i, **dict(zip(FEATURES, row, strict=True))} for i, row in enumerate(X.tolist())]
        bodies = [orjson.dumps({"record": r}) for r in records]
        port = free_port()
        server = start_server(work / "store", keys_file, port, work / "server.log")
        try:
            raw = run_load(port, key, args.rate, args.seconds, bodies, work)
            frame = pd.DataFrame(make_rows(BATCH_ROWS, seed=9), columns=FEATURES)
            frame.insert(0, "id", np.arange(BATCH_ROWS, dtype=np.int64))
            say("  batch requests ...")
            batch = batch_rounds(port, key, model, frame, args.rounds)
        finally:
            server.terminate()
            server.wait(30)
        say("  in-process score_one ...")
        local = in_process_single(model, records, 2000)
    single = single_result(raw)
    report = {
        "command": "python bench/serve.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rate_per_s": args.rate, "seconds": args.seconds, "threads": THREADS,
        "single": single, "in_process_single": local,
        "single_p99_vs_in_process_p99": round(single["p99_ms"] / local["p99_ms"], 2),
        "batch": batch,
        "targets": {"single_p99_ms": P99_TARGET_MS, "batch_ratio": BATCH_RATIO_TARGET},
        "met": {"single_p99": single["p99_ms"] <= P99_TARGET_MS and single["errors"] == 0,
                **{f"batch_ratio ({k})": v["ratio"] <= BATCH_RATIO_TARGET for k, v in batch["shapes"].items()}},
        "machine": machine(load_before),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, raw, args.out.with_suffix(".png"))
    print(f"single record over HTTP, {single['requests']:,} requests at {single['achieved_rate_per_s']:g}/s: "
          f"p50 {single['p50_ms']:.2f} ms, p99 {single['p99_ms']:.2f} ms (target {P99_TARGET_MS:g}), "
          f"max {single['max_ms']:.1f} ms, errors {single['errors']}, p99 from schedule "
          f"{single['p99_from_schedule_ms']:.2f} ms")
    print(f"in-process score_one: p50 {local['p50_ms']:.2f} ms, p99 {local['p99_ms']:.2f} ms")
    for shape, v in batch["shapes"].items():
        print(f"{batch['rows']:,}-row batch as {shape} ({v['body_bytes'] / 1e6:.1f} MB): "
              f"HTTP {v['http_median_ms']:.0f} ms vs in-process {batch['in_process_median_ms']:.0f} ms = "
              f"{v['ratio']:.2f}x (target {BATCH_RATIO_TARGET:g}x)")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0 if all(report["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
