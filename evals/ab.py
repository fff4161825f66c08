"""Offline A/B of recommender variants on simulated users: paired, bootstrapped, Holm-corrected.

Pairing: a user (user_variant, user_id) meets every variant with the same
seeds (common random numbers), so the unit of analysis is the per-user paired
difference, averaged over that user's runs and turns. A metric's NaN pairs
(e.g. diversity when fewer than two items were accepted) are dropped for that
metric only; a metric with fewer than two pairs gets no statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

METRICS = ("acceptance_rate", "mean_rating", "diversity", "persona_coverage", "consistency")


def _jaccard_distance_mean(genre_sets: list[set]) -> float:
    if len(genre_sets) < 2:
        return float("nan")
    vals = []
    for i in range(len(genre_sets)):
        for j in range(i + 1, len(genre_sets)):
            a, b = genre_sets[i], genre_sets[j]
            union = a | b
            vals.append(1.0 - (len(a & b) / len(union) if union else 1.0))
    return float(np.mean(vals))


def _session_metrics(session: pd.DataFrame) -> dict:
    shown = chosen = 0
    ratings, accepted_genres, attributed, accepted_personas = [], [], set(), set()
    consistency = []
    for e in session.itertuples(index=False):
        if not e.ok:
            continue
        by_id = {s["id"]: s for s in e.slate}
        shown += len(e.slate)
        chosen += len(e.chosen)
        ratings += list(e.ratings.values())
        attributed |= {s["persona"] for s in e.slate if s.get("persona") is not None}
        for i in e.chosen:
            item = by_id.get(i)
            if item is not None:
                accepted_genres.append(set(item.get("genres", [])))
                if item.get("persona") is not None:
                    accepted_personas.add(item["persona"])
        c = e.consistency or {}
        value = c.get("reward") if c.get("reward") is not None else c.get("prompt_to_line")
        if value is not None:
            consistency.append(value)
    return {
        "acceptance_rate": chosen / shown if shown else np.nan,
        "mean_rating": float(np.mean(ratings)) if ratings else np.nan,
        "diversity": _jaccard_distance_mean(accepted_genres),
        "persona_coverage": len(accepted_personas) / len(attributed) if attributed else np.nan,
        "consistency": float(np.mean(consistency)) if consistency else np.nan,
    }


def per_user_metrics(events: pd.DataFrame, variant: str) -> pd.DataFrame:
    """One row per user (index: 'user_variant/user_id') with the METRICS, averaged over sessions."""
    part = events[events["variant"] == variant]
    if part.empty:
        raise ValueError(f"variant {variant!r} has no events; variants present: {sorted(events['variant'].unique())}")
    rows = []
    for (uv, uid, run), session in part.groupby(["user_variant", "user_id", "run"], sort=True):
        rows.append({"user": f"{uv}/{uid}", "run": run, **_session_metrics(session)})
    return pd.DataFrame(rows).groupby("user")[list(METRICS)].mean()


def paired_test(a: np.ndarray, b: np.ndarray, *, seed: int = 0, n_resamples: int = 2000,
                confidence: float = 0.95) -> dict:
    """Mean paired difference b - a, its percentile bootstrap CI and a sign-flip permutation p-value."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if len(d) < 2:
        return {"diff": float(d.mean()) if len(d) else None, "ci_low": None, "ci_high": None, "p_value": None}
    if np.allclose(d, d[0]):  # no variation: the interval is the point; p = 1 when it is 0
        return {"diff": float(d[0]), "ci_low": float(d[0]), "ci_high": float(d[0]), "p_value": 1.0 if d[0] == 0 else 0.0}
    rng = np.random.default_rng(seed)
    boot = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                           method="percentile", random_state=rng)
    perm = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=n_resamples,
                                  alternative="two-sided", random_state=rng)
    return {"diff": float(d.mean()), "ci_low": float(boot.confidence_interval.low),
            "ci_high": float(boot.confidence_interval.high), "p_value": float(perm.pvalue)}


def holm(pvalues) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None), monotone, capped at 1."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not np.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def ab_table(events: pd.DataFrame, control: str, treatment: str, seed: int = 0, n_resamples: int = 2000) -> list[dict]:
    """Rows per metric: control/treatment means over paired users, diff, CI, p, Holm p, n_users."""
    a, b = per_user_metrics(events, control), per_user_metrics(events, treatment)
    users = a.index.intersection(b.index)
    if users.empty:
        raise ValueError(f"no user met both {control!r} and {treatment!r}: nothing to pair")
    rows = []
    for k, metric in enumerate(METRICS):
        pair = pd.DataFrame({"a": a.loc[users, metric], "b": b.loc[users, metric]}).dropna()
        res = paired_test(pair["a"].to_numpy(), pair["b"].to_numpy(), seed=seed + k, n_resamples=n_resamples)
        rows.append({"metric": metric, "control": float(pair["a"].mean()) if len(pair) else None,
                     "treatment": float(pair["b"].mean()) if len(pair) else None, **res, "n_users": int(len(pair))})
    for row, p in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = p
    return rows


def false_positive_rate(rows: list[dict], alpha: float = 0.05) -> float | None:
    """Share of tested metrics with p_holm < alpha (an A/A check's false-positive rate)."""
    tested = [r["p_holm"] for r in rows if r.get("p_holm") is not None]
    return sum(p < alpha for p in tested) / len(tested) if tested else None
