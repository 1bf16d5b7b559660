#!/usr/bin/env python
"""The `auto` detector against default `iforest` on the ADBench classical datasets (ROC-AUC).

    python bench/auto.py                                   # all 30 datasets (about 5 minutes)
    python bench/auto.py --datasets 14_glass,45_wine       # a subset
    python bench/auto.py --max-rows 5000 --seeds 1 --out /tmp/auto-results

Protocol (unsupervised, as ADBench): for each dataset in ``--data``
(default ``../shared/data/adbench``), at most ``--max-rows`` rows (default
20,000) are kept by a stratified, seeded sample (``train_test_split(...,
stratify=y, random_state=0)``), the same rows for every detector. Each
detector is fitted on all kept rows of X (raw features, no preprocessing: what
a config with no ``preprocess`` gives it) and scores the same rows: its
``training_scores_`` (as ``adpipe run`` reports when it fits and scores one
file; for kNN these leave each row out of its own neighbourhood), else
``score(X)``. Labels are used only for the ROC-AUC (scikit-learn).

Detectors: ``iforest`` (defaults, ``random_state`` 0, 1, 2, AUC averaged),
``auto`` (``random_state`` 0, 1, 2, averaged), and for context ``ecod``,
``copod``, ``hbos`` and ``knn`` (defaults, deterministic, one run).

The auto rules were designed on the odd-numbered datasets only (file prefix
odd: 7_, 15_, 19_, ...); the even-numbered ones are reported separately. They
are no longer a clean held-out set: the first version of auto (members
averaged) lost to iforest on them (:data:`FIRST_HELD_OUT_RUN`), and the
switch to the median was made after seeing that. Both are in the JSON.

Writes ``<out>/auto.json`` (per-dataset results, means, mean ranks,
tuning/held-out means, auto's choices, versions, seeds, the command) and
``<out>/auto.png`` (auto vs iforest per dataset), and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _common import dist_version, loadavg, machine, save_figure, say

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DATA = ROOT.parent / "shared" / "data" / "adbench"
SEEDED = ("iforest", "auto")  # averaged over --seeds random states
CONTEXT = ("ecod", "copod", "hbos", "knn")
DETECTORS = (*SEEDED, *CONTEXT)
#: the one clean held-out evaluation: auto's first version (same members, combined by their *mean*), rules
#: designed on the odd-numbered datasets only, run once on all 30 with this script (same protocol)
FIRST_HELD_OUT_RUN = {
    "auto_version": "v1: iforest + hbos + (knn or copod), method average",
    "mean_roc_auc": {"iforest": 0.7645, "auto": 0.7634},
    "mean_roc_auc_tuning_odd": {"iforest": 0.7115, "auto": 0.7315},
    "mean_roc_auc_held_out_even": {"iforest": 0.8108, "auto": 0.7913},
    "auto_vs_iforest": {"wins": 16, "losses": 14, "held_out_wins": 8, "held_out_datasets": 16,
                        "wilcoxon_p": 0.6702},
    "verdict": "auto did not beat iforest on the held-out (even) datasets; its worst loss was 16_http "
               "(0.729 vs 1.000: kNN scores the dense cluster of attacks as normal and the mean followed it)",
    "change_since": "members are now combined by their median, chosen after seeing this result; so the even "
                    "datasets no longer measure generalisation for the current auto",
}


def dataset_number(path: Path) -> int:
    return int(path.stem.split("_")[0])


def split_of(name: str) -> str:
    return "tuning" if int(name.split("_")[0]) % 2 else "held_out"


def load(path: Path, max_rows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(X, y, original row count): a stratified seeded sample of at most max_rows rows."""
    from sklearn.model_selection import train_test_split

    data = np.load(path)
    X, y = data["X"].astype(np.float64), data["y"].astype(int)
    n = len(X)
    if n > max_rows:
        keep, _ = train_test_split(np.arange(n), train_size=max_rows, stratify=y, random_state=0)
        keep = np.sort(keep)
        X, y = X[keep], y[keep]
    return X, y, n


def run_detector(name: str, X: np.ndarray, seed: int | None) -> tuple[np.ndarray, float, object]:
    import adpipe

    params = {} if seed is None else {"random_state": seed}
    det = adpipe.get_registry().get("detector", name)(params)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det.fit(X)
        scores = det.training_scores_ if det.training_scores_ is not None else det.score(X)
    return np.asarray(scores, dtype=float), time.perf_counter() - t, det


