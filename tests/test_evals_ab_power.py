"""The A/B's power and A/A calibration (evals.campaign.ab_power) on calibrated twins of a small fidelity run."""

from __future__ import annotations

import numpy as np
import pytest

from evals.campaign.ab_power import Design, ab_power, check_design, degrade, load_twins, mf_rankings, replicate_events


@pytest.fixture(scope="module")
def world(fidelity_run):
    from evals.validity.grounding import split_for
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens
    from recsys.offline import DEFAULT_TRAIN

    out, _ = fidelity_run
    ppath = out / "personas" / "personas.jsonl"
    ds = load_movielens(ml100k_dir())
    split = split_for(ds, ppath)
    twins = load_twins(ds, split, ppath)
    design = Design(users_per_persona=4, turns=3, slate_size=5, runs=2)  # 2 turns: power about 0.7 since persons differ
    return twins, mf_rankings(ds, split, twins, design, DEFAULT_TRAIN), design


def test_degrade_replaces_the_share_with_fresh_items():
    page, pool = np.arange(10), np.arange(100)
    worse = degrade(page, pool, 0.3, np.random.default_rng(0))
    changed = worse != page
    assert changed.sum() == 3 and not set(worse[changed]) & set(page)  # three positions, items new to the page
    assert len(set(worse)) == 10
    assert (degrade(page, pool, 0.3, np.random.default_rng(0)) == worse).all()  # seeded
    assert (degrade(page, pool, 0.0, np.random.default_rng(0)) == page).all()


def test_replicate_pairs_runs_and_recommenders_on_the_same_users(world):
    twins, ranked, design = world
    ev = replicate_events(twins, ranked, design, seed=3)
    users = ev.groupby("persona_id")["user_id"].nunique()
    assert len(users) == len(twins.members) and (users == design.users_per_persona).all()
    assert set(ev["variant"]) == {"mf", "mf_degraded"} and set(ev["run"]) == {0, 1}
    sessions = ev.groupby(["user_id", "variant", "run"]).size()
    assert (sessions == design.turns).all()
    mf = ev[ev["variant"] == "mf"]
    first = mf.iloc[0]
    assert [int(s["id"]) for s in first["slate"]] == ranked[first["user_id"]][:design.slate_size].tolist()
    assert all(set(c) <= {s["id"] for s in slate} for c, slate in zip(ev["chosen"], ev["slate"]))
    # the two runs draw their own decisions: a sampled population, not a lookup
    r0, r1 = (mf[mf["run"] == r].sort_values(["user_id", "turn"])["ratings"].tolist() for r in (0, 1))
    assert r0 != r1
    assert ev.equals(replicate_events(twins, ranked, design, seed=3))  # seeded


def test_power_is_high_for_random_pages_and_nil_for_an_untouched_recommender(world):
    twins, ranked, design = world
    random_pages = ab_power(twins, ranked, design, pairs=6, degrade_share=1.0, n_perm=500, show_progress=False)
    assert random_pages["degraded"]["power"]["rate"] >= 0.8  # MF against random pages: like rate falls
    assert random_pages["degraded"]["median_diff"]["like_rate"] < 0
    untouched = ab_power(twins, ranked, design, pairs=3, degrade_share=0.0, n_perm=500, show_progress=False)
    assert untouched["degraded"]["power"]["rate"] == 0.0  # the same pages with the same seeds: no difference at all
    assert all(d == 0 for d in untouched["degraded"]["median_diff"].values())
    aa = random_pages["aa"]["familywise"]
    assert aa["n"] == 6 and 0 <= aa["ci"][0] <= aa["rate"] <= aa["ci"][1] <= 1


def test_a_design_the_personas_cannot_hold_is_refused(world):
    twins, _, _ = world
    most = max(len(m) for m in twins.members.values())
    with pytest.raises(ValueError, match=r"users_per_persona \d+: persona '.+' has only \d+ members with a twin"):
        check_design(twins, Design(users_per_persona=most + 1))


def test_each_layer_reaches_the_twins_choices(world):
    twins, ranked, design = world
    off = replicate_events(twins, ranked, design, seed=5)
    for layer in ("subtopic", "context"):
        on = replicate_events(twins, ranked, design, seed=5, layers=(layer,))
        assert on["user_id"].tolist() == off["user_id"].tolist()  # the same users, pages and seeds
        assert on["chosen"].tolist() != off["chosen"].tolist(), layer  # a layer that changed nothing fails here
    with pytest.raises(ValueError, match="layers \\['mood'\\]: unknown"):
        replicate_events(twins, ranked, design, seed=5, layers=("mood",))


def test_drift_draws_give_the_ratios_spread_over_draws_of_the_design(world):
    from evals.campaign.ab_power import drift_draws

    twins, ranked, design = world
    out = drift_draws(twins, ranked, design, draws=6, seed=1, show_progress=False)
    assert out["draws"] == 6 and out["ratios_defined"] == len(out["ratios"]) >= 4
    assert out["q025"] <= out["median"] <= out["q975"] and all(r > 0 for r in out["ratios"])
    assert len(set(out["ratios"])) > 1  # each draw picks its own users and decisions: the ratio moves
    assert drift_draws(twins, ranked, design, draws=6, seed=1, show_progress=False) == out  # seeded
