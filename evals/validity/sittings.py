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


def focus_rows(train: pd.DataFrame, genres: list[list[str]], *, gap_s: float = GAP_S, min_len: int = MIN_LEN) -> pd.DataFrame:
    """One row per usable sitting: user, focus genre, its share of the user's other sittings ('base') and of the
    sitting's second half ('second'), and the second half's length 'n'."""
    names = sorted({g for gs in genres for g in gs})
    G = np.array([[g in gs for g in names] for gs in genres], dtype=float)
    rows = []
    for user, g in sittings(train, gap_s).groupby("user"):
        for s, part in g.groupby("sitting"):
            if len(part) < min_len:
                continue
            other = g.loc[g["sitting"] != s, "item"].to_numpy()
            if len(other) < 10:
                continue
            items = part["item"].to_numpy()
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
