"""The subtopic layer's term, fitted on training logs: how much does one sitting concentrate on its focus?

A simulated user's subtopic is a session's focus (`simulator.layers`). MovieLens records no sessions, but
its ratings come in sittings: a user's ratings with less than ``gap_s`` seconds between consecutive
timestamps. Within a sitting of at least ``min_len`` ratings, cut in two halves in time order:
- the focus is the genre most over-represented in the first half against the user's *other* sittings
  (its share there, a lift with +0.01 smoothing; genres under 2% of the user's other ratings are skipped);
- the second half then shows whether that focus persists: the focus genre's share of the second half
  against its share of the user's other sittings.
The term is the pooled log-odds ratio of those two shares over all sittings (each weighted by its second
half's length), with a percentile bootstrap CI over users. Choosing the focus on the first half and
measuring on the second keeps the selection out of the measurement (a focus picked and scored on the same
ratings would be a lift by construction).

This is `simulator.choice.FOCUS_SHIFT`'s provenance: the default split's train part gives it
(`tests/test_grounding.py` refits it). Only the ``train`` frame passed in is read.

The same sittings bound the layers' spread (`sitting_spread`): how much does a real sitting's genre mix vary
around the user's own, beyond what drawing its n films would give? A session's subtopic and context shift a
genre's like-logit by a draw (`simulator.choice.session_variance`); a population whose sessions varied more than
real sittings do would be noise the data does not show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Seconds between two ratings that end a sitting.
GAP_S = 3600
#: Ratings a sitting needs (half to choose its focus, half to measure it).
MIN_LEN = 8


def sittings(train: pd.DataFrame, gap_s: float = GAP_S) -> pd.DataFrame:
    """``train`` (user, item, rating, timestamp) in time order with a 'sitting' column: 0, 1, ... per user, a new
    sitting after a gap of more than ``gap_s`` seconds."""
    t = train.sort_values(["user", "timestamp", "item"], kind="stable")
    new = t.groupby("user")["timestamp"].diff().fillna(np.inf) > gap_s
    return t.assign(sitting=new.groupby(t["user"]).cumsum().astype(int) - 1)


def usable_sittings(train: pd.DataFrame, gap_s: float = GAP_S, min_len: int = MIN_LEN):
    """(user, the sitting's items in time order, the user's other items) for each sitting of ``min_len``+ ratings
    beside at least 10 ratings of the user's other sittings."""
    for user, g in sittings(train, gap_s).groupby("user"):
        for s, part in g.groupby("sitting"):
            if len(part) < min_len:
                continue
            other = g.loc[g["sitting"] != s, "item"].to_numpy()
            if len(other) >= 10:
                yield user, part["item"].to_numpy(), other


def genre_matrix(genres: list[list[str]]) -> tuple[np.ndarray, list[str]]:
    """[M, G] 0/1: item j has genre g; and the genre names, sorted."""
    names = sorted({g for gs in genres for g in gs})
    return np.array([[g in gs for g in names] for gs in genres], dtype=float), names


def focus_rows(train: pd.DataFrame, genres: list[list[str]], *, gap_s: float = GAP_S, min_len: int = MIN_LEN) -> pd.DataFrame:
    """One row per usable sitting: user, focus genre, its share of the user's other sittings ('base') and of the
    sitting's second half ('second'), and the second half's length 'n'."""
    G, names = genre_matrix(genres)
    rows = []
    for user, items, other in usable_sittings(train, gap_s, min_len):
        half = len(items) // 2
        base, first, second = G[other].mean(0), G[items[:half]].mean(0), G[items[half:]].mean(0)
        lift = np.where(base > 0.02, (first + 0.01) / (base + 0.01), 0.0)
        f = int(np.argmax(lift))
        rows.append((user, names[f], base[f], second[f], len(items) - half))
    return pd.DataFrame(rows, columns=["user", "focus", "base", "second", "n"])


def _pooled(rows: pd.DataFrame) -> float:
    base = float((rows["base"] * rows["n"]).sum() / rows["n"].sum())
    second = float((rows["second"] * rows["n"]).sum() / rows["n"].sum())
    return float(np.log(second / (1 - second)) - np.log(base / (1 - base)))


