"""Offline A/B of recommender variants on simulated users: paired, bootstrapped, Holm-corrected.

It lives with the campaign, not under evals/validity: it is what a campaign measures about the
recommenders (the product's answer), read from the campaign's events, while validity/ asks whether
the simulated users can be believed. Its statistics (bootstrap, sign-flip test, Holm, min_p, MDE)
are `evals.stats.testing`; this module defines the metrics and the table.

Unit of analysis: one simulated user, keyed (user_variant, user_id). Every
user meets every recommender variant with the same seeds (common random
numbers), so each metric is compared as the per-user paired difference
treatment - control, each side averaged over the user's runs. One table per
user variant (``user_variant``): grounded twins and pure-LLM users are two
populations, and a pooled mean would weigh one's differences by the other's
head count (issue 33).

Metrics of one session are `evals.campaign.metrics.METRICS` (like rate and
position-weighted likes first: they cannot saturate at the page cap).
A user's value is the mean over its sessions that have one (NaN sessions are
skipped); a metric's pair is dropped when either side is NaN, for that metric
only, and a metric with fewer than two pairs gets no statistics (None).

Statistics per metric: the mean paired difference, a percentile bootstrap CI
(scipy.stats.bootstrap), a two-sided sign-flip permutation p-value
(scipy.stats.permutation_test, exact when 2**n <= n_perm, Monte Carlo
otherwise), and Holm's step-down adjustment across the metrics of one table.
An A/A check compares a variant with itself (run 0 vs run 1: different
seeds) and reports the share of metrics significant after Holm.

Power, per metric (m = metrics of the table that have statistics):
- min_p: the smallest two-sided p the sign-flip test can give with n pairs,
  2 / 2**n (only the all-plus and all-minus sign vectors reach the observed
  |mean| when every difference has the same sign), capped at 1; at least
  2 / (1 + n_perm) when the test is Monte Carlo (2**n > n_perm).
- min_p_holm: the smallest Holm-adjusted p a metric can get, i.e. Holm's
  adjustment of the tested metrics' min_p (Holm's adjusted p rises with
  every raw p, so every metric at its min_p is the best case). When the
  metrics share n this is min(1, m * min_p); a metric with fewer pairs
  (NaN dropped) can be ranked after the others and get less than m times
  its own min_p. can_reach_alpha: min_p_holm <= alpha. A design that cannot
  reach alpha gives no conclusion, never "no difference".
- mde: minimum detectable effect of the mean paired difference, in the
  metric's units, at two-sided level alpha / m (Bonferroni, Holm's
  conservative first step) and power 0.8, normal approximation from the
  observed sd of the paired differences (sd_diff, ddof=1):
  (z_{1-alpha/(2m)} + z_{0.8}) * sd / sqrt(n).
- verdict: "significant (p_holm=...)", "not significant (p_holm=...); could
  have detected |diff| >= MDE", "design cannot reach alpha=... (...): no
  conclusion", or "no test: ...". Significant means p_holm <= alpha.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evals.stats.testing import ALPHA, POWER, holm, mde, min_p, paired_test
from evals.campaign.metrics import METRICS, session_metrics

USER = ["user_variant", "user_id"]


def not_measures(user_variant: str, implicit: bool) -> tuple[str, ...]:
    """The METRICS that measure nothing for this population, left out of its A/B table (and so of its Holm family):
    on an implicit log a grounded user rates each item it took 5 and every other item 3
    (`simulator.choice.ChoiceModel.implicit`), so its mean rating is 3 + 2 x its acceptance rate."""
    return ("mean_rating",) if implicit and user_variant == "grounded" else ()


def per_user_metrics(events: pd.DataFrame, variant: str) -> pd.DataFrame:
    """METRICS per user for one recommender variant: DataFrame indexed by (user_variant, user_id),
    each value the mean over the user's runs (NaN runs skipped). ValueError naming the variant if absent."""
    missing = [c for c in ("variant", "run", "ok", "slate", "chosen", "ratings", "consistency", *USER) if c not in events]
    if missing:
        raise ValueError(f"events: missing column(s) {missing}; expected TurnEvent rows (evals.campaign.events.events_frame)")
    part = events[events["variant"] == variant]
    if part.empty:
        raise ValueError(f"variant {variant!r} has no events; variants present: {sorted(events['variant'].unique())}")
    rows = [{"user_variant": uv, "user_id": uid, **session_metrics(session)}
            for (uv, uid, _run), session in part.groupby([*USER, "run"], sort=True)]
    return pd.DataFrame(rows).groupby(USER)[list(METRICS.names())].mean()


