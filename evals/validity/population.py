"""A population, not one average person: do the simulated users spread as real users do?

OmniBehavior (arXiv 2604.08362) finds LLM users converging on one homogeneous, over-positive "average
person". A simulator can match every mean and still have no spread. So each test user gets the same
per-user behaviour statistics twice, once from the real ratings and once from a simulated population on
the very same items, and the two distributions over users are compared by their Wasserstein distance (the
area between their CDFs, in the statistic's own units; `scipy.stats.wasserstein_distance`).

The items: each fidelity user's held-out rated items (`evals.validity.fidelity`, ``rated`` of them), i.e. items
the user watched. A simulated rating there is one draw of the population's rating distribution (like given
watched is part of it).

Statistics of one user (STATISTICS):
- like_rate: share of its items rated >= LIKED_MIN;
- mean_rating, rating_sd: mean and standard deviation of its ratings;
- genre_entropy: Shannon entropy (bits) of the genres of the items it liked (each liked item's genres count
  once each); NaN with no like;
- like_popularity: mean log(1 + train positives) of the items it liked; NaN with no like.
Session length (the stop turn) is not here: held-out ratings have no sessions.

Populations (POPULATIONS), each sampling its calibrated rating distribution (`simulator.selector`):
- twin: the grounded twin, the user's own train history;
- persona: the persona-level user, the persona's canon in place of the user's history: what a simulator
  knows from the persona alone (the naive population's information; the LLM-voiced naive users themselves
  would need an LLM call per held-out item, about 6,000 for the default run);
- average_user: copies of one average user: a rating drawn from the item's train rating histogram (smoothed
  by one pseudo-rating spread as the global histogram), the same for every user.
Beside them (COMPARISONS):
- twin_flat: the twins without the person's own level (`simulator.selector.person_level`), every person at the
  population's probabilities: what the level adds, paired on the same users (``twin_minus_twin_flat``);
- floor: real users against themselves. Each user's items are cut at random in two halves and the distance
  between the halves' statistics, divided by sqrt(2) (a per-user statistic's sampling noise goes as one over the
  square root of its items), estimates the distance of a population that behaves exactly as each real user does
  on other draws of its ratings. About 20 items a user make every per-user statistic noisy, so no simulator is
  expected far below this; it is an estimate (the halves also differ in their items), not a bound.
CIs: percentile bootstrap over users (the same users resampled for the real and the simulated side).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evals.stats.bootstrap import bootstrap_ci, rounded
from simulator.selector import LIKED_MIN

STATISTICS = ("like_rate", "mean_rating", "rating_sd", "genre_entropy", "like_popularity")
POPULATIONS = ("twin", "persona", "average_user")
COMPARISONS = ("twin_flat", "floor")
#: The realism target: the twins' distance at most this share of the persona-level population's.
NAIVE_SHARE = 0.5


def user_statistics(ratings: np.ndarray, items: np.ndarray, genres: list[list[str]], log_pop: np.ndarray) -> dict:
    """STATISTICS of one user from its ratings [M] of item indices ``items`` [M] (module docstring)."""
    ratings = np.asarray(ratings, float)
    liked = np.asarray(items)[ratings >= LIKED_MIN]
    if len(liked):
        counts = pd.Series([g for i in liked for g in genres[i]]).value_counts().to_numpy(float)
        share = counts / counts.sum() if counts.sum() else np.array([1.0])
        entropy = float(-(share * np.log2(share)).sum())
        popularity = float(np.mean(log_pop[liked]))
    else:
        entropy = popularity = float("nan")
    return {"like_rate": float(np.mean(ratings >= LIKED_MIN)), "mean_rating": float(np.mean(ratings)),
            "rating_sd": float(np.std(ratings)), "genre_entropy": entropy, "like_popularity": popularity}


class AverageUser:
    """Copies of one average user: each item's rating drawn from its train rating histogram, smoothed by one
    pseudo-rating spread as the global histogram."""

    def __init__(self, train: pd.DataFrame, n_items: int):
        counts = np.zeros((n_items, 5))
        np.add.at(counts, (train["item"].to_numpy(), train["rating"].to_numpy(int) - 1), 1.0)
        prior = counts.sum(0) / counts.sum()
        self.P = (counts + prior) / (counts.sum(1, keepdims=True) + 1.0)

    def sample(self, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cdf = np.cumsum(self.P[np.asarray(items)], axis=1)
        return (rng.random((len(items), 1)) > cdf).sum(1).clip(0, 4).astype(float) + 1.0


def population_realism(records: list[dict], genres: list[list[str]], log_pop: np.ndarray, *, n_boot: int,
                       seed: int) -> dict:
    """The per-statistic Wasserstein distances of each population to the real users, with CIs over users, and the
    targets. ``records``: one per user with 'items' [M] and the ratings 'truth', 'twin', 'persona' and
    'average_user' [M], and optionally 'twin_flat' [M] (COMPARISONS; the floor is drawn here with ``seed``)."""
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng([seed, 7])
    extra = [w for w in COMPARISONS if w == "floor" or all(w in r for r in records)]
    per_user = []
    for r in records:
        stats = {who: user_statistics(r[who], r["items"], genres, log_pop)
                 for who in ("truth", *POPULATIONS, *(w for w in extra if w != "floor"))}
        order, half = rng.permutation(len(r["items"])), len(r["items"]) // 2
        for side, pick in (("floor_a", order[:half]), ("floor_b", order[half:2 * half])):
            stats[side] = (user_statistics(np.asarray(r["truth"])[pick], np.asarray(r["items"])[pick], genres,
                                           log_pop) if half >= 2 else dict.fromkeys(STATISTICS, float("nan")))
        per_user.append(stats)

    def distance(stat: str, who: str):
        left, right, scale = ("truth", who, 1.0) if who != "floor" else ("floor_a", "floor_b", np.sqrt(2.0))

        def of(users: list[dict]):
            pairs = [(u[left][stat], u[right][stat]) for u in users]
            real = [a for a, _ in pairs if np.isfinite(a)]
            sim = [b for _, b in pairs if np.isfinite(b)]
            return wasserstein_distance(real, sim) / scale if len(real) >= 2 and len(sim) >= 2 else None
        return of

    rows, targets = [], {}
    for stat in STATISTICS:
        real = np.array([u["truth"][stat] for u in per_user])
        row = {"statistic": stat, "real_mean": round(float(np.nanmean(real)), 4),
               "real_sd": round(float(np.nanstd(real)), 4)}
        for who in (*POPULATIONS, *extra):
            sim = np.array([u["floor_b" if who == "floor" else who][stat] for u in per_user])
            row[who] = {"wasserstein": rounded(*bootstrap_ci(per_user, distance(stat, who), n_boot=n_boot, seed=seed)),
                        "mean": round(float(np.nanmean(sim)), 4), "sd": round(float(np.nanstd(sim)), 4)}
        # paired, on the same resampled users: is the twin population closer than each other one?
        for other in ("persona", "average_user"):
            def gap(users, o=other, s=stat):
                a, b = distance(s, "twin")(users), distance(s, o)(users)
                return None if a is None or b is None else a - (NAIVE_SHARE if o == "persona" else 1.0) * b
            row[f"twin_minus_{'half_' if other == 'persona' else ''}{other}"] = rounded(
                *bootstrap_ci(per_user, gap, n_boot=n_boot, seed=seed))
        if "twin_flat" in extra:  # what the person's own level adds (negative: closer to the real users)
            def level_gain(users, s=stat):
                a, b = distance(s, "twin")(users), distance(s, "twin_flat")(users)
                return None if a is None or b is None else a - b
            row["twin_minus_twin_flat"] = rounded(*bootstrap_ci(per_user, level_gain, n_boot=n_boot, seed=seed))
        w = {who: row[who]["wasserstein"]["value"] for who in POPULATIONS}
        targets[f"{stat}: twin <= half the persona-level population's distance"] = w["twin"] <= NAIVE_SHARE * w["persona"]
        targets[f"{stat}: twin below the one-average-user population's distance"] = w["twin"] < w["average_user"]
        rows.append(row)
    return {"statistics": list(STATISTICS), "populations": list(POPULATIONS), "comparisons": extra,
            "n_users": len(records), "rows": rows,
            "targets": targets,
            "note": "Wasserstein distance between the real users' and the population's per-user statistic, on each "
                    "user's held-out rated items, one sampled draw; smaller is more realistic"}


def take_realism(rows: list[dict], *, n_boot: int, seed: int, draws: int = 200) -> dict:
    """An implicit log's population check (its ratings say nothing; `simulator.choice.ChoiceModel.implicit`): do the
    simulated users differ in how much they take as real users do? Each row is one test user: ``hits``, how many of a
    popularity list (the train part's most taken items, its own left out) it went on to take in the held-out part;
    ``p_own`` [k], the twin's take probabilities of that list at its own level; ``p_flat`` [k], at the population's.
    The sd over users of hits, real (bootstrap CI over users) against simulated (mean over ``draws`` draws, and the
    2.5-97.5% range of the draws), with and without the person's own level; and the mean hits."""
    real = np.array([r["hits"] for r in rows], dtype=float)
    rng = np.random.default_rng(seed)
    boot = rng.integers(len(real), size=(n_boot, len(real)))
    out = {"n_users": len(rows), "k": int(len(rows[0]["p_own"])) if rows else 0,
           "real_sd_hits": {"value": round(float(real.std()), 4),
                            "ci": [round(float(q), 4) for q in np.quantile(real[boot].std(axis=1), [0.025, 0.975])]},
           "real_mean_hits": round(float(real.mean()), 4)}
    for name, key in (("twin", "p_own"), ("twin_flat", "p_flat")):
        P = np.stack([r[key] for r in rows])  # [n, k]
        sims = (rng.random((draws, *P.shape)) < P).sum(2)  # [draws, n]
        sds = sims.std(axis=1)
        out[f"{name}_sd_hits"] = {"value": round(float(sds.mean()), 4),
                                  "range": [round(float(q), 4) for q in np.quantile(sds, [0.025, 0.975])]}
        out[f"{name}_mean_hits"] = round(float(sims.mean()), 4)
    lo, hi = out["real_sd_hits"]["ci"]
    out["targets"] = {"take spread: the twins' sd of hits within the real one's CI": lo <= out["twin_sd_hits"]["value"] <= hi}
    return out

