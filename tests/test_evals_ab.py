"""Offline A/B statistics (evals.campaign.ab) on constructed data whose answers are known, A/A included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals.campaign.ab import aa_false_positive_rate, ab_table, per_user_metrics, session_metrics
from evals.stats.testing import holm, mde, min_p, paired_test, simulate_rejection_rates
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
                              "component": j % 2 if variant == "ampcf" else None} for j in range(20)]
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
    slate = [{"id": "a", "title": "A", "genres": ["x"], "component": 0},
             {"id": "b", "title": "B", "genres": ["x", "y"], "component": 0},
             {"id": "c", "title": "C", "genres": ["z"], "component": 1},
             {"id": "d", "title": "D", "genres": ["z"], "component": 2}]
    session = pd.DataFrame([
        _event(turn=0, slate=slate, chosen=["a", "b", "nope"], ratings={"a": 5, "b": 4, "c": 2, "d": 5},
               consistency={"reward": 0.2}),
        _event(turn=1, slate=slate[2:], chosen=["c"], ratings={"c": 4, "d": 5},
               consistency={"prompt_to_line": 0.8}),
        _event(turn=2, slate=slate, chosen=["d"], ok=False, error="x"),  # failed turn: ignored
    ])
    m = session_metrics(session)
    assert m["acceptance_rate"] == pytest.approx(3 / 6)
    assert m["like_rate"] == pytest.approx(3 / 6)  # a, b, then c; d is rated 5 twice but never chosen
    w = 1 / np.log2(np.arange(4) + 2)  # position weights 1, 1/log2(3), 1/2, 1/log2(5)
    assert m["position_weighted_likes"] == pytest.approx((w[0] + w[1] + w[0]) / (w.sum() + w[:2].sum()))
    assert m["mean_rating"] == pytest.approx(25 / 6)
    # liked a {x}, b {x,y}, c {z}: {x} vs {x,y}: 0.5; {x} vs {z}: 1; {x,y} vs {z}: 1
    assert m["diversity"] == pytest.approx(2.5 / 3)
    assert m["mixture_acceptance"] == pytest.approx(2 / 3)  # accepted components {0, 1} of shown {0, 1, 2}
    assert m["consistency"] == pytest.approx(0.5)  # reward 0.2, then prompt_to_line 0.8 as fallback
    one = session_metrics(pd.DataFrame([_event(slate=slate[:1], chosen=["a"])]))
    assert np.isnan(one["diversity"]) and np.isnan(one["consistency"])


def test_per_user_metrics_average_runs_and_skip_nan_runs():
    slate = [{"id": f"i{j}", "title": "t", "genres": [f"g{j}"]} for j in range(5)]
    df = pd.DataFrame([
        _event(run=0, slate=slate, chosen=["i0"], ratings={"i0": 5}),  # acceptance 0.2, diversity NaN (one item)
        _event(run=1, slate=slate, chosen=["i0", "i1"], ratings={"i0": 4, "i1": 4}),  # acceptance 0.4, diversity 1
        _event(run=0, user_variant="naive", slate=slate, chosen=[]),
    ])
    users = per_user_metrics(df, "mf")
    assert list(users.index) == [("layered", "u"), ("naive", "u")]  # same user_id, different simulated users
    assert users.loc[("layered", "u"), "acceptance_rate"] == pytest.approx(0.3)
    assert users.loc[("layered", "u"), "diversity"] == pytest.approx(1.0)
    assert np.isnan(users.loc[("layered", "u"), "mixture_acceptance"])  # mf attributes nothing
    with pytest.raises(ValueError, match="'mf\\+dpp' has no events"):
        per_user_metrics(df, "mf+dpp")


# ---- ab_table ----------------------------------------------------------------------------------------


def _row(rows: list[dict], metric: str = "acceptance_rate") -> dict:
    return next(r for r in rows if r["metric"] == metric)


def test_ab_table_detects_planted_effect_pairs_by_user_and_corrects():
    df = _campaign(0.1, user_variants=("layered", "naive"))
    rows = {r["metric"]: r for r in ab_table(df, "mf", "ampcf", seed=0, n_boot=1000, n_perm=1000)}
    assert set(rows["acceptance_rate"]) == {"metric", "control", "treatment", "diff", "sd_diff", "ci_low", "ci_high",
                                            "p_value", "p_holm", "n_users", "min_p", "min_p_holm", "can_reach_alpha",
                                            "mde", "verdict"}
    acc = rows["acceptance_rate"]
    assert acc["n_users"] == 60  # 30 user ids x 2 user variants
    # the campaign's tables: one population at a time, never pooled
    naive = _row(ab_table(df, "mf", "ampcf", seed=0, n_boot=200, n_perm=200, user_variant="naive"))
    assert naive["n_users"] == 30
    with pytest.raises(ValueError, match="user variant 'grounded' has no events; present: \\['layered', 'naive'\\]"):
        ab_table(df, "mf", "ampcf", user_variant="grounded")
    assert acc["diff"] == pytest.approx(0.1, abs=0.03) and acc["ci_low"] > 0.05 and acc["p_holm"] < 0.01
    assert acc["treatment"] - acc["control"] == pytest.approx(acc["diff"])
    assert all(r["p_holm"] is None or r["p_holm"] >= r["p_value"] for r in rows.values())
    assert rows["mean_rating"]["diff"] == 0 and rows["mean_rating"]["p_value"] == 1.0
    cov = rows["mixture_acceptance"]  # mf gives no attribution: no pairs, no test, left out of Holm
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
    assert same["runs"] == [0, 1] and same["n_metrics"] == 6  # ratings/consistency equal: tested, p = 1
    assert same["false_positive_rate"] == 0.0
    assert {r["metric"] for r in same["rows"]} >= {"acceptance_rate", "mixture_acceptance"}
    drifted = aa_false_positive_rate(_campaign(0.0, runs=2, run_effect=0.1), "ampcf", seed=0, n_boot=300, n_perm=300)
    assert drifted["false_positive_rate"] > 0  # a planted run-to-run shift is what an A/A must catch
    acc = next(r for r in drifted["rows"] if r["metric"] == "acceptance_rate")
    assert acc["p_value"] < 0.01 and acc["p_holm"] < 0.05 and acc["ci_low"] > 0.05
    assert aa_false_positive_rate(_campaign(0.0, runs=1, n_users=3), "mf") is None  # one run: nothing to compare


# ---- power: what the design can detect ----------------------------------------------------------------


def test_min_p_and_mde_hand_computed():
    assert min_p(6) == 2 / 64 and min_p(8) == 2 / 256 and min_p(1) == 1.0 and min_p(0) is None
    assert min_p(10, n_perm=2000) == 2 / 1024  # 1024 sign vectors <= 2000: exact
    assert min_p(12, n_perm=2000) == pytest.approx(2 / 2001)  # Monte Carlo: scipy's (1 + k) / (1 + n) per side
    assert min_p(2000) == 0.0  # no overflow
    # (z_0.975 + z_0.8) * 1 / sqrt(4) with m = 1; with m = 4 the level is 0.05 / 4
    assert mde(1.0, 4, 1) == pytest.approx((1.959964 + 0.841621) / 2, abs=1e-5)
    assert mde(1.0, 4, 4) == pytest.approx((2.497705 + 0.841621) / 2, abs=1e-5)
    assert mde(1.0, 1, 4) is None and mde(None, 10, 4) is None


def test_six_paired_users_cannot_reach_alpha():
    rows = {r["metric"]: r for r in ab_table(_campaign(0.3, n_users=6), "mf", "ampcf", seed=0, n_boot=200)}
    acc = rows["acceptance_rate"]  # a huge effect: every user's difference is positive
    assert acc["n_users"] == 6 and acc["p_value"] == pytest.approx(2 / 64)  # as small as 6 pairs allow
    assert acc["min_p"] == pytest.approx(2 / 64)
    # Holm over 5 tested metrics (mixture_acceptance untested; diversity of likes: one liked item a session)
    assert acc["min_p_holm"] == pytest.approx(5 * 2 / 64)
    assert acc["can_reach_alpha"] is False and acc["mde"] is None
    assert acc["verdict"] == ("design cannot reach alpha=0.05 (n=6 paired users, Holm over 5 metrics: smallest "
                              "possible p 0.156): no conclusion")
    cov = rows["mixture_acceptance"]
    assert cov["min_p"] is None and cov["can_reach_alpha"] is False and cov["verdict"].startswith("no test")
    assert not any("not significant" in r["verdict"] for r in rows.values())


def test_eight_paired_users_can_reach_alpha():
    rows = {r["metric"]: r for r in ab_table(_campaign(0.3, n_users=8), "mf", "ampcf", seed=0, n_boot=200)}
    acc = rows["acceptance_rate"]
    assert acc["min_p_holm"] == pytest.approx(5 * 2 / 256) and acc["can_reach_alpha"] is True
    assert acc["p_holm"] == pytest.approx(5 * 2 / 256) and acc["verdict"] == "significant (p_holm=0.039)"
    assert acc["mde"] == pytest.approx(mde(acc["sd_diff"], 8, 5))
    rating = rows["mean_rating"]  # every user rates the same in both arms: nothing to detect, and it says so
    assert rating["can_reach_alpha"] and rating["verdict"].startswith("not significant (p_holm=1)")


def test_holm_bound_holds_on_every_row():
    # min_p_holm is a floor: no row's p_holm is below it, and only rows that can reach alpha are significant,
    # including metrics whose n differs (diversity drops users who accepted fewer than two items)
    for n_users in (5, 6, 7, 8, 12):
        for delta in (0.0, 0.3):
            for r in ab_table(_campaign(delta, n_users=n_users, seed=n_users), "mf", "ampcf", seed=0, n_boot=0):
                if r["p_value"] is None:
                    continue
                assert r["p_holm"] >= r["min_p_holm"] - 1e-12, r
                assert r["p_holm"] > 0.05 or r["can_reach_alpha"], r


def test_mde_shrinks_as_one_over_root_n():
    mdes = {n: _row(ab_table(_campaign(0.0, n_users=n, seed=5), "mf", "ampcf", seed=0, n_boot=0, n_perm=200))
            for n in (30, 480)}
    assert mdes[30]["metric"] == "acceptance_rate"
    ratio = mdes[30]["mde"] / mdes[480]["mde"]
    assert 3.0 <= ratio <= 5.3  # sqrt(480 / 30) = 4, times the ratio of the two sd estimates
    assert "could have detected |diff| >= " in mdes[480]["verdict"]


def test_planted_effect_larger_than_the_mde_is_detected():
    probe = _row(ab_table(_campaign(0.0, n_users=20, seed=100), "mf", "ampcf", n_boot=0, n_perm=500))
    detected = {}
    for factor in (0.5, 1.5):
        detected[factor] = np.mean([
            _row(ab_table(_campaign(factor * probe["mde"], n_users=20, seed=s), "mf", "ampcf", n_boot=0, n_perm=500))
            ["p_holm"] <= 0.05 for s in range(12)])
    assert detected[1.5] >= 0.9  # power at the MDE is 0.8 by construction; 1.5x it is ~0.99
    assert detected[0.5] <= 0.6


def test_aa_check_says_when_it_cannot_reach_alpha():
    small = aa_false_positive_rate(_campaign(0.0, n_users=6, runs=2), "mf", seed=0, n_boot=100)
    assert small["can_reach_alpha"] is False and small["n_reachable"] == 0
    assert small["false_positive_rate"] is None and small["min_p_holm"] == pytest.approx(5 * 2 / 64)
    assert "cannot reach alpha=0.05" in small["verdict"] and "says nothing" in small["verdict"]
    big = aa_false_positive_rate(_campaign(0.0, n_users=30, runs=2), "mf", seed=0, n_boot=100)
    assert big["can_reach_alpha"] and big["false_positive_rate"] == 0.0
    assert big["verdict"].startswith("0 of 5 metrics significant after Holm")


def test_rendered_summary_of_a_six_user_campaign_never_reads_no_difference(tmp_path):
    from evals.validity.drift import drift_report
    from evals.report.render import render_report

    df = _campaign(0.0, n_users=6, runs=2)
    df["persona_id"] = "p" + (df["user_id"].str[1:].astype(int) % 3).astype(str)  # 3 personas x 2 users
    ab = {"control": "mf", "treatment": "ampcf", "seed": 0, "rows": ab_table(df, "mf", "ampcf", n_boot=200)}
    summary = {
        "header": {"name": "six", "config_hash": "h", "code": "c0de", "seed": 0, "backend": "test", "model": "m",
                   "content_digest": "0" * 16, "runtime": "not recorded",
                   "n_events": len(df), "n_failed": 0, "n_sessions": 24, "tokens_in": 0, "tokens_out": 0, "mixture_k": 2},
        "offline": [], "by_variant": [], "attribution": [],
        "drift": drift_report(df), "ab": [ab], "aa": aa_false_positive_rate(df, "mf", n_boot=100),
    }
    html_path, md_path = render_report(summary, tmp_path)
    for text in (md_path.read_text(), html_path.read_text()):
        lowered = text.lower()
        assert "no significant difference" not in lowered and "no metric differs" not in lowered
        assert "not significant" not in lowered  # no row of this design can reach alpha
        assert "cannot reach alpha=0.05 (n=6 paired users, holm over 5 metrics" in lowered
        assert "no false positive was possible" in lowered  # the A/A line
        assert "not distinguishable from identical personas" in lowered  # drift: 90 assignments, min p 6/90
        assert "cannot reach p &lt;= 0.05" in lowered or "cannot reach p <= 0.05" in lowered
    md = md_path.read_text()
    assert "| mde | min_p_holm |" in md and "- acceptance_rate: design cannot reach alpha" in md


def test_bootstrap_ci_resamples_records_and_drops_draws_where_the_statistic_is_undefined():
    from evals.stats.bootstrap import bootstrap_ci

    values = list(np.random.default_rng(0).normal(1.0, 1.0, 200))
    point, lo, hi = bootstrap_ci(values, np.mean, n_boot=1000, seed=0)
    se = np.std(values) / np.sqrt(len(values))
    assert point == np.mean(values) and lo < point < hi
    assert abs((hi - lo) - 2 * 1.96 * se) < 0.3 * 2 * 1.96 * se  # a 95% interval, about +-1.96 standard errors
    assert bootstrap_ci(values, np.mean, n_boot=1000, seed=0) == (point, lo, hi)  # seeded
    # an AUC-like statistic, undefined on a resample holding one class only: those draws are dropped, not NaN
    labels = [1, 0, 0, 0]
    auc_like = lambda rs: None if len(set(rs)) < 2 else float(np.mean(rs))  # noqa: E731
    _, lo2, hi2 = bootstrap_ci(labels, auc_like, n_boot=200, seed=1)
    assert np.isfinite(lo2) and np.isfinite(hi2) and 0 < lo2 <= hi2 < 1
    assert all(np.isnan(x) for x in bootstrap_ci([0, 0], auc_like, n_boot=50, seed=0)[1:])


def test_bootstrap_mean_ci_is_bootstrap_ci_of_the_mean_with_the_same_resamples():
    from evals.stats.bootstrap import bootstrap_ci, bootstrap_mean_ci

    values = list(np.random.default_rng(2).exponential(1.0, 97))
    fast = bootstrap_mean_ci(values, n_boot=500, seed=4)
    slow = bootstrap_ci(values, lambda vs: float(np.mean(vs)), n_boot=500, seed=4)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert bootstrap_mean_ci(values, n_boot=500, seed=5) != fast  # the seed picks the resamples
    assert all(np.isnan(x) for x in bootstrap_mean_ci([], n_boot=10, seed=0))