def of_user_variant(events: pd.DataFrame, user_variant: str | None) -> pd.DataFrame:
    """The rows of one user variant (None: all rows); ValueError naming the ones present when it has none."""
    if user_variant is None:
        return events
    part = events[events["user_variant"] == user_variant]
    if part.empty:
        raise ValueError(f"user variant {user_variant!r} has no events; present: {sorted(events['user_variant'].unique())}")
    return part


def _significant(p: float | None, alpha: float) -> bool:
    return p is not None and p <= alpha


def ab_verdict(row: dict, m: int, alpha: float = ALPHA) -> str:
    """One line for a row of ab_table (module docstring, "verdict")."""
    n = row["n_users"]
    if row["p_value"] is None:
        return f"no test: {n} paired user(s), fewer than two"
    if not row["can_reach_alpha"]:
        return (f"design cannot reach alpha={alpha:g} (n={n} paired users, Holm over {m} metrics: smallest possible "
                f"p {row['min_p_holm']:.3g}): no conclusion")
    if _significant(row["p_holm"], alpha):
        return f"significant (p_holm={row['p_holm']:.2g})"
    if not row["sd_diff"]:
        return f"not significant (p_holm={row['p_holm']:.2g}); every paired difference is {row['diff']:.3g}"
    return f"not significant (p_holm={row['p_holm']:.2g}); could have detected |diff| >= {row['mde']:.3g}"


def _add_power(rows: list[dict], n_perm: int, alpha: float, power: float) -> None:
    """Fill min_p, min_p_holm, can_reach_alpha, mde and verdict in place (m: rows with a p-value)."""
    m = sum(r["p_value"] is not None for r in rows)
    for r in rows:
        r["min_p"] = min_p(r["n_users"], n_perm) if r["p_value"] is not None else None
    for r, best in zip(rows, holm([r["min_p"] for r in rows])):
        r["min_p_holm"] = best
        r["can_reach_alpha"] = best is not None and best <= alpha
        r["mde"] = mde(r["sd_diff"], r["n_users"], m, alpha, power) if r["can_reach_alpha"] else None
        r["verdict"] = ab_verdict(r, m, alpha)


def ab_table(events: pd.DataFrame, control: str, treatment: str, seed: int = 0, *, n_boot: int = 2000,
             n_perm: int = 2000, confidence: float = 0.95, n_resamples: int | None = None, alpha: float = ALPHA,
             power: float = POWER, user_variant: str | None = None, skip: tuple[str, ...] = ()) -> list[dict]:
    """One row per metric: {metric, control, treatment (means over the paired users), diff, sd_diff (sd of
    the paired differences, ddof=1), ci_low, ci_high, p_value, p_holm, n_users, min_p, min_p_holm,
    can_reach_alpha, mde, verdict} (module docstring; None where a metric has fewer than two pairs, mde
    also when the design cannot reach alpha). Users pair on (user_variant, user_id). ValueError naming
    the variant when one has no events, or when no user met both. ``user_variant``: only that population's
    users (the campaign's tables, one per user variant); None pairs every user given. ``skip``: metrics left out
    (`not_measures`)."""
    if n_resamples is not None:
        n_perm = n_resamples
    events = of_user_variant(events, user_variant)
    a, b = per_user_metrics(events, control), per_user_metrics(events, treatment)
    users = a.index.intersection(b.index)
    if users.empty:
        raise ValueError(f"no user met both {control!r} and {treatment!r}: nothing to pair")
    rows = []
    for k, metric in enumerate(METRICS):
        if metric in skip:
            continue
        pair = pd.DataFrame({"a": a.loc[users, metric], "b": b.loc[users, metric]}).dropna()
        res = paired_test(pair["a"].to_numpy(), pair["b"].to_numpy(), seed=np.random.default_rng([seed, k]),
                          n_boot=n_boot, n_perm=n_perm, confidence=confidence, n_resamples=n_resamples)
        sd = float((pair["b"] - pair["a"]).std(ddof=1)) if len(pair) >= 2 else None
        rows.append({"metric": metric, "control": float(pair["a"].mean()) if len(pair) else None,
                     "treatment": float(pair["b"].mean()) if len(pair) else None,
                     "diff": res["diff"], "sd_diff": sd, "ci_low": res["ci_low"], "ci_high": res["ci_high"],
                     "p_value": res["p_value"], "n_users": res["n"]})
    for row, p in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = p
    _add_power(rows, n_perm, alpha, power)
    return rows


