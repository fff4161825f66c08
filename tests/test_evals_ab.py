"""Offline A/B statistics (evals.ab) on constructed data whose answers are known, A/A included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals.ab import (aa_false_positive_rate, ab_table, holm, paired_test, per_user_metrics, session_metrics,
                      simulate_rejection_rates)
from tests.event_fixtures import event_row as _event


def _campaign(delta: float, *, n_users=30, runs=1, seed=3, user_variants=("layered",), run_effect=0.0) -> pd.DataFrame:
    """Users with very different baselines (acceptance 0.1-0.8); 'ampcf' adds ``delta`` acceptance and
    attributes items to personas 0/1, 'mf' attributes nothing; run r adds r * run_effect."""
    rng = np.random.default_rng(seed)
    rows = []
    for uv in user_variants:
        for u in range(n_users):
            base = rng.uniform(0.1, 0.8)
            for variant, extra in (("mf", 0.0), ("ampcf", delta)):
                for r in range(runs):
                    p_accept = np.clip(base + extra + r * run_effect + rng.normal(0, 0.05), 0, 1)
                    n_chosen = int(round(20 * p_accept))
                    slate = [{"id": f"i{j}", "title": "t", "genres": [f"g{j % 4}"],
                              "persona": j % 2 if variant == "ampcf" else None} for j in range(20)]
                    rows.append(_event(variant=variant, user_variant=uv, user_id=f"u{u}", run=r, slate=slate,
                                       chosen=[f"i{j}" for j in range(n_chosen)], ratings={"i0": 4, "i1": 2},
                                       consistency={"reward": 0.5}))
    df = pd.DataFrame(rows)
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)  # pairing must not rely on row order


# ---- holm ------------------------------------------------------------------------------------------


def test_holm_hand_computed():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.01, None, 0.04, float("nan")]) == [pytest.approx(0.02), None, pytest.approx(0.04), None]
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


# ---- paired_test -----------------------------------------------------------------------------------


def test_paired_test_detects_a_planted_shift_and_not_noise():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.3, 40)  # big between-user spread, small paired noise
    shifted = paired_test(a, a + 0.05 + rng.normal(0, 0.02, 40), seed=0)
    assert shifted["ci_low"] > 0 and shifted["p_value"] < 0.001
    assert shifted["ci_low"] < shifted["diff"] < shifted["ci_high"] and shifted["diff"] == pytest.approx(0.05, abs=0.01)
    null = paired_test(a, a + rng.normal(0, 0.02, 40), seed=0)
    assert null["ci_low"] < 0 < null["ci_high"] and null["p_value"] > 0.05
    assert paired_test(a, a + 0.05, seed=7) == paired_test(a, a + 0.05, seed=7)  # seeded


def test_paired_test_exact_small_sample_and_edge_cases():
    # 5 positive differences: of the 2**5 sign flips only all-plus and all-minus reach |mean| = 2.2
    res = paired_test(np.zeros(5), np.array([1.0, 2.0, 3.0, 2.0, 3.0]), seed=0)
    assert res["p_value"] == pytest.approx(2 / 32) and res["n"] == 5
    # NaN pairs are dropped; fewer than two pairs: no statistics
    res = paired_test(np.array([0.0, np.nan, 0.0]), np.array([1.0, 1.0, np.nan]))
    assert res == {"diff": 1.0, "ci_low": None, "ci_high": None, "p_value": None, "n": 1}
    same = paired_test(np.arange(6.0), np.arange(6.0) + 0.1)  # constant difference: the CI is the point
    assert same["ci_low"] == same["ci_high"] == pytest.approx(0.1) and same["p_value"] == pytest.approx(2 / 64)
    zero = paired_test(np.arange(6.0), np.arange(6.0))
    assert zero["diff"] == 0 and zero["p_value"] == 1.0
    assert paired_test(np.arange(6.0), np.arange(6.0) + 1, n_boot=0)["ci_low"] is None
    with pytest.raises(ValueError, match="equal length"):
        paired_test(np.zeros(3), np.zeros(4))


# ---- per-user metrics ------------------------------------------------------------------------------


def test_session_metrics_hand_computed():
    slate = [{"id": "a", "title": "A", "genres": ["x"], "persona": 0},
             {"id": "b", "title": "B", "genres": ["x", "y"], "persona": 0},
             {"id": "c", "title": "C", "genres": ["z"], "persona": 1},
             {"id": "d", "title": "D", "genres": ["z"], "persona": 2}]
    session = pd.DataFrame([
        _event(turn=0, slate=slate, chosen=["a", "b", "nope"], ratings={"a": 5, "b": 3}, consistency={"reward": 0.2}),
        _event(turn=1, slate=slate[2:], chosen=["c"], ratings={"c": 1}, consistency={"prompt_to_line": 0.8}),
        _event(turn=2, slate=slate, chosen=["d"], ok=False, error="x"),  # failed turn: ignored
    ])
    m = session_metrics(session)
    assert m["acceptance_rate"] == pytest.approx(3 / 6)
    assert m["mean_rating"] == pytest.approx(3.0)
    # {x} vs {x,y}: 0.5; {x} vs {z}: 1; {x,y} vs {z}: 1
    assert m["diversity"] == pytest.approx(2.5 / 3)
    assert m["persona_coverage"] == pytest.approx(2 / 3)  # accepted personas {0, 1} of shown {0, 1, 2}
    assert m["consistency"] == pytest.approx(0.5)  # reward 0.2, then prompt_to_line 0.8 as fallback
    one = session_metrics(pd.DataFrame([_event(slate=slate[:1], chosen=["a"])]))
    assert np.isnan(one["diversity"]) and np.isnan(one["consistency"])


def test_per_user_metrics_average_runs_and_skip_nan_runs():
    slate = [{"id": f"i{j}", "title": "t", "genres": [f"g{j}"]} for j in range(5)]
    df = pd.DataFrame([
        _event(run=0, slate=slate, chosen=["i0"]),  # acceptance 0.2, diversity NaN (one item)
        _event(run=1, slate=slate, chosen=["i0", "i1"]),  # acceptance 0.4, diversity 1
        _event(run=0, user_variant="naive", slate=slate, chosen=[]),
    ])
    users = per_user_metrics(df, "mf")
    assert list(users.index) == [("layered", "u"), ("naive", "u")]  # same user_id, different simulated users
    assert users.loc[("layered", "u"), "acceptance_rate"] == pytest.approx(0.3)
    assert users.loc[("layered", "u"), "diversity"] == pytest.approx(1.0)
    assert np.isnan(users.loc[("layered", "u"), "persona_coverage"])  # mf attributes nothing
    with pytest.raises(ValueError, match="'mf\\+dpp' has no events"):
        per_user_metrics(df, "mf+dpp")


# ---- ab_table ----------------------------------------------------------------------------------------


def test_ab_table_detects_planted_effect_pairs_by_user_and_corrects():
    df = _campaign(0.1, user_variants=("layered", "naive"))
    rows = {r["metric"]: r for r in ab_table(df, "mf", "ampcf", seed=0, n_boot=1000, n_perm=1000)}
    assert set(rows["acceptance_rate"]) == {"metric", "control", "treatment", "diff", "ci_low", "ci_high", "p_value",
                                            "p_holm", "n_users"}
    acc = rows["acceptance_rate"]
    assert acc["n_users"] == 60  # 30 user ids x 2 user variants
    assert acc["diff"] == pytest.approx(0.1, abs=0.03) and acc["ci_low"] > 0.05 and acc["p_holm"] < 0.01
    assert acc["treatment"] - acc["control"] == pytest.approx(acc["diff"])
    assert all(r["p_holm"] is None or r["p_holm"] >= r["p_value"] for r in rows.values())
    assert rows["mean_rating"]["diff"] == 0 and rows["mean_rating"]["p_value"] == 1.0
    cov = rows["persona_coverage"]  # mf gives no attribution: no pairs, no test, left out of Holm
    assert cov["n_users"] == 0 and cov["p_value"] is None and cov["p_holm"] is None
    # one null data set (the calibration over many is test_aa_false_positive_rate_is_near_alpha_...)
    null = {r["metric"]: r for r in ab_table(_campaign(0.0, seed=1), "mf", "ampcf", seed=0, n_boot=500, n_perm=500)}
    assert null["acceptance_rate"]["ci_low"] < 0 < null["acceptance_rate"]["ci_high"]
    assert null["acceptance_rate"]["p_holm"] > 0.05


def test_ab_table_errors_name_the_variant():
    df = _campaign(0.1, n_users=4)
    with pytest.raises(ValueError, match="'mf\\+dpp' has no events"):
        ab_table(df, "mf", "mf+dpp")
    disjoint = df.assign(user_id=np.where(df["variant"] == "ampcf", "x" + df["user_id"], df["user_id"]))
    with pytest.raises(ValueError, match="no user met both 'mf' and 'ampcf'"):
        ab_table(disjoint, "mf", "ampcf")


# ---- A/A ---------------------------------------------------------------------------------------------


def test_aa_false_positive_rate_is_near_alpha_and_power_is_high():
    null = simulate_rejection_rates(effect=0.0, n_users=30, n_reps=200, seed=0)
    assert 0.02 <= null["raw_rate"] <= 0.08  # alpha = 0.05; 1000 tests: SE ~ 0.007
    assert null["familywise_rate"] <= 0.09  # Holm keeps the family-wise rate <= alpha (200 reps: SE ~ 0.015)
    assert null["holm_rate"] <= null["raw_rate"]
    planted = simulate_rejection_rates(effect=1.0, n_users=30, n_reps=50, seed=1)
    assert planted["holm_rate"] >= 0.75 and planted["familywise_rate"] >= 0.95


def test_aa_check_on_events_runs_zero_against_one():
    same = aa_false_positive_rate(_campaign(0.0, runs=2), "ampcf", seed=0, n_boot=300, n_perm=300)
    assert same["runs"] == [0, 1] and same["n_metrics"] == 5  # ratings/consistency equal: tested, p = 1
    assert same["false_positive_rate"] == 0.0
    assert {r["metric"] for r in same["rows"]} >= {"acceptance_rate", "persona_coverage"}
    drifted = aa_false_positive_rate(_campaign(0.0, runs=2, run_effect=0.1), "ampcf", seed=0, n_boot=300, n_perm=300)
    assert drifted["false_positive_rate"] > 0  # a planted run-to-run shift is what an A/A must catch
    acc = next(r for r in drifted["rows"] if r["metric"] == "acceptance_rate")
    assert acc["p_value"] < 0.01 and acc["p_holm"] < 0.05 and acc["ci_low"] > 0.05
    assert aa_false_positive_rate(_campaign(0.0, runs=1, n_users=3), "mf") is None  # one run: nothing to compare
