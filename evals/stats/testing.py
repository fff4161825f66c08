"""Permutation tests, Holm, the smallest reachable p and the MDE (`evals.stats`)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8


# ---- permutation tests ---------------------------------------------------------------------------

def paired_test(a, b, *, seed: int | np.random.Generator = 0, n_boot: int = 2000, n_perm: int = 2000,
                confidence: float = 0.95, n_resamples: int | None = None) -> dict:
    """Mean paired difference d = b - a over pairs a, b [n] (pairs with a NaN are dropped).

    Returns {diff, ci_low, ci_high, p_value, n}: a percentile bootstrap CI of mean(d)
    (``n_boot`` resamples; 0 skips it: CI None) and a two-sided sign-flip permutation
    p-value (``n_perm`` sign vectors; exact when 2**n <= n_perm). None where n < 2.
    ``n_resamples``, if given, sets both counts. ``seed`` seeds one numpy Generator.
    """
    if n_resamples is not None:
        n_boot = n_perm = n_resamples
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_test: a and b must be 1-D of equal length, got {a.shape} and {b.shape}")
    d = (b - a)[~(np.isnan(a) | np.isnan(b))]
    out = {"diff": float(d.mean()) if len(d) else None, "ci_low": None, "ci_high": None, "p_value": None, "n": int(len(d))}
    if len(d) < 2:
        return out
    rng = np.random.default_rng(seed)
    if n_boot > 0:
        if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):  # every resample has the same mean
            out["ci_low"] = out["ci_high"] = out["diff"]
        else:
            ci = stats.bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=confidence,
                                 method="percentile", rng=rng).confidence_interval
            out["ci_low"], out["ci_high"] = float(ci.low), float(ci.high)
    perm = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=n_perm,
                                  alternative="two-sided", rng=rng)
    out["p_value"] = float(perm.pvalue)
    return out


def _assignments(sizes: list[int]):
    """Every distinct sequence with sizes[p] copies of p (multiset permutations), in lexicographic order."""
    left, seq = list(sizes), [0] * sum(sizes)

    def fill(i: int):
        if i == len(seq):
            yield list(seq)
            return
        for p, c in enumerate(left):
            if c:
                left[p], seq[i] = c - 1, p
                yield from fill(i + 1)
                left[p] = c

    yield from fill(0)


def label_permutations(groups, *, n_perm: int, seed: int | np.random.Generator) -> tuple[np.ndarray, int, bool]:
    """Assignments of the labels ``groups`` [b] (0..G-1) to b units with each label's count kept:
    (labels [P, b], count of distinct assignments, exact). Exact when count <= n_perm: every distinct
    assignment once, in lexicographic order (the observed one among them); else ``n_perm`` random
    permutations of ``groups`` (Monte Carlo; ``seed`` seeds one Generator)."""
    groups = np.asarray(groups)
    sizes = np.bincount(groups).tolist()
    count = math.factorial(sum(sizes)) // math.prod(math.factorial(k) for k in sizes)
    if count <= n_perm:
        return np.array(list(_assignments(sizes)), dtype=int), count, True
    return np.random.default_rng(seed).permuted(np.tile(groups, (n_perm, 1)), axis=1), count, False


def permutation_p_value(k: int, count: int, n_perm: int, exact: bool) -> float:
    """The p-value of a permutation test where ``k`` assignments are at least as extreme as the observed
    one: exact, k / count (the observed assignment among them); Monte Carlo, (1 + k) / (1 + n_perm)."""
    return k / count if exact else (1 + k) / (1 + n_perm)


# ---- multiple comparisons and power --------------------------------------------------------------

def holm(pvalues) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, same order; None or NaN entries stay None and are not counted.

    Sorted ascending p_(1..m): adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None and not np.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def min_p(n: int, n_perm: int | None = None) -> float | None:
    """Smallest two-sided sign-flip p-value with n pairs (module docstring); None when n < 1.
    ``n_perm``: the test's resample count (Monte Carlo when 2**n > n_perm); None means exact."""
    if n < 1:
        return None
    p = min(1.0, math.ldexp(1.0, 1 - n))  # 2 / 2**n, without overflow for large n
    monte_carlo = n_perm is not None and 2 ** n > n_perm
    return max(p, min(1.0, 2 / (n_perm + 1))) if monte_carlo else p


def mde(sd: float | None, n: int, m: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Minimum detectable |mean paired difference| (units of the metric) at two-sided level alpha / m and
    the given power: (z_{1-alpha/(2m)} + z_power) * sd / sqrt(n). None when n < 2, m < 1 or sd is None."""
    if sd is None or n < 2 or m < 1:
        return None
    return float((stats.norm.ppf(1 - alpha / (2 * m)) + stats.norm.ppf(power)) * sd / math.sqrt(n))



def simulate_rejection_rates(*, effect: float = 0.0, n_users: int = 30, n_metrics: int = 5, n_reps: int = 200,
                             alpha: float = 0.05, seed: int = 0, n_perm: int = 200) -> dict:
    """Error rates of the paired test + Holm over ``n_reps`` synthetic A/B data sets.

    Each data set: n_users users with a per-user baseline ~ N(0, 1) per metric, two arms each adding
    independent N(0, 1) noise, the treatment arm shifted by ``effect`` (in noise SDs) on every metric.
    Returns raw_rate (share of (data set, metric) with p < alpha), holm_rate (same with p_holm),
    familywise_rate (share of data sets with any p_holm < alpha). With effect=0 these are the A/A
    false-positive rates (raw ~ alpha, Holm familywise <= alpha); with effect > 0 they are the power.
    """
    rng = np.random.default_rng(seed)
    raw = adj = family = 0
    for _ in range(n_reps):
        base = rng.normal(0, 1, (n_metrics, n_users))
        a = base + rng.normal(0, 1, base.shape)
        b = base + effect + rng.normal(0, 1, base.shape)
        p = [paired_test(a[m], b[m], seed=rng, n_boot=0, n_perm=n_perm)["p_value"] for m in range(n_metrics)]
        p_holm = holm(p)
        raw += sum(x < alpha for x in p)
        hits = sum(x < alpha for x in p_holm)
        adj += hits
        family += hits > 0
    return {"raw_rate": raw / (n_reps * n_metrics), "holm_rate": adj / (n_reps * n_metrics),
            "familywise_rate": family / n_reps, "n_reps": n_reps, "alpha": alpha, "effect": effect}
