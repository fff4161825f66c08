"""Drift statistics (evals.drift) on constructed data whose answers are known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evals.drift import consistency_by_turn, consistency_trend, drift_report, icc, session_features, variance_ratio
from tests.event_fixtures import event_row as _event


def _events(*, distinct: bool, noise: float, n_personas=3, users=3, runs=4, turns=4, user_variant="layered",
            seed=0) -> pd.DataFrame:
    """Persona p picks genre g{p} and rates 1 + p when ``distinct``; with probability ``noise`` (always when
    not distinct) a turn's pick and ratings are random instead: that is the run-to-run noise."""
    rng = np.random.default_rng(seed)
    genres = [f"g{i}" for i in range(n_personas)]
    rows = []
    for p in range(n_personas):
        for u in range(users):
            for r in range(runs):
                for t in range(turns):
                    slate = [{"id": f"{g}-{t}", "title": g, "genres": [g]} for g in genres]
                    if distinct and rng.random() >= noise:
                        pick, rating, word = genres[p], 1 + p, f"w{p}"
                    else:
                        pick, rating, word = str(rng.choice(genres)), int(rng.integers(1, 6)), f"w{rng.integers(n_personas)}"
                    rows.append(_event(user_variant=user_variant, persona_id=f"p{p}", user_id=f"u{p}-{u}", run=r, turn=t,
                                       slate=slate, chosen=[f"{pick}-{t}"], ratings={s["id"]: rating for s in slate},
                                       utterance=f"I say {word}", consistency={"prompt_to_line": 1.0 - 0.1 * t}))
    return pd.DataFrame(rows)


def _bag_of_words(texts: list[str]) -> np.ndarray:
    """A tiny deterministic 'sentence encoder': counts of w0..w3, shape [n, 4]."""
    return np.array([[t.split().count(f"w{i}") for i in range(4)] for t in texts], dtype=float)


# ---- variance_ratio ---------------------------------------------------------------------------------


def test_variance_ratio_hand_computed_two_dimensions():
    # persona A: unit a1 runs [0,0],[2,0]; unit a2 runs [1,1],[1,3]; persona B: unit b1 runs [10,0],[12,0]
    X = np.array([[0, 0], [2, 0], [1, 1], [1, 3], [10, 0], [12, 0]], dtype=float)
    persona = np.array(["A", "A", "A", "A", "B", "B"])
    unit = np.array(["a1", "a1", "a2", "a2", "b1", "b1"])
    res = variance_ratio(X, persona, unit)
    assert res["within"] == pytest.approx(2.0)  # each unit: trace of its covariance = 2 (ddof=1)
    assert res["between"] == pytest.approx(50.5)  # persona means [1, 1], [11, 0]: var 50 + 0.5
    assert res["ratio_within_over_between"] == pytest.approx(2.0 / 50.5)
    rows = {r["persona_id"]: r for r in res["per_persona"]}
    assert rows["A"] == {"persona_id": "A", "ratio": pytest.approx(2 / 50.5), "within": 2.0, "n_users": 2, "n_runs": 2}
    assert rows["B"]["n_users"] == 1 and "reason" not in res


def test_variance_ratio_from_known_variance_components():
    # persona effect variance 4, run noise variance 1, 5 runs per user: within -> 1, between -> 4 + 1/10
    rng = np.random.default_rng(0)
    n_p, users, runs = 300, 2, 5
    persona = np.repeat(np.arange(n_p), users * runs)
    unit = np.repeat(np.arange(n_p * users), runs)
    X = rng.normal(0, 2, n_p)[persona] + rng.normal(0, 1, len(persona))
    res = variance_ratio(X, persona, unit)
    assert res["within"] == pytest.approx(1.0, abs=0.06)
    assert res["ratio_within_over_between"] == pytest.approx(1 / 4.1, abs=0.04)