def bench_dataset(path: Path, max_rows: int, seeds: list[int]) -> dict:
    from sklearn.metrics import roc_auc_score

    X, y, n_all = load(path, max_rows)
    out = {"dataset": path.stem, "split": split_of(path.stem), "rows": n_all, "rows_used": int(len(X)),
           "sampled": n_all > len(X), "features": int(X.shape[1]), "anomalies": int(y.sum()),
           "anomaly_share": round(float(y.mean()), 4), "roc_auc": {}, "roc_auc_per_seed": {}, "fit_seconds": {}}
    for name in DETECTORS:
        runs = seeds if name in SEEDED else [None]
        aucs, secs = [], []
        for seed in runs:
            scores, sec, det = run_detector(name, X, seed)
            aucs.append(float(roc_auc_score(y, scores)))
            secs.append(sec)
            if name == "auto" and seed == runs[0]:
                out["auto_choice"] = {"members": det.chosen_["members"], "specs": det.chosen_["specs"],
                                      "profile": det.chosen_["profile"], "reasons": det.chosen_["reasons"]}
        out["roc_auc"][name] = round(float(np.mean(aucs)), 4)
        if name in SEEDED:
            out["roc_auc_per_seed"][name] = [round(a, 4) for a in aucs]
        out["fit_seconds"][name] = round(float(np.mean(secs)), 3)
    return out


def summarise(rows: list[dict]) -> dict:
    from scipy.stats import rankdata

    def mean(name: str, split: str | None = None) -> float | None:
        vals = [r["roc_auc"][name] for r in rows if split is None or r["split"] == split]
        return round(float(np.mean(vals)), 4) if vals else None

    A = np.array([[r["roc_auc"][d] for d in DETECTORS] for r in rows])
    ranks = np.array([rankdata(-a) for a in A])  # 1 = best on that dataset; ties share the mean rank
    diff = A[:, 0] - A[:, 1]  # iforest - auto
    out = {
        "datasets": len(rows),
        "mean_roc_auc": {d: mean(d) for d in DETECTORS},
        "mean_roc_auc_tuning_odd": {d: mean(d, "tuning") for d in DETECTORS},
        "mean_roc_auc_held_out_even": {d: mean(d, "held_out") for d in DETECTORS},
        "mean_rank": {d: round(float(ranks[:, j].mean()), 3) for j, d in enumerate(DETECTORS)},
        "auto_vs_iforest": {
            "wins": int((diff < -1e-4).sum()), "losses": int((diff > 1e-4).sum()),
            "ties": int((abs(diff) <= 1e-4).sum()),
            "mean_gain": round(float(-diff.mean()), 4),
            "held_out_wins": int(sum(d < -1e-4 for d, r in zip(diff, rows, strict=True) if r["split"] == "held_out")),
            "held_out_datasets": sum(r["split"] == "held_out" for r in rows),
        },
        "datasets_per_split": {s: sum(r["split"] == s for r in rows) for s in ("tuning", "held_out")},
    }
    if len(rows) > 1:
        from scipy.stats import wilcoxon

        nonzero = np.abs(diff) > 1e-4
        if nonzero.sum() >= 5:
            out["auto_vs_iforest"]["wilcoxon_p"] = round(float(wilcoxon(-diff[nonzero]).pvalue), 4)
    return out