def fit_focus_shift(train: pd.DataFrame, genres: list[list[str]], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """The focus term (module docstring): {'shift', 'ci', 'base', 'second', 'n_sittings', 'n_users'}. ValueError
    when no sitting is usable (no timestamps, or sittings too short)."""
    rows = focus_rows(train, genres)
    if rows.empty:
        raise ValueError(f"no sitting of {MIN_LEN}+ ratings within {GAP_S} s gaps, beside other sittings: "
                         "the subtopic term cannot be fitted on these logs")
    users = rows["user"].unique()
    by_user = rows.set_index("user")
    rng = np.random.default_rng(seed)
    draws = [_pooled(by_user.loc[rng.choice(users, len(users))]) for _ in range(n_boot)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    w = rows["n"] / rows["n"].sum()
    return {"shift": round(_pooled(rows), 4), "ci": [round(float(lo), 4), round(float(hi), 4)],
            "base": round(float((rows["base"] * w).sum()), 4), "second": round(float((rows["second"] * w).sum()), 4),
            "n_sittings": int(len(rows)), "n_users": int(len(users))}


def spread_rows(train: pd.DataFrame, genres: list[list[str]], *, gap_s: float = GAP_S,
                min_len: int = MIN_LEN) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Per usable sitting (`usable_sittings`): its user, its length n, the user's other sittings' length m, their
    genre shares [S, G] ('base') and the sitting's own [S, G]; and the genre names."""
    G, names = genre_matrix(genres)
    rows = list(usable_sittings(train, gap_s, min_len))
    base = np.array([G[other].mean(0) for _, _, other in rows]).reshape(-1, len(names))
    share = np.array([G[items].mean(0) for _, items, _ in rows]).reshape(-1, len(names))
    return (np.array([u for u, _, _ in rows]), np.array([len(i) for _, i, _ in rows], float),
            np.array([len(o) for _, _, o in rows], float), base, share, names)


def _tau2(n, m, base, share) -> tuple[np.ndarray, np.ndarray]:
    """Per genre, the method-of-moments between-sitting variance of the genre's log-odds: the squared gap between a
    sitting's share and the user's other sittings', less the binomial variance of both (p(1-p)/n + p(1-p)/m), over
    the delta method's p^2 (1-p)^2; and each genre's summed weight. Genres a user rates under 2% (or over 98%) of
    the time are left out of that user's rows (the delta method needs p inside)."""
    v = base * (1 - base)
    keep = (base > 0.02) & (base < 0.98)
    excess = np.where(keep, (share - base) ** 2 - v / n[:, None] - v / m[:, None], 0.0)
    weight = np.where(keep, v ** 2, 0.0)
    return excess.sum(0) / np.maximum(weight.sum(0), 1e-12), weight.sum(0)


def sitting_spread(train: pd.DataFrame, genres: list[list[str]], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """How much real sittings vary in genre mix (module docstring): {'tau2', 'ci' (the pooled figure's percentile
    bootstrap over users), 'by_genre' {genre: {'tau2', 'ci', 'weight' (its share of the pooled
    figure)}}, 'n_sittings', 'n_users'}. 'tau2' is the variance, over
    sittings, of a genre's log-odds about the user's own mix, pooled over genres with their delta-method weights.
    It holds everything a sitting varies by: its focus, its context, the taste drifting between sittings, the site
    showing some genres first. ValueError when no sitting is usable."""
    users, n, m, base, share, names = spread_rows(train, genres)
    if not len(users):
        raise ValueError(f"no sitting of {MIN_LEN}+ ratings within {GAP_S} s gaps, beside other sittings: the "
                         "sittings' spread cannot be measured on these logs")

    def figures(idx) -> tuple[float, np.ndarray, np.ndarray]:  # (pooled, per genre, the genres' weights)
        t2, w = _tau2(n[idx], m[idx], base[idx], share[idx])
        return float((t2 * w).sum() / w.sum()), t2, w

    by_user = pd.Series(np.arange(len(users))).groupby(users).apply(np.asarray)
    ids = by_user.index.to_numpy()
    rng = np.random.default_rng(seed)
    draws = [figures(np.concatenate(by_user.loc[rng.choice(ids, len(ids))].to_list())) for _ in range(n_boot)]
    lo, hi = np.percentile([d[0] for d in draws], [2.5, 97.5])
    g_lo, g_hi = np.percentile(np.array([d[1] for d in draws]), [2.5, 97.5], axis=0)
    tau2, t2, w = figures(np.arange(len(users)))
    kept = [j for j in range(len(names)) if w[j] > 0]
    return {"tau2": round(tau2, 4), "ci": [round(float(lo), 4), round(float(hi), 4)],
            "by_genre": {names[j]: {"tau2": round(float(t2[j]), 4), "ci": [round(float(g_lo[j]), 4),
                                                                          round(float(g_hi[j]), 4)],
                                    "weight": round(float(w[j] / w.sum()), 4)} for j in kept},
            "n_sittings": int(len(users)), "n_users": int(len(ids))}


def layers_against_sittings(train: pd.DataFrame, genres: list[list[str]], *, n_boot: int = 1000,
                            seed: int = 0) -> dict:
    """Is the layers' spread within real people's? `sitting_spread` on ``train`` beside the most a simulated
    session's layers vary a genre's log-odds (`simulator.choice.session_variance`), pooled with the real figure's
    weights: {'real', 'simulated_at_most', 'within_real' (the bound below the real CI's low end)}; {'not_measured':
    why} when the logs have no usable sittings."""
    from simulator.choice import session_variance

    try:
        real = sitting_spread(train, genres, n_boot=n_boot, seed=seed)
    except ValueError as exc:
        return {"not_measured": str(exc)}
    bound = sum(g["weight"] * session_variance(name) for name, g in real["by_genre"].items())
    return {"real": real, "simulated_at_most": round(float(bound), 4), "within_real": bool(bound < real["ci"][0])}
