"""Drift and A/B statistics on constructed data whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals.ab import ab_table, false_positive_rate, holm, paired_test, per_user_metrics
from evals.drift import drift_report, icc, variance_ratio


def test_variance_ratio_by_hand():
    # persona A: unit a1 runs (0, 2); persona B: unit b1 runs (10, 12)
    X = np.array([0.0, 2.0, 10.0, 12.0])
    res = variance_ratio(X, np.array(["A", "A", "B", "B"]), np.array(["a1", "a1", "b1", "b1"]))
    assert res["within"] == pytest.approx(2.0)  # var(0, 2) = var(10, 12) = 2 (ddof=1)
    assert res["between"] == pytest.approx(50.0)  # var(1, 11) = 50
    assert res["ratio_within_over_between"] == pytest.approx(0.04)
    one = variance_ratio(X, np.array(["A"] * 4), np.array(["a1", "a1", "a2", "a2"]))
    assert one["ratio_within_over_between"] is None and "two personas" in one["reason"]


def test_icc_by_hand_and_from_variance_components():
    assert icc(np.array([1.0, 1.0, 5.0, 5.0]), np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert icc(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 0])) is None
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(300), 4)
    X = rng.normal(0, 1.0, 300)[groups] + rng.normal(0, 1.0, len(groups))  # sigma_b^2 = sigma_w^2 = 1
    assert icc(X, groups) == pytest.approx(0.5, abs=0.07)


def _events(persona_effect: float, noise: float, seed: int = 0, n_personas=3, users=3, runs=3, uv="layered") -> pd.DataFrame:
    """Each persona prefers its own genre with strength persona_effect; runs add noise."""
    rng = np.random.default_rng(seed)
    genres = [f"g{i}" for i in range(n_personas)]
    rows = []
    for p in range(n_personas):
        for u in range(users):
            for r in range(runs):
                for t in range(2):
                    slate = [{"id": f"{g}-{t}", "title": g, "genres": [g], "persona": None} for g in genres]
                    w = np.full(n_personas, 1.0)
                    w[p] += persona_effect
                    w = np.clip(w + rng.normal(0, noise, n_personas), 0.01, None)
                    pick = genres[rng.choice(n_personas, p=w / w.sum())]
                    rows.append(dict(variant="mf", user_variant=uv, persona_id=f"p{p}", user_id=f"u{p}-{u}", run=r, turn=t,
                                     slate=slate, chosen=[f"{pick}-{t}"], ratings={s["id"]: 3 for s in slate}, utterance="x",
                                     ok=True, consistency={"prompt_to_line": 1.0 - 0.1 * t}))
    return pd.DataFrame(rows)


def test_drift_distinct_personas_have_low_ratio_and_high_icc():
    rep = drift_report(_events(persona_effect=50.0, noise=0.0, runs=4))
    assert rep["ratio_within_over_between"] < 0.5 and rep["icc"] > 0.6
    assert {r["persona_id"] for r in rep["per_persona"]} == {"p0", "p1", "p2"}
    assert rep["consistency_by_turn"]["prompt_to_line"] == {0: 1.0, 1: pytest.approx(0.9)}
    assert set(rep["by_user_variant"]) == {"layered"}


def test_drift_identical_personas_warn():
    rep = drift_report(_events(persona_effect=0.0, noise=0.0, runs=4, users=4))
    assert rep["ratio_within_over_between"] > 1.0 and rep["icc"] < 0.2


def test_drift_uses_embeddings_when_given():
    rep = drift_report(_events(50.0, 0.0), embed=lambda texts: np.ones((len(texts), 3)))
    assert "embeddings" in rep["by_feature"]


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, None]) == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06), None]
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # 2 * 0.5 capped at 1; monotone


def test_paired_test_detects_a_planted_shift_and_not_noise():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.1, 40)
    shifted = paired_test(a, a + 0.05 + rng.normal(0, 0.02, 40), seed=0)
    assert shifted["ci_low"] > 0 and shifted["p_value"] < 0.01
    assert shifted["diff"] == pytest.approx(0.05, abs=0.01)
    null = paired_test(a, a + rng.normal(0, 0.02, 40), seed=0)
    assert null["ci_low"] < 0 < null["ci_high"]


def test_aa_false_positive_rate_is_near_alpha():
    rng = np.random.default_rng(2)
    hits = 0
    reps = 150
    for i in range(reps):
        a = rng.normal(0, 1, 20)
        hits += paired_test(a, rng.normal(0, 1, 20), seed=i, n_resamples=300)["p_value"] < 0.05
    assert hits / reps < 0.1


def _ab_events(delta: float) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(3)
    for u in range(30):
        base = rng.uniform(0.2, 0.6)
        for variant, extra in (("mf", 0.0), ("ampcf", delta)):
            n_chosen = int(round(10 * np.clip(base + extra + rng.normal(0, 0.03), 0, 1)))
            slate = [{"id": f"i{j}", "title": "t", "genres": [f"g{j % 3}"], "persona": j % 2 if variant == "ampcf" else None}
                     for j in range(10)]
            rows.append(dict(variant=variant, user_variant="layered", persona_id="p", user_id=f"u{u}", run=0, turn=0,
                             slate=slate, chosen=[f"i{j}" for j in range(n_chosen)], ratings={"i0": 4}, utterance="x",
                             ok=True, consistency={"reward": 1.0}))
    return pd.DataFrame(rows)


def test_ab_table_pairs_by_user_and_corrects():
    rows = {r["metric"]: r for r in ab_table(_ab_events(0.2), "mf", "ampcf", seed=0)}
    acc = rows["acceptance_rate"]
    assert acc["diff"] == pytest.approx(0.2, abs=0.03) and acc["ci_low"] > 0 and acc["p_holm"] < 0.05
    assert acc["n_users"] == 30 and acc["p_holm"] >= acc["p_value"]
    assert rows["persona_coverage"]["n_users"] == 0  # mf gives no attribution: no pairs, no test
    assert rows["mean_rating"]["diff"] == 0 and rows["mean_rating"]["p_value"] == 1.0
    with pytest.raises(ValueError, match="'mf\\+dpp' has no events"):
        ab_table(_ab_events(0.2), "mf", "mf+dpp")
    users = per_user_metrics(_ab_events(0.0), "ampcf")
    assert len(users) == 30 and users["persona_coverage"].between(0, 1).all()


def test_aa_on_identical_variants_has_no_false_positive():
    df = _ab_events(0.0)
    df = df[df["variant"] == "mf"]
    twin = df.assign(variant="mf2")
    rows = ab_table(pd.concat([df, twin]), "mf", "mf2")
    assert false_positive_rate(rows) == 0.0
