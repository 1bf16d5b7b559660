"""The HTML report of ``adpipe tune``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adpipe.core.tuning import TuneResult, _fmt, _short


def write_report(result: TuneResult, path: str | Path) -> Path:
    """One HTML page: the best setting, objective per trial with the running best, each parameter's effect,
    and the ranked trials."""
    from adpipe.core.report import Report, new_figure

    page = Report(f"Tuning {result.name}", f"{result.method} search, {result.objective}")
    counts = result.counts()
    page.text(f"{len(result.trials)} trials ({counts['complete']} completed, {counts['failed']} failed), stopped: "
              f"{result.stopped}, {result.seconds:.1f} s. Each trial was fitted on {result.training_rows:,} rows and "
              f"measured on {result.validation_rows:,} labelled validation rows (seed {result.seed}).", note=True)
    page.heading("Best setting")
    page.table([{"parameter": k, "value": _short(v)} for k, v in result.best_params.items()]
               + [{"parameter": result.objective, "value": _fmt(result.best_value)}])
    done = [t for t in result.trials if t.state == "complete"]
    if done:
        page.heading("Objective per trial")
        fig, ax = new_figure()
        numbers = [t.number for t in done]
        ax.scatter(numbers, [t.value for t in done], s=18, label="trial")
        ax.step(numbers, np.maximum.accumulate([t.value for t in done]), where="post", color="C1",
                label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(result.objective)
        ax.legend(loc="lower right")
        page.figure(fig, f"{result.objective} per trial")
        page.heading("Effect of each parameter")
        for key, spec in result.space.items():
            fig, ax = new_figure(6, 3.2)
            xs = [t.params.get(key) for t in done]
            if isinstance(spec, list):  # categorical: one column per value
                labels = [_short(v) for v in spec]
                ax.scatter([labels.index(_short(x)) for x in xs], [t.value for t in done], s=18, alpha=0.7)
                ax.set_xticks(range(len(labels)), labels)
            else:
                ax.scatter(xs, [t.value for t in done], s=18, alpha=0.7)
                if spec.get("log"):
                    ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel(result.objective)
            page.figure(fig, f"{key} against {result.objective}")
    page.heading("Trials, best first")
    keys = list(result.space)
    page.table([{"rank": i + 1 if t.state == "complete" else "-", "trial": t.number,
                 **{k: _short(t.params.get(k)) for k in keys}, result.objective: t.value,
                 **{m: v for m, v in t.metrics.items() if m != result.objective}, "seconds": t.seconds,
                 "error": t.error or ""} for i, t in enumerate(result.ranked())])
    return page.write(path)