def false_positive_rate(rows: list[dict], alpha: float = ALPHA) -> float | None:
    """Share of the metrics that could reach alpha (can_reach_alpha; any tested row when the key is absent)
    with p_holm <= alpha; None when none could."""
    tested = [r["p_holm"] for r in rows if r.get("p_holm") is not None and r.get("can_reach_alpha", True)]
    return sum(_significant(p, alpha) for p in tested) / len(tested) if tested else None


def aa_verdict(aa: dict) -> str:
    """One line for aa_false_positive_rate's dict: its rate, or why it says nothing."""
    alpha, rows = aa["alpha"], [r for r in aa["rows"] if r["p_value"] is not None]
    if not rows:
        return "no metric could be tested (fewer than two paired users)"
    if not aa["can_reach_alpha"]:
        n = max(r["n_users"] for r in rows)
        return (f"cannot reach alpha={alpha:g} (n={n} paired users, Holm over {len(rows)} metrics: smallest "
                f"possible p {aa['min_p_holm']:.3g}): no false positive was possible, so this says nothing")
    return (f"{aa['n_significant']} of {aa['n_reachable']} metrics significant after Holm at alpha={alpha:g} "
            f"(false-positive rate {aa['false_positive_rate']:.2g})")


def aa_false_positive_rate(events: pd.DataFrame, variant: str, *, runs: tuple[int, int] = (0, 1), seed: int = 0,
                           alpha: float = ALPHA, user_variant: str | None = None, **test_kwargs) -> dict | None:
    """A/A check: ``variant`` against itself, run runs[0] vs runs[1] (different seeds), paired by user.

    Returns {variant, runs, alpha, n_metrics (tested), n_reachable (tested and able to reach alpha),
    n_significant, false_positive_rate (n_significant / n_reachable; None when no metric can reach alpha),
    min_p_holm (smallest over the rows), can_reach_alpha (any row can), verdict (aa_verdict), rows (as
    ab_table), user_variant}, or None when the variant lacks one of the two runs. ValueError when the variant
    (or the ``user_variant``) is absent.
    """
    part = of_user_variant(events, user_variant)
    part = part[part["variant"] == variant]
    if part.empty:
        raise ValueError(f"variant {variant!r} has no events; variants present: {sorted(events['variant'].unique())}")
    part = part[part["run"].isin(runs)]
    if part["run"].nunique() < 2:
        return None
    arms = part.assign(variant=np.where(part["run"] == runs[0], "A1", "A2"), run=0)
    rows = ab_table(arms, "A1", "A2", seed=seed, alpha=alpha, **test_kwargs)
    tested = [r for r in rows if r["p_holm"] is not None]
    reachable = [r for r in tested if r["can_reach_alpha"]]
    aa = {"variant": variant, "user_variant": user_variant, "runs": list(runs), "alpha": alpha, "n_metrics": len(tested),
          "n_reachable": len(reachable), "n_significant": sum(_significant(r["p_holm"], alpha) for r in reachable),
          "false_positive_rate": false_positive_rate(rows, alpha),
          "min_p_holm": min((r["min_p_holm"] for r in tested), default=None),
          "can_reach_alpha": bool(reachable), "rows": rows}
    aa["verdict"] = aa_verdict(aa)
    return aa