def plot(rows: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: dataset_number(Path(r["dataset"])))
    fig, ax = plt.subplots(figsize=(8.5, 0.32 * len(rows) + 1.8))
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows, strict=True):
        a, b = r["roc_auc"]["iforest"], r["roc_auc"]["auto"]
        ax.plot([a, b], [yi, yi], color="tab:green" if b >= a else "tab:red", lw=2, alpha=0.6, zorder=1)
        for d in CONTEXT:
            ax.scatter(r["roc_auc"][d], yi, s=10, color="0.75", zorder=0)
    ax.scatter([r["roc_auc"]["iforest"] for r in rows], y, color="tab:blue", label="iforest (3 seeds)", zorder=2)
    ax.scatter([r["roc_auc"]["auto"] for r in rows], y, color="tab:orange", marker="D", label="auto (3 seeds)",
               zorder=3)
    ax.scatter([], [], s=10, color="0.75", label="ecod, copod, hbos, knn")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['dataset']}{'' if r['split'] == 'tuning' else ' *'}" for r in rows], fontsize=8)
    ax.set_xlabel("ROC-AUC (fit and score the same rows, unsupervised)")
    m, t, h = summary["mean_roc_auc"], summary["mean_roc_auc_tuning_odd"], summary["mean_roc_auc_held_out_even"]

    def pair(d):
        return f"auto {d['auto']:.3f} vs iforest {d['iforest']:.3f}" if d["auto"] is not None else "-"

    v1 = FIRST_HELD_OUT_RUN["mean_roc_auc_held_out_even"]
    ax.set_title(f"auto vs iforest on ADBench: mean {pair(m)}\n"
                 f"tuning (odd) {pair(t)}; even (*) {pair(h)}\n"
                 f"the one clean held-out run (auto v1, mean of members) on even: {pair(v1)}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--data", type=Path, default=DATA, help=f"folder of ADBench .npz files (default {DATA})")
    ap.add_argument("--datasets", default=None, help="comma-separated dataset names (default: every .npz)")
    ap.add_argument("--max-rows", type=int, default=20_000, help="rows kept per dataset (stratified sample)")
    ap.add_argument("--seeds", type=int, default=3, help="random states of iforest and auto (0 .. N-1)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for auto.json and auto.png")
    args = ap.parse_args(argv)
    files = sorted(args.data.glob("*.npz"), key=dataset_number)
    if args.datasets:
        wanted = [s.strip() for s in args.datasets.split(",") if s.strip()]
        files = [f for f in files if f.stem in wanted]
        missing = set(wanted) - {f.stem for f in files}
        if missing:
            say(f"not found in {args.data}: {', '.join(sorted(missing))}")
            return 2
    if not files:
        say(f"no .npz datasets in {args.data}")
        return 2
    seeds = list(range(args.seeds))
    load_before = loadavg()
    started = time.perf_counter()
    say(f"{len(files)} datasets; at most {args.max_rows} rows each (stratified sample, random_state 0, the same "
        f"rows for every detector); iforest and auto averaged over random_state {seeds}")
    head = f"{'dataset':22s} {'split':8s} {'rows':>7s} {'d':>4s} " + " ".join(f"{d:>7s}" for d in DETECTORS) \
        + "  auto members"
    print(head)
    print("-" * len(head))
    rows = []
    for i, path in enumerate(files, 1):
        say(f"[{i}/{len(files)}] {path.stem} ...")
        r = bench_dataset(path, args.max_rows, seeds)
        rows.append(r)
        rows_txt = f"{r['rows_used']}" + ("*" if r["sampled"] else "")
        print(f"{r['dataset']:22s} {r['split']:8s} {rows_txt:>7s} {r['features']:>4d} "
              + " ".join(f"{r['roc_auc'][d]:7.3f}" for d in DETECTORS) + "  " + "+".join(r["auto_choice"]["members"]),
              flush=True)
    summary = summarise(rows)
    print("-" * len(head))
    for label, key in (("mean (all)", "mean_roc_auc"), ("mean tuning (odd)", "mean_roc_auc_tuning_odd"),
                       ("mean held out (even)", "mean_roc_auc_held_out_even"), ("mean rank", "mean_rank")):
        vals = summary[key]
        print(f"{label:44s} " + " ".join(f"{vals[d]:7.3f}" if vals[d] is not None else f"{'-':>7s}"
                                          for d in DETECTORS))
    v = summary["auto_vs_iforest"]
    print(f"auto vs iforest: {v['wins']} wins, {v['losses']} losses, {v['ties']} ties; mean gain {v['mean_gain']:+.4f}"
          + (f"; Wilcoxon p = {v['wilcoxon_p']}" if "wilcoxon_p" in v else "")
          + f"; held out: {v['held_out_wins']} wins of {v['held_out_datasets']}")
    print("rows marked * are a stratified sample of the dataset")
    seconds = round(time.perf_counter() - started, 1)
    result = {
        "benchmark": "auto vs iforest, ROC-AUC on ADBench classical datasets",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join([str(Path(sys.argv[0]).as_posix()), *(argv if argv is not None else
                                                                          sys.argv[1:])]),
        "protocol": {
            "rows": f"at most {args.max_rows} rows per dataset: train_test_split(train_size={args.max_rows}, "
                    "stratify=y, random_state=0); the same rows for every detector",
            "fit_score": "fit on all kept rows of X (raw features, no preprocessing), score the same rows: "
                         "training_scores_ when set (kNN: each row left out of its own neighbourhood), else "
                         "score(X); ROC-AUC with sklearn.metrics.roc_auc_score; labels used only there",
            "seeds": {"iforest": seeds, "auto": seeds, "others": "deterministic, one run"},
            "params": "defaults of every detector (iforest: 100 trees, max_samples auto; knn: PyOD's k = 5; "
                      "auto: max_fit_rows 20000)",
            "split": "auto's rules were designed on the odd-numbered datasets (tuning); the even-numbered ones "
                     "were held out for one evaluation (first_held_out_run). The current auto's median "
                     "combination was chosen after it, so its even-dataset figures are not a clean held-out "
                     "estimate",
        },
        "first_held_out_run": FIRST_HELD_OUT_RUN,
        "detectors": list(DETECTORS),
        "summary": summary,
        "datasets": rows,
        "seconds": seconds,
        "machine": machine(load_before, pyod=dist_version("pyod"), scipy=dist_version("scipy")),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auto.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, summary, args.out / "auto.png")
    say(f"wrote {args.out / 'auto.json'} and {args.out / 'auto.png'} in {seconds} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
