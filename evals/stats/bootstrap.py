"""Bootstrap over users: the resamples, percentile intervals and the CIs evals/ reports (`evals.stats`)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


# ---- bootstrap -----------------------------------------------------------------------------------

def resample_indices(n: int, *, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] the users drawn by each resample: the same draws in every bootstrap of this module's
    callers (a list per resample, a mean in one array operation, or a weight per user)."""
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def percentile_interval(draws, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) of ``draws``: the percentile bootstrap interval; (nan, nan) with none. An infinite draw
    may make a bound infinite or NaN (inf - inf), without a warning."""
    tail = (1 - confidence) / 2
    if not len(draws):
        return np.nan, np.nan
    with np.errstate(invalid="ignore"):
        return tuple(float(x) for x in np.quantile(draws, [tail, 1 - tail]))


def bootstrap_ci(records: list, stat, *, n_boot: int, seed: int, confidence: float = 0.95) -> tuple:
    """(stat(records), low, high): a percentile bootstrap CI, the records (one per user) resampled.

    ``stat`` takes a list of records and may return None or NaN on a resample where it is undefined
    (an AUC with one class): such draws are dropped; with none left the CI is (nan, nan).
    """
    n = len(records)
    point = stat(records)
    draws = [stat([records[i] for i in idx]) for idx in resample_indices(n, n_boot=n_boot, seed=seed)] if n else []
    draws = [d for d in draws if d is not None and np.isfinite(d)]
    return (point, *percentile_interval(draws, confidence))


def bootstrap_mean_ci(values, *, n_boot: int, seed: int, confidence: float = 0.95) -> tuple:
    """`bootstrap_ci(values, mean)` in one array operation, with the same resamples: (mean, low, high).
    The fidelity tables bootstrap 144 per-user means; resampled one list at a time they took about 7 of a
    300-user run's 59 seconds."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return np.nan, np.nan, np.nan
    draws = v[resample_indices(len(v), n_boot=n_boot, seed=seed)].mean(axis=1)
    lo, hi = percentile_interval(draws[np.isfinite(draws)], confidence)
    return float(v.mean()), float(lo), float(hi)


def pooled_auc(records: list) -> float | None:
    """AUC of the pooled scores as the Mann-Whitney statistic: (rank sum of the positives - n1 (n1 + 1) / 2)
    / (n1 n0), midranks for ties, i.e. the same number as scikit-learn's roc_auc_score (tested). The bootstrap
    calls this a thousand times a table row, and roc_auc_score's input checks took 95 of the 130 seconds of a
    300-user fidelity run; SciPy's rankdata alone takes a tenth of that."""
    y = np.concatenate([r[0] for r in records]).astype(bool)
    s = np.concatenate([r[1] for r in records]).astype(float)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not (n1 and n0):
        return None
    return float((rankdata(s)[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_pooled_auc(records: list, *, n_boot: int, seed: int, block: int = 250) -> tuple:
    """(point, low, high): `pooled_auc` and the percentile interval of `pooled_auc_draws`."""
    draws = pooled_auc_draws(records, n_boot=n_boot, seed=seed, block=block)
    return (pooled_auc(records), *percentile_interval(draws[~np.isnan(draws)])) if len(records) else \
        (pooled_auc(records), np.nan, np.nan)


def pooled_auc_draws(records: list, *, n_boot: int, seed: int, block: int = 250) -> np.ndarray:
    """The pooled AUC of each of `bootstrap_ci`'s resamples of users [n_boot] (NaN where a resample has no
    positive or no negative), without building a list per resample. Two methods scored on the same users (the
    same ``n`` and ``seed``) get the same resamples, so their draws pair: a paired CI of their difference.

    A resample gives each user a weight (how often it was drawn), and the pooled AUC of weighted records is
    the sum over score levels of the positives' weight there times (the negatives' weight below + half of
    theirs at that level), over W1 W0. Weights are whole numbers, so numerator and denominator are exact,
    as in `pooled_auc`'s rank sum: the same draws to the bit (tested). 300 users, 1,000 resamples: 0.27 s
    -> 0.05 s with 4 items a user, 0.70 -> 0.31 s with 20 (the 1:9 rows); 15 s of a fidelity run's 45 s of tables."""
    n = len(records)
    if not n:
        return np.full(n_boot, np.nan)
    y = np.concatenate([r[0] for r in records]).astype(bool)
    s = np.concatenate([r[1] for r in records]).astype(float)
    owner = np.repeat(np.arange(n), [len(r[0]) for r in records])
    order = np.argsort(s, kind="stable")
    _, starts = np.unique(s[order], return_index=True)  # ascending score levels, each one's first column
    owner, y = owner[order], y[order]
    idx = resample_indices(n, n_boot=n_boot, seed=seed)  # bootstrap_ci's draws, in its order
    draws = []
    for lo in range(0, n_boot, block):
        part = idx[lo:lo + block]
        counts = np.zeros((len(part), n))
        np.add.at(counts, (np.arange(len(part))[:, None], part), 1.0)
        w = counts[:, owner]  # [B, items in score order]
        pos = np.add.reduceat(w * y, starts, axis=1)
        neg = np.add.reduceat(w * ~y, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        w1, w0 = pos.sum(1), neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws.append(np.where((w1 > 0) & (w0 > 0), (pos * (below + 0.5 * neg)).sum(1) / (w1 * w0), np.nan))
    return np.concatenate(draws)


def ratio_of_means_ci(a, b, *, n_boot: int, seed: int) -> list[float] | None:
    """95% paired percentile bootstrap CI [low, high] of mean(a) / mean(b) over pairs a, b [n] (the pairs
    resampled together, `resample_indices`); resamples where mean(b) <= 0 are dropped; None when all are."""
    a, b = np.asarray(a), np.asarray(b)
    idx = resample_indices(len(a), n_boot=n_boot, seed=seed)
    bm = b[idx].mean(1)
    ok = bm > 0
    boots = a[idx].mean(1)[ok] / bm[ok]
    return [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if len(boots) else None


def stratified_resample_indices(groups, *, n_boot: int, seed: int | np.random.Generator) -> np.ndarray:
    """[n_boot, n] indices into ``groups`` [n] (labels 0..G-1): each resample draws, with replacement, as many
    members of each group as it has, from that group only; columns are grouped by label, in label order
    (for each label the indices of its members, in order, resampled). ``seed`` seeds one Generator, used
    group after group."""
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    picks = []
    for g in range(int(groups.max()) + 1 if len(groups) else 0):
        idx = np.flatnonzero(groups == g)
        picks.append(idx[rng.integers(0, len(idx), (n_boot, len(idx)))])
    return np.concatenate(picks, axis=1)


def rounded(point, lo, hi, digits: int = 4) -> dict:
    """{'value': point, 'ci': [lo, hi]} rounded, as every JSON record of evals/ writes a figure (value None when
    the point is undefined)."""
    return {"value": None if point is None else round(float(point), digits),
            "ci": [round(float(lo), digits), round(float(hi), digits)]}


def mean_ci(values, *, n_boot: int, seed: int) -> dict:
    """`rounded` mean of per-user ``values`` with its percentile bootstrap CI (`bootstrap_mean_ci`)."""
    return rounded(*bootstrap_mean_ci(values, n_boot=n_boot, seed=seed))