def test_variance_ratio_edge_cases():
    X = np.array([0.0, 2.0, 10.0, 12.0])
    one = variance_ratio(X, np.array(["A"] * 4), np.array(["a1", "a1", "a2", "a2"]))
    assert one["ratio_within_over_between"] is None and one["between"] is None and "two personas" in one["reason"]
    assert one["within"] == pytest.approx(2.0)
    single_run = variance_ratio(X, np.array(["A", "A", "B", "B"]), np.array(["a1", "a2", "b1", "b2"]))
    assert single_run["within"] is None and single_run["ratio_within_over_between"] is None
    assert "two runs" in single_run["reason"] and single_run["per_persona"][0]["n_users"] == 0
    same = variance_ratio(np.array([0.0, 2.0, 2.0, 0.0]), np.array(["A", "A", "B", "B"]), np.array(["a", "a", "b", "b"]))
    assert same["ratio_within_over_between"] is None and "zero" in same["reason"]
    with_nan = variance_ratio(np.array([0.0, 2.0, np.nan, 10.0, 12.0]), np.array(["A", "A", "A", "B", "B"]),
                              np.array(["a", "a", "a", "b", "b"]))
    assert with_nan["n_sessions"] == 4 and with_nan["ratio_within_over_between"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="differ in length"):
        variance_ratio(X, np.array(["A"] * 3), np.array(["a"] * 4))


# ---- icc -------------------------------------------------------------------------------------------


def test_icc_hand_computed_and_against_one_way_anova():
    X, groups = np.array([1.0, 3.0, 5.0, 7.0]), np.array([0, 0, 1, 1])
    # MSB = 16, MSW = 2, k = 2: (16 - 2) / (16 + 2)
    assert icc(X, groups) == pytest.approx(14 / 18)
    f = stats.f_oneway([1.0, 3.0], [5.0, 7.0]).statistic  # ICC(1) = (F - 1) / (F + k - 1)
    assert icc(X, groups) == pytest.approx((f - 1) / (f + 1))
    # unbalanced: sizes 2, 3; MSB = 30, MSW = 10/3, k0 = 2.4 -> 10/13
    assert icc(np.array([1.0, 3.0, 5.0, 7.0, 9.0]), np.array([0, 0, 1, 1, 1])) == pytest.approx(10 / 13)


def test_icc_multivariate_sums_mean_squares():
    X, groups = np.array([1.0, 3.0, 5.0, 7.0]), np.array([0, 0, 1, 1])
    assert icc(np.c_[X, X], groups) == pytest.approx(14 / 18)  # both MS double
    assert icc(np.c_[X, np.full(4, 9.0)], groups) == pytest.approx(14 / 18)  # a constant column adds nothing
    # second column: all between-variance zero, within 2 -> MSB 16, MSW 4: (16 - 4) / (16 + 4)
    assert icc(np.c_[X, [0.0, 2.0, 0.0, 2.0]], groups) == pytest.approx(12 / 20)


def test_icc_recovers_known_variance_components():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(400), 5)
    X = rng.normal(0, np.sqrt(3.0), 400)[groups] + rng.normal(0, 1.0, len(groups))
    assert icc(X, groups) == pytest.approx(0.75, abs=0.04)  # sigma_b^2 / (sigma_b^2 + sigma_w^2)
    null = rng.normal(0, 1.0, len(groups))
    assert icc(null, groups) == pytest.approx(0.0, abs=0.05)


def test_icc_edge_cases():
    assert icc(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 0])) is None  # one group
    assert icc(np.array([1.0, 2.0]), np.array([0, 1])) is None  # no group has two rows
    assert icc(np.ones(4), np.array([0, 0, 1, 1])) is None  # 0 / 0
    assert icc(np.array([1.0, 3.0, np.nan, 5.0, 7.0]), np.array([0, 0, 0, 1, 1])) == pytest.approx(14 / 18)


# ---- session features and consistency ------------------------------------------------------------------


def test_session_features_hand_computed():
    slate = [{"id": "i1", "title": "a", "genres": ["a", "b"]}, {"id": "i2", "title": "b", "genres": ["a"]},
             {"id": "i3", "title": "c", "genres": ["c"]}]
    df = pd.DataFrame([
        _event(turn=0, slate=slate, chosen=["i1", "zz"], ratings={"i1": 5, "i2": 3, "i3": 1}, utterance="w0 w0"),
        _event(turn=1, slate=slate[1:], chosen=["i2"], ratings={"i2": 4, "i3": 2}, utterance="w1"),
        _event(turn=2, slate=slate, chosen=["i3"], ratings={"i3": 5}, ok=False, error="bad json"),  # ignored
        _event(run=1, slate=slate, chosen=[], ratings={"i1": 1}, utterance=""),
    ])
    feats = session_features(df, embed=_bag_of_words)
    assert list(feats["run"]) == [0, 1]
    s0, s1 = feats.iloc[0], feats.iloc[1]
    np.testing.assert_allclose(s0["genres"], [0.75, 0.25, 0.0])  # i1 -> a, b halves; i2 -> a; 'zz' not shown
    assert s0["acceptance"] == pytest.approx(2 / 5) and s0["rating"] == pytest.approx(3.0 / 5)
    np.testing.assert_allclose(s0["embedding"], [1.0, 0.5, 0, 0])  # mean of [2,0,0,0] and [0,1,0,0]
    assert np.isnan(s1["genres"]).all() and s1["acceptance"] == 0.0 and np.isnan(s1["embedding"]).all()
    with pytest.raises(ValueError, match="missing column"):
        session_features(df.drop(columns="slate"))


