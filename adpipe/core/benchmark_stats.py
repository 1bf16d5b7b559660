"""The statistics of a benchmark table (datasets x algorithms): ranks, Friedman, Nemenyi, Wilcoxon–Holm.

Demšar, "Statistical Comparisons of Classifiers over Multiple Data Sets", JMLR 7, 2006.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Iterable

import numpy as np
import pandas as pd

from adpipe.core.errors import DataError


def ranks(scores: np.ndarray) -> np.ndarray:
    """Rank per dataset (row): 1 = highest score; ties get the average of the ranks they span."""
    from scipy.stats import rankdata

    return np.vstack([rankdata(-np.asarray(row, dtype=np.float64)) for row in scores])


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """(q_alpha, critical difference) of the Nemenyi test: CD = q_alpha * sqrt(k (k + 1) / (6 N)),
    q_alpha = the studentized range quantile (k groups, infinite df) / sqrt(2)."""
    from scipy.stats import studentized_range

    q = float(studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))
    return q, q * math.sqrt(k * (k + 1) / (6 * n))


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest p times (m - i + 1), kept monotone, capped at 1."""
    p = np.asarray(list(p_values), dtype=np.float64)
    adjusted, running = np.empty_like(p), 0.0
    for i, j in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (len(p) - i) * p[j]))
        adjusted[j] = running
    return adjusted


def cd_groups(avg_ranks: dict[str, float], cd: float) -> list[list[str]]:
    """Maximal runs of algorithms (by average rank) whose ranks differ by less than ``cd``."""
    names = sorted(avg_ranks, key=avg_ranks.get)
    groups, last = [], -1
    for i, a in enumerate(names):
        j = max(j for j in range(i, len(names)) if avg_ranks[names[j]] - avg_ranks[a] < cd)
        if j > i and j > last:
            groups.append(names[i:j + 1])
            last = j
    return groups


def statistics(table: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """Tests on a datasets x algorithms table of scores (higher is better).

    Average ranks; Friedman's chi-square (scipy, tie-corrected) and the Iman-Davenport F; Nemenyi's
    critical difference; pairwise Wilcoxon signed-rank tests (zero differences split between the two
    rank sums, as Demšar does) with Holm-adjusted p-values.
    """
    from scipy import stats

    table = table.dropna()
    n, k = table.shape
    if k < 2 or n < 2:
        raise DataError(f"The statistical tests need at least 2 algorithms and 2 datasets with results for "
                        f"every algorithm; got {k} algorithm(s) and {n} dataset(s).",
                        hint="benchmark more algorithms or datasets (each algorithm must succeed on a dataset "
                             "for it to count)")
    names = list(table.columns)
    r = ranks(table.to_numpy())
    avg = dict(zip(names, map(float, r.mean(axis=0)), strict=True))
    out: dict[str, Any] = {"datasets": n, "algorithms": k, "alpha": alpha, "average_ranks": avg}
    if k >= 3:
        chi2, p = stats.friedmanchisquare(*table.to_numpy().T)
        f = (n - 1) * chi2 / (n * (k - 1) - chi2) if n * (k - 1) != chi2 else math.inf
        out["friedman"] = {"statistic": float(chi2), "p_value": float(p), "significant": bool(p < alpha),
                           "iman_davenport_f": float(f),
                           "iman_davenport_p": float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))}
    else:
        out["friedman"] = {"note": "needs at least 3 algorithms; see the Wilcoxon test"}
    q, cd = nemenyi_cd(k, n, alpha)
    out["nemenyi"] = {"q_alpha": q, "cd": cd, "groups": cd_groups(avg, cd)}
    pairs = []
    for a, b in combinations(names, 2):
        diff = table[a].to_numpy() - table[b].to_numpy()
        if np.allclose(diff, 0):
            stat, p = None, 1.0
        else:
            res = stats.wilcoxon(table[a].to_numpy(), table[b].to_numpy(), zero_method="zsplit")
            stat, p = float(res.statistic), float(res.pvalue)
        pairs.append({"a": a, "b": b, "mean_difference": float(diff.mean()), "statistic": stat, "p_value": p,
                      "nemenyi_significant": abs(avg[a] - avg[b]) >= cd})
    for pair, adjusted in zip(pairs, holm([p["p_value"] for p in pairs]), strict=True):
        pair.update(p_holm=float(adjusted), significant=bool(adjusted < alpha))
    out["wilcoxon_holm"] = pairs
    return out
