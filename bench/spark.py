#!/usr/bin/env python
"""Spark benchmark: ``score_frame`` on local[2] beside in-process ``model.score`` on the same rows.

    python bench/spark.py                  # 2,000,000 rows x 20 features; about 5 minutes
    python bench/spark.py --rows 200000    # quick look
    python bench/spark.py --repeat 3 --batch-rows 10000 50000 200000

Data: ``--rows`` rows of 20 correlated Gaussian features with 1 % shifted outliers plus an ``id``,
written once to Parquet (16 files, so Spark reads it as 16 partitions). The model: ``detector:
iforest`` (100 trees, ``random_state: 0``), fitted on a 20,000-row sample.

Each round, in this order, all timed wall-clock:

- ``in-process``: ``pd.read_parquet`` of the folder, then ``model.score(frame)`` (one call, one core,
  as a data scientist would run it); the score call is also reported alone.
- ``spark score_frame``: ``score_frame(spark.read.parquet(folder), model).write.format("noop")``,
  which reads, scores every row in two Python workers and materialises every result column; one run
  per Arrow batch size (``spark.sql.execution.arrow.maxRecordsPerBatch``).
- ``spark score_udf``: the same through ``score_udf(model, "score")`` in a ``select``.

The ratio is Spark's wall time over in-process read + score (the same job done in one process).
Results: ``bench/results/spark.json`` and ``spark.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _common import dist_version, loadavg, machine, save_figure, say  # noqa: E402

import adpipe  # noqa: E402

FEATURES = [f"f{i:02d}" for i in range(20)]


def make_data(rows: int, folder: Path, files: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(20, 20)) / 5 + np.eye(20)
    per = -(-rows // files)
    for i in range(files):
        n = min(per, rows - i * per)
        x = rng.normal(size=(n, 20)) @ mix
        x[rng.random(n) < 0.01] += 4.0
        table = pa.table({"id": np.arange(i * per, i * per + n, dtype=np.int64),
                          **{f: x[:, j] for j, f in enumerate(FEATURES)}})
        pq.write_table(table, folder / f"part-{i:02d}.parquet")


def fit_model(folder: Path):
    sample = pq.read_table(next(folder.glob("*.parquet"))).to_pandas().head(20_000)
    config = {"name": "bench_spark", "columns": {"id": ["id"], "features": FEATURES},
              "detector": {"type": "iforest", "n_estimators": 100, "random_state": 0},
              "threshold": {"type": "contamination", "contamination": 0.01}}
    return adpipe.Pipeline.from_dict(config).fit(sample)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--batch-rows", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    load_before = loadavg()

    from pyspark.sql import functions as F

    from adpipe.integrations.spark import get_spark, score_frame, score_udf

    tmp = Path(tempfile.mkdtemp(prefix="adpipe-bench-spark-"))
    try:
        data = tmp / "data"
        data.mkdir()
        say(f"writing {args.rows:,} rows x 20 features to {data}")
        make_data(args.rows, data)
        model = fit_model(data)
        spark = get_spark("local[2]", {"spark.sql.files.maxPartitionBytes": str(32 << 20)}, app_name="bench")
        spark.sparkContext.setLogLevel("ERROR")

        def in_process() -> tuple[float, float]:
            start = time.perf_counter()
            frame = pd.read_parquet(data)
            read = time.perf_counter() - start
            scored = model.score(frame)
            assert len(scored) == args.rows
            return time.perf_counter() - start, time.perf_counter() - start - read

        def spark_frame(batch: int) -> float:
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch))
            return timed(lambda: score_frame(spark.read.parquet(str(data)), model)
                         .write.format("noop").mode("overwrite").save())

        def spark_udf(batch: int) -> float:
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch))
            udf = score_udf(model, "score")
            return timed(lambda: spark.read.parquet(str(data)).select("id", udf(F.struct(*FEATURES)).alias("s"))
                         .write.format("noop").mode("overwrite").save())

        say("warm-up: one small Spark job and one in-process score")
        spark_frame(50_000)
        model.score(pd.read_parquet(next(data.glob("*.parquet"))))
        runs: dict[str, list[float]] = {"in-process read+score": [], "in-process score": []}
        for r in range(args.repeat):
            total, score_only = in_process()
            runs["in-process read+score"].append(total)
            runs["in-process score"].append(score_only)
            say(f"round {r + 1}: in-process {total:.1f} s (score {score_only:.1f} s)")
            for batch in args.batch_rows:
                seconds = spark_frame(batch)
                runs.setdefault(f"score_frame, batches of {batch:,}", []).append(seconds)
                say(f"round {r + 1}: score_frame, Arrow batches of {batch:,}: {seconds:.1f} s")
            seconds = spark_udf(max(args.batch_rows))
            runs.setdefault(f"score_udf, batches of {max(args.batch_rows):,}", []).append(seconds)
            say(f"round {r + 1}: score_udf: {seconds:.1f} s")
        spark.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = statistics.median(runs["in-process read+score"])
    table = {name: {"median_s": round(statistics.median(v), 2), "runs_s": [round(x, 2) for x in v],
                    "ratio_vs_in_process": round(statistics.median(v) / base, 2),
                    "rows_per_s": round(args.rows / statistics.median(v))} for name, v in runs.items()}
    report = {"rows": args.rows, "features": 20, "model": "iforest, 100 trees", "spark_master": "local[2]",
              "results": table, "machine": machine(load_before, pyspark=dist_version("pyspark"),
                                                   pyarrow=dist_version("pyarrow"))}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "spark.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, row in table.items():
        print(f"{name:40s} {row['median_s']:8.2f} s  {row['ratio_vs_in_process']:5.2f} x  "
              f"{row['rows_per_s']:>10,} rows/s")
    plot(table, args)


def plot(table: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    values = [table[n]["median_s"] for n in names]
    colours = ["#888888" if n.startswith("in-process") else "#e25a1c" for n in names]
    ax.barh(names, values, color=colours)
    for i, n in enumerate(names):
        ax.text(values[i], i, f" {values[i]:.1f} s ({table[n]['ratio_vs_in_process']:.2f} x)", va="center")
    ax.invert_yaxis()
    ax.set_xlabel("wall time, s (median)")
    ax.set_title(f"{args.rows:,} rows x 20 features, iforest 100 trees:\nSpark local[2] vs one process")
    ax.set_xlim(0, max(values) * 1.35)
    save_figure(fig, args.results / "spark.png")


if __name__ == "__main__":
    main()
