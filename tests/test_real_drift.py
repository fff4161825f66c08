"""Drift read against real users: halves of the held-out period as two runs, the campaign's statistic on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals.validity.real_drift import compare, halves, real_drift, real_sessions
from recsys.data import Dataset

GENRES = ["Action", "Comedy", "Drama", "Horror"]


def _dataset(n_users: int, per_user: int, *, stable: bool, seed: int = 0) -> tuple[Dataset, pd.DataFrame, dict]:
    """Two personas (even users like Action/Comedy, odd users Drama/Horror). A stable user likes the same two
    genres in both halves; an unstable one likes a random genre pair in each half."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(40)], "title": [f"t{j}" for j in range(40)],
                          "year": 1990, "genres": [[GENRES[j % 4]] for j in range(40)]})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)]})
    rows = []
    for u in range(n_users):
        taste = {0, 1} if u % 2 == 0 else {2, 3}
        for k in range(per_user):
            half = int(k >= per_user // 2)
            liked = taste if stable else set(rng.choice(4, 2, replace=False).tolist()) if k % (per_user // 2) == 0 else liked
            j = int(rng.integers(40))
            rows.append({"user": u, "item": j, "rating": 5.0 if j % 4 in liked else 2.0, "timestamp": 1000 * half + k})
    ratings = pd.DataFrame(rows)
    persona_of = {f"u{u}": f"p{u % 2}" for u in range(n_users)}
    return Dataset(ratings, items, users, "toy"), ratings, persona_of


def test_halves_cut_each_users_held_out_period_in_time_order():
    test = pd.DataFrame({"user": [0] * 7 + [1] * 4, "item": list(range(7)) + list(range(4)),
                         "rating": 4.0, "timestamp": [5, 1, 7, 3, 2, 6, 4] + [1, 2, 3, 4]})
    h = halves(test, min_per_half=3)
    assert set(h["user"]) == {0}  # user 1 has only 2 ratings a half
    first = h[h["run"] == 0].sort_values("timestamp")["timestamp"].tolist()
    second = h[h["run"] == 1].sort_values("timestamp")["timestamp"].tolist()
    assert first == [1, 2, 3] and second == [4, 5, 6, 7]


def test_real_sessions_choose_the_liked_films_and_need_a_persona():
    ds, test, persona_of = _dataset(6, 8, stable=True)
    del persona_of["u5"]
    s = real_sessions(ds, test, persona_of)
    assert set(s["user_id"]) == {f"u{u}" for u in range(5)} and set(s["run"]) == {0, 1}
    row = s.iloc[0]
    liked = {k for k, r in row["ratings"].items() if r >= 4}
    assert set(row["chosen"]) == liked and len(row["slate"]) == len(row["ratings"])


def test_stable_users_give_a_small_ratio_and_unstable_ones_a_large_one():
    stable = real_drift(real_sessions(*_dataset(40, 12, stable=True)), 4, draws=50, n_perm=200)
    noisy = real_drift(real_sessions(*_dataset(40, 12, stable=False, seed=1)), 4, draws=50, n_perm=200)
    assert stable["all"]["ratio"] < 1.0 < 10 * stable["all"]["ratio"] < noisy["all"]["ratio"]
    assert stable["all"]["null"]["p_value"] <= 0.05 < noisy["all"]["null"]["p_value"]  # labels explain stable users only
    d = stable["design"]
    assert d["users_per_persona"] == 4 and d["ratios_defined"] == 50 and d["q025"] <= d["median"] <= d["q975"]
    assert noisy["design"]["median"] > d["q975"]


def test_a_design_the_real_users_cannot_fill_is_refused():
    sessions = real_sessions(*_dataset(10, 8, stable=True))
    with pytest.raises(ValueError, match=r"users_per_persona=6.*'p0': 5"):
        real_drift(sessions, 6)


def test_compare_says_where_a_simulated_ci_lies():
    real = {"design": {"q025": 1.0, "q975": 5.0}}
    assert compare([0.05, 0.17], real).startswith("more stable than real users")
    assert compare([6.0, 9.0], real).startswith("noisier than real users")
    assert compare([0.5, 1.5], real).startswith("within real users' range")
    assert compare(None, real).startswith("not comparable")
