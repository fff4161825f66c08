"""Population realism (evals.validity.population): per-user statistics and their distances, on known data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals.validity.population import POPULATIONS, STATISTICS, AverageUser, population_realism, user_statistics

GENRES = [["Drama"], ["Drama", "War"], ["Comedy"], ["Horror"]]
LOG_POP = np.log1p(np.array([100.0, 10.0, 50.0, 1.0]))


def test_user_statistics_hand_computed():
    s = user_statistics(np.array([5, 4, 2, 4]), np.array([0, 1, 2, 3]), GENRES, LOG_POP)
    assert s["like_rate"] == 0.75 and s["mean_rating"] == 3.75 and s["rating_sd"] == pytest.approx(np.std([5, 4, 2, 4]))
    # liked 0, 1, 3: genres Drama x2, War, Horror -> shares 1/2, 1/4, 1/4 -> 1.5 bits
    assert s["genre_entropy"] == pytest.approx(1.5)
    assert s["like_popularity"] == pytest.approx(LOG_POP[[0, 1, 3]].mean())
    none = user_statistics(np.array([1, 2]), np.array([0, 2]), GENRES, LOG_POP)
    assert none["like_rate"] == 0 and np.isnan(none["genre_entropy"]) and np.isnan(none["like_popularity"])


def test_average_user_draws_each_items_own_histogram():
    train = pd.DataFrame({"item": [0] * 50 + [1] * 50, "rating": [5] * 50 + [1] * 50})
    avg = AverageUser(train, 3)
    draws = avg.sample(np.array([0] * 400 + [1] * 400 + [2] * 400), np.random.default_rng(0))
    assert draws.min() >= 1 and draws.max() <= 5
    assert (draws[:400] == 5).mean() > 0.95 and (draws[400:800] == 1).mean() > 0.95
    assert 0.4 < (draws[800:] == 5).mean() < 0.6  # an unrated item: the global histogram (half 5s, half 1s)


def test_a_spread_population_beats_copies_of_one_user_and_a_collapsed_one_is_flagged():
    rng = np.random.default_rng(1)
    records = []
    for _ in range(80):
        items = rng.choice(4, size=12)
        taste = rng.uniform(1.5, 4.8)  # real users differ: each has its own level
        real = np.clip(np.rint(taste + rng.normal(0, 0.7, 12)), 1, 5)
        twin = np.clip(np.rint(taste + rng.normal(0, 0.7, 12)), 1, 5)  # the same spread between users
        flat = np.clip(np.rint(3.2 + rng.normal(0, 0.7, 12)), 1, 5)  # one average person, copied
        records.append({"items": items, "truth": real, "twin": twin, "persona": flat, "average_user": flat})
    out = population_realism(records, GENRES, LOG_POP, n_boot=200, seed=0)
    rows = {r["statistic"]: r for r in out["rows"]}
    assert [r["statistic"] for r in out["rows"]] == list(STATISTICS) and out["populations"] == list(POPULATIONS)
    mean = rows["mean_rating"]
    assert mean["twin"]["wasserstein"]["value"] < mean["average_user"]["wasserstein"]["value"] / 2
    assert mean["twin_minus_average_user"]["ci"][1] < 0  # closer on every resample of users
    assert mean["average_user"]["sd"] < mean["real_sd"] / 2  # the collapse itself: no spread between users
    assert out["targets"]["mean_rating: twin below the one-average-user population's distance"]
    assert out["targets"]["like_rate: twin <= half the persona-level population's distance"]
    # a twin population that has collapsed too is not let through
    collapsed = [{**r, "twin": r["persona"]} for r in records]
    bad = population_realism(collapsed, GENRES, LOG_POP, n_boot=100, seed=0)
    assert not bad["targets"]["mean_rating: twin below the one-average-user population's distance"]


def test_the_floor_is_real_users_against_themselves_and_the_flat_twins_are_compared_paired():
    rng = np.random.default_rng(2)
    records = []
    for _ in range(120):
        items = rng.choice(4, size=20)
        taste = rng.uniform(1.5, 4.8)
        real = np.clip(np.rint(taste + rng.normal(0, 0.7, 20)), 1, 5)
        twin = np.clip(np.rint(taste + rng.normal(0, 0.7, 20)), 1, 5)  # each person's own level, as the real one
        flat = np.clip(np.rint(3.2 + rng.normal(0, 0.7, 20)), 1, 5)  # everyone at the mean
        records.append({"items": items, "truth": real, "twin": twin, "persona": flat, "average_user": flat,
                        "twin_flat": flat})
    out = population_realism(records, GENRES, LOG_POP, n_boot=200, seed=0)
    assert out["comparisons"] == ["twin_flat", "floor"]
    mean = {r["statistic"]: r for r in out["rows"]}["mean_rating"]
    assert mean["twin_minus_twin_flat"]["ci"][1] < 0  # the person's level brings the twins closer, on every resample
    floor, twin = mean["floor"]["wasserstein"]["value"], mean["twin"]["wasserstein"]["value"]
    # the twins here are exact copies of the real process: their distance is sampling noise, of the floor's size
    assert 0 < floor and floor / 3 < twin < 3 * floor
    assert floor < mean["twin_flat"]["wasserstein"]["value"] / 3
    # the real users against themselves, without the twin population: the floor does not read the simulated side
    again = population_realism([{**r, "twin": r["persona"]} for r in records], GENRES, LOG_POP, n_boot=50, seed=0)
    assert {r["statistic"]: r for r in again["rows"]}["mean_rating"]["floor"]["wasserstein"]["value"] == floor
    # without a 'twin_flat' in every record there is no such comparison
    plain = population_realism([{k: v for k, v in r.items() if k != "twin_flat"} for r in records], GENRES, LOG_POP,
                               n_boot=50, seed=0)
    assert plain["comparisons"] == ["floor"] and "twin_minus_twin_flat" not in plain["rows"][0]
