"""Drift statistics (evals.validity.drift) on constructed data whose answers are known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evals.validity.drift import drift_report, drift_verdict, icc, null_ratio, ratio_ci, variance_ratio
from evals.validity.drift_features import consistency_by_turn, consistency_trend, session_features
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


# ---- the identical-persona null and the ratio's CI ------------------------------------------------------


def _numeric(*, personas=3, users=3, runs=3, effect=0.0, dims=5, seed=0):
    """Session rows [n, dims]: persona p adds ``effect`` on dimension p; run noise N(0, 1) per dimension.
    Returns X, persona, unit (one unit per user)."""
    rng = np.random.default_rng(seed)
    persona = np.repeat(np.arange(personas), users * runs)
    unit = np.repeat(np.arange(personas * users), runs)
    return effect * np.eye(personas, dims)[persona] + rng.normal(0, 1, (len(unit), dims)), persona, unit


def test_null_exact_on_a_hand_checked_design():
    # 2 personas x 2 users x 2 runs: C(4, 2) = 6 assignments of users to personas; the observed one (low users
    # in A, high in B) and its label swap give the largest between, so p = 2/6 and no design outcome goes lower
    X = np.array([0.0, 1.0, 0.5, 1.5, 10.0, 11.0, 10.5, 11.5])
    persona, unit = np.repeat(["A", "B"], 4), np.repeat(["a1", "a2", "b1", "b2"], 2)
    null = null_ratio(X, persona, unit)
    assert null["exact"] and null["n_perm"] == 6
    assert null["p_value"] == pytest.approx(2 / 6) and null["min_p"] == pytest.approx(2 / 6)
    # the other 4 assignments mix one low and one high user into each persona: means 5.75 and 5.75 (two of
    # them) or 5.5 and 6.0 (two): between 0 -> infinite ratio, or 0.125 -> within 0.5 / 0.125 = 4
    within = variance_ratio(X, persona, unit)["within"]
    assert within == pytest.approx(0.5)
    assert null["mean"] == pytest.approx((2 * within / 50.0 + 2 * 4.0) / 4)  # over the 4 finite ratios
    assert null["q975"] is None  # the top 2.5% are the infinite ratios: strict JSON, no inf
    verdict = drift_verdict(variance_ratio(X, persona, unit)["ratio_within_over_between"], None, null,
                            ratio_ci(X, persona, unit))
    assert verdict.startswith("not distinguishable") and "cannot reach p <= 0.05" in verdict


def test_null_counts_assignments_and_switches_to_monte_carlo():
    X, persona, unit = _numeric(personas=3, users=2, runs=2, effect=3.0)  # 6! / (2! 2! 2!) = 90 assignments
    exact = null_ratio(X, persona, unit)
    assert exact["exact"] and exact["n_perm"] == 90
    assert exact["p_value"] == pytest.approx(6 / 90) == exact["min_p"]  # the 3! label swaps tie with the observed
    mc = null_ratio(X, persona, unit, n_perm=50, seed=1)
    assert not mc["exact"] and mc["n_perm"] == 50
    assert mc["min_p"] == pytest.approx(6 / 90)  # the label swaps, known without enumerating
    assert mc["p_value"] >= 1 / 51
    big = null_ratio(*_numeric(personas=3, users=6, runs=2, effect=3.0))  # 18! / (6!)^3 assignments: sampled
    assert not big["exact"] and big["n_perm"] == 2000 and big["min_p"] == pytest.approx(1 / 2001)
    assert big["p_value"] == pytest.approx(1 / 2001)  # far apart personas: no sampled assignment as extreme
    assert null_ratio(X, persona, unit, n_perm=50, seed=1) == mc  # seeded
    for n_personas in (3, 8):  # one user per persona: every assignment relabels personas (8! > 2000: Monte Carlo)
        one_user_each = null_ratio(*_numeric(personas=n_personas, users=1, runs=4, dims=8, effect=3.0))
        assert one_user_each["exact"] == (n_personas == 3)
        assert one_user_each["p_value"] == 1.0 and one_user_each["min_p"] == 1.0
    with pytest.raises(ValueError, match="not nested"):
        null_ratio(X, persona, np.zeros(len(X)))  # one unit spanning all personas


def test_detectable_ratio_is_where_the_p_value_crosses_alpha():
    """null_ratio's detectable_below is the design's minimum detectable effect: an observed ratio below it, and
    only such a ratio, gives p <= 0.05 against the same null ratios (checked across effects, exact and sampled)."""
    checked = {True: 0, False: 0}
    for effect in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0):
        for users, n_perm in ((3, 2000), (4, 500)):  # 9! / (3!)^3 = 1680 assignments: exact; 12! / (4!)^3: sampled
            X, persona, unit = _numeric(personas=3, users=users, runs=2, effect=effect, seed=int(effect * 10))
            null = null_ratio(X, persona, unit, n_perm=n_perm, seed=0)
            ratio = variance_ratio(X, persona, unit)["ratio_within_over_between"]
            assert null["detectable_below"] is not None and null["q025"] <= null["detectable_below"] <= null["mean"] * 2
            assert (null["p_value"] <= 0.05) == (ratio < null["detectable_below"]), (effect, users, null, ratio)
            checked[null["p_value"] <= 0.05] += 1
    assert checked[True] and checked[False]  # both sides of the line were seen
    X = np.array([0.0, 1.0, 0.5, 1.5, 10.0, 11.0, 10.5, 11.5])  # 6 assignments: p cannot reach 0.05
    assert null_ratio(X, np.repeat(["A", "B"], 4), np.repeat(["a1", "a2", "b1", "b2"], 2))["detectable_below"] is None


def test_null_is_calibrated_for_identical_personas():
    # users differ (variance 0.25) but personas do not: the p-value is uniform, so p <= 0.05 about 5% of the time
    p = []
    for seed in range(200):
        X, persona, unit = _numeric(users=4, runs=3, seed=seed)
        X = X + np.random.default_rng(1000 + seed).normal(0, 0.5, (unit.max() + 1, X.shape[1]))[unit]
        p.append(null_ratio(X, persona, unit, n_perm=300, seed=seed)["p_value"])
    p = np.array(p)
    assert 0.01 <= (p <= 0.05).mean() <= 0.1 and 0.4 <= p.mean() <= 0.6


def test_identical_personas_sit_inside_the_null_and_are_not_distinguished():
    inside, small_p = [], []
    for seed in range(30):
        rep = drift_report(_events(distinct=False, noise=1.0, users=4, seed=seed), seed=seed, n_perm=500, n_boot=50)
        ratio, null = rep["ratio_within_over_between"], rep["null"]
        inside.append(null["q025"] <= ratio <= null["q975"])
        small_p.append(null["p_value"] <= 0.05)
        assert rep["verdict"].startswith("not distinguishable") == (null["p_value"] > 0.05)
    assert np.mean(inside) >= 0.8 and np.mean(small_p) <= 0.15  # 95% and 5% in expectation


def test_separated_personas_fall_far_below_the_null():
    rep = drift_report(_events(distinct=True, noise=0.05))
    ratio, null = rep["ratio_within_over_between"], rep["null"]
    assert null["exact"] and null["n_perm"] == 1680  # 9 users: 9! / (3! 3! 3!)
    assert ratio < null["q025"] and ratio < null["mean"] / 20 and null["p_value"] < 0.05
    assert rep["verdict"].startswith("personas distinguishable: ratio ")
    assert "below the identical-persona null" in rep["verdict"]
    low, high = rep["ratio_ci"]
    assert low <= ratio <= high
    for uv in rep["by_user_variant"].values():
        assert set(uv["null"]) == {"mean", "q025", "q975", "p_value", "min_p", "n_perm", "exact", "detectable_below"} and uv["verdict"]


def test_null_mean_grows_with_sessions_per_persona():
    # identical personas, users alike: the docstring's null is of order U R (sessions per persona)
    means = []
    for runs in (2, 4, 8):
        rep = drift_report(_events(distinct=False, noise=1.0, n_personas=5, users=3, runs=runs), n_perm=1000, n_boot=10)
        means.append(rep["null"]["mean"])
        assert 0.7 <= rep["null"]["mean"] / (3 * runs) <= 2.5
    assert means[0] < means[1] < means[2] and means[2] > 2 * means[0]


def test_ratio_ci_contains_the_ratio_and_narrows_with_more_users():
    widths = {}
    for users in (4, 64):
        w = []
        for seed in range(4):
            X, persona, unit = _numeric(users=users, effect=1.0, seed=seed)
            ratio = variance_ratio(X, persona, unit)["ratio_within_over_between"]
            low, high = ratio_ci(X, persona, unit, n_boot=1000, seed=seed)
            assert low <= ratio <= high
            w.append((high - low) / ratio)
        widths[users] = np.mean(w)
    assert widths[64] < 0.6 * widths[4]  # 16x the users: about 1/4 the width asymptotically
    assert ratio_ci(X, persona, unit, seed=3) == ratio_ci(X, persona, unit, seed=3)


def test_undefined_ratio_has_no_null_and_says_why():
    rep = drift_report(_events(distinct=True, noise=0.1, runs=1))
    assert rep["null"] is None and rep["ratio_ci"] is None
    assert rep["verdict"] == f"undefined: {rep['reason']}"
    one = drift_report(_events(distinct=True, noise=0.1, n_personas=1))
    assert one["verdict"].startswith("undefined: fewer than two personas")


def test_null_permutes_users_not_user_variant_units():
    # personas identical, users very different, each user seen under 2 recommender variants x 2 runs: the two
    # units of a user share the user, so permuting units apart would call personas distinguishable
    p_user, p_unit = [], []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        user = np.repeat(np.arange(12), 4)
        persona, unit = user // 4, np.repeat(np.arange(24), 2)
        X = rng.normal(0, 2, (12, 3))[user] + rng.normal(0, 1, (len(user), 3))
        p_user.append(null_ratio(X, persona, unit, block=user, n_perm=300, seed=seed)["p_value"])
        p_unit.append(null_ratio(X, persona, unit, n_perm=300, seed=seed)["p_value"])
    assert np.mean(np.array(p_user) <= 0.05) <= 0.1 < 0.25 <= np.mean(np.array(p_unit) <= 0.05)
    # and drift_report permutes users: 9 users x 2 variants still give 9! / (3! 3! 3!) assignments
    events = _events(distinct=True, noise=0.05)
    rep = drift_report(pd.concat([events, events.assign(variant="ampcf")], ignore_index=True), n_boot=50)
    assert rep["null"]["exact"] and rep["null"]["n_perm"] == 1680