def test_consistency_by_turn_and_trend():
    df = pd.DataFrame([
        _event(turn=0, consistency={"prompt_to_line": 1.0, "qa": None}),
        _event(turn=0, user_id="v", consistency={"prompt_to_line": 0.8, "reward": 0.5}),
        _event(turn=1, consistency={"prompt_to_line": 0.7}),
        _event(turn=2, consistency={"prompt_to_line": 0.5, "reward": float("nan")}),
        _event(turn=2, user_id="v", consistency={"prompt_to_line": 0.0}, ok=False),
    ])
    by_turn = consistency_by_turn(df)
    assert by_turn == {"prompt_to_line": {0: pytest.approx(0.9), 1: 0.7, 2: 0.5}, "reward": {0: 0.5}}
    trend = consistency_trend(by_turn)
    assert trend["prompt_to_line"] == pytest.approx(-0.2) and trend["reward"] is None


# ---- drift_report on constructed campaigns -----------------------------------------------------------


def test_distinct_personas_with_tiny_run_noise_have_low_ratio_and_high_icc():
    rep = drift_report(_events(distinct=True, noise=0.05), embed=_bag_of_words)
    assert rep["ratio_within_over_between"] < 0.1 and rep["icc"] > 0.9
    for name in ("genres", "ratings", "embeddings"):
        assert rep["by_feature"][name]["ratio"] < 0.2 and rep["by_feature"][name]["icc"] > 0.8, name
    accept = rep["by_feature"]["acceptance"]  # everyone picks 1 of 3 (sums of 1/3): no variance at all
    assert accept["ratio"] is None and accept["icc"] is None and "zero" in accept["reason"]
    rows = rep["per_persona"]
    assert [r["persona_id"] for r in rows] == ["p0", "p1", "p2"]
    assert all(r["n_users"] == 3 and r["n_runs"] == 4 and r["ratio"] < 0.2 for r in rows)
    assert rep["consistency_by_turn"]["prompt_to_line"] == pytest.approx({0: 1.0, 1: 0.9, 2: 0.8, 3: 0.7})
    assert rep["consistency_trend"]["prompt_to_line"] == pytest.approx(-0.1)


def test_identical_personas_with_run_noise_warn():
    rep = drift_report(_events(distinct=False, noise=1.0, users=4), embed=_bag_of_words)
    assert rep["ratio_within_over_between"] >= 1.0 and abs(rep["icc"]) < 0.1
    for name in ("genres", "ratings", "embeddings"):
        assert rep["by_feature"][name]["ratio"] >= 1.0, name


def test_naive_versus_layered_in_one_report_and_strict_json():
    layered = _events(distinct=True, noise=0.1, user_variant="layered", seed=1)
    naive = _events(distinct=True, noise=0.9, user_variant="naive", seed=2)
    rep = drift_report(pd.concat([layered, naive], ignore_index=True))
    by_uv = rep["by_user_variant"]
    assert set(by_uv) == {"layered", "naive"}
    assert by_uv["layered"]["ratio_within_over_between"] < 0.5 <= by_uv["naive"]["ratio_within_over_between"]
    assert by_uv["layered"]["icc"] > by_uv["naive"]["icc"]
    assert {r["persona_id"] for r in by_uv["naive"]["per_persona"]} == {"p0", "p1", "p2"}
    assert by_uv["naive"]["n_sessions"] == 3 * 3 * 4  # 3 personas x 3 users x 4 runs
    assert "embeddings" not in rep["by_feature"]
    json.dumps(rep, allow_nan=False)  # no NaN or inf anywhere: None instead


def test_report_with_one_run_names_the_reason():
    rep = drift_report(_events(distinct=True, noise=0.1, runs=1))
    assert rep["ratio_within_over_between"] is None and "two runs" in rep["reason"]
    assert rep["icc"] is not None  # sessions of one persona still group
    json.dumps(rep, allow_nan=False)
