"""Grounded users on an implicit log (purchases, clicks): what is fitted, what is not, and what they say.

`simulator.choice.ChoiceModel.implicit`, `evals.validity.calibration` (its implicit branch) and
`evals.validity.grounding.implicit_log`. The campaign end to end on the Instacart sample is in
tests/test_evals_campaign_dataset.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals.validity.calibration import IMPLICIT_NOT_FITTED, Rows, fit_kind
from evals.validity.grounding import document_split, explicit_ratings, implicit_log
from recsys.data import DataError, Dataset
from recsys.time_splits import time_split
from simulator.choice import IMPLICIT_TAKEN, IMPLICIT_UNTAKEN, ChoiceModel, decide
from simulator.evidence import EVIDENCE
from tests.test_grounding import small_dataset


def _with_ratings(ds: Dataset, ratings: np.ndarray) -> Dataset:
    return Dataset(ds.ratings.assign(rating=ratings), ds.items, ds.users, ds.name)


def _implicit_model(take_level: float = 0.0) -> ChoiceModel:
    f = len(EVIDENCE)
    return ChoiceModel(kind="twin", features=list(EVIDENCE), mean=[0.0] * f, scale=[1.0] * f, like_coef=[1.0] * f,
                       like_intercept=0.0, rating_coef=[], rating_intercept=0.0, rating_sd=0.0, take_level=take_level,
                       implicit=True)


def test_an_implicit_log_is_told_from_explicit_ratings_and_from_another_scale():
    ds = small_dataset()
    n = len(ds.ratings)
    assert explicit_ratings(ds) and not implicit_log(ds)
    purchases = _with_ratings(ds, np.full(n, 5.0))
    labels = _with_ratings(ds, np.where(np.arange(n) % 4 == 0, 0.0, 5.0))  # recsys.atomic's label rows
    ten_scale = _with_ratings(ds, (np.arange(n) % 10 + 1).astype(float))
    assert implicit_log(purchases) and implicit_log(labels) and not implicit_log(ten_scale)
    # a time split of an implicit log exists (its test part: what users went on to take); of another scale, none
    split = document_split(purchases, "per-user", 0.2)
    assert split is not None and len(split.test) and (split.test["rating"] == 5).all()
    assert document_split(ten_scale, "per-user", 0.2) is None
    with pytest.raises(DataError, match="no interaction is a positive"):
        time_split(_with_ratings(ds, np.zeros(n)))


def test_an_implicit_users_decision_keeps_what_it_takes_and_rates_only_that():
    m = _implicit_model(take_level=0.0)
    assert m.calibrated()  # no like-given-watched fit is needed
    X = np.random.default_rng(0).normal(size=(40, len(EVIDENCE)))
    taken_any = set()
    for s in range(20):
        d = decide(m, X, user_mean=0.0, item_mean=np.zeros(40), genres=[[]] * 40, context={},
                   rng=np.random.default_rng(s))
        taken = np.zeros(40, bool)
        taken[d.chosen] = True
        assert (d.liked == taken).all() and (d.p_like == 1).all()
        assert (d.ratings[taken] == IMPLICIT_TAKEN).all() and (d.ratings[~taken] == IMPLICIT_UNTAKEN).all()
        taken_any |= set(d.chosen)
    assert 0 < len(taken_any) < 40  # the take is drawn, not all or nothing
    # the takes follow the affinity: the items with the highest affinity are taken more often
    counts = np.zeros(40)
    for s in range(200):
        counts[decide(m, X, user_mean=0.0, item_mean=np.zeros(40), genres=[[]] * 40, context={},
                      rng=np.random.default_rng(s)).chosen] += 1
    top, bottom = np.argsort(-m.like_logit(X))[:10], np.argsort(m.like_logit(X))[:10]
    assert counts[top].mean() > counts[bottom].mean() + 50


def test_a_calibration_record_of_explicit_ratings_reads_as_before_and_an_implicit_one_says_so():
    m = _implicit_model()
    explicit = m.model_copy(update={"implicit": False, "watched_coef": [0.0] * len(EVIDENCE),
                                    "watched_intercept": 0.0})
    assert "implicit" not in explicit.model_dump()  # calibration.json of explicit ratings: unchanged
    assert m.model_dump()["implicit"] is True and ChoiceModel.model_validate(m.model_dump()).implicit


def _rows(rng, n_users: int = 30, per_user: int = 6) -> tuple[Rows, list[str]]:
    """Like rows whose first feature tells positives from negatives, and popularity lists with some hits."""
    features = ["history", "popularity"]
    R = Rows(*([] for _ in range(14)))
    for u in range(n_users):
        for _ in range(per_user):
            y = int(rng.random() < 0.5)
            R.X.append([rng.normal(1.0 if y else -1.0), rng.normal()])
            R.y.append(y)
        R.Xt.append(rng.normal(size=(15, 2)))
        R.hits.append(int(rng.integers(0, 3)))
    return R, features


def test_an_implicit_calibration_fits_the_affinity_and_take_level_and_names_what_it_leaves_out():
    R, features = _rows(np.random.default_rng(0))
    model, report, _ = fit_kind("twin", R, features, seed=0, implicit=True)
    assert model.implicit and model.calibrated() and model.take_level is not None
    assert model.like_coef[0] > 1.0  # the feature that separates the rows carries the affinity
    assert report["cv_auc"] > 0.8 and report["not_fitted"] == IMPLICIT_NOT_FITTED
    assert "person_spread" not in report and "like_given_watched_cv" not in report
    assert report["take_spread"]["n_users"] == 30 and model.take_spread == report["take_spread"]["take_spread"]
    # the take level reproduces the popularity lists' real hits (simulator.selector.fit_level)
    expected = sum(float((1 / (1 + np.exp(-(model.like_logit(x) + model.take_level)))).sum()) for x in R.Xt)
    assert expected == pytest.approx(sum(R.hits), rel=1e-3)
    # the same rows without ratings are refused as explicit rows: nothing to fit a rating on
    with pytest.raises(ValueError, match="too little training data"):
        fit_kind("twin", R, features, seed=0)


def _hits(rng, A: np.ndarray, level: float, spread: float) -> np.ndarray:
    """Hits of users [n] on their lists A [n, k], each user at its own level drawn with sd ``spread``."""
    from scipy.special import expit

    from simulator.selector import take_logit

    z = rng.standard_normal(len(A))[:, None]
    return (rng.random(A.shape) < expit(take_logit(A, level, spread, z))).sum(1)


@pytest.mark.parametrize("true_spread", [0.0, 1.5])
def test_the_take_spread_is_recovered_from_users_hits(true_spread):
    """`fit_take_spread` on hits simulated at a known spread: it finds that spread, and the users' mean hits stay
    where the level put them (the random intercept is population-averaged)."""
    from simulator.selector import fit_level, fit_take_spread

    rng = np.random.default_rng(1)
    A = rng.normal(-1.0, 1.0, size=(800, 15))
    hits = _hits(rng, A, -2.0, true_spread)
    level = fit_level(list(A), hits)
    fit = fit_take_spread(list(A), hits, level, seed=0)
    assert abs(fit["take_spread"] - true_spread) <= 0.35, fit
    assert fit["sim_sd_hits"] == pytest.approx(fit["real_sd_hits"], rel=0.05)
    assert fit["sim_mean_hits"] == pytest.approx(fit["real_mean_hits"], rel=0.1)
    if true_spread:
        assert fit["sim_sd_hits_without"] < 0.85 * fit["real_sd_hits"]  # without a level, users are too alike


def test_an_implicit_persons_own_level_moves_what_it_takes():
    m = _implicit_model(take_level=-1.0).model_copy(update={"take_spread": 1.5})
    X = np.random.default_rng(0).normal(size=(30, len(EVIDENCE)))

    def takes(level: float) -> float:
        return np.mean([len(decide(m, X, user_mean=0.0, item_mean=np.zeros(30), genres=[[]] * 30, context={},
                                   rng=np.random.default_rng(s), level=level).chosen) for s in range(100)])

    assert takes(-1.0) < takes(0.0) < takes(1.0)
    flat = m.model_copy(update={"take_spread": 0.0})
    assert np.mean([len(decide(flat, X, user_mean=0.0, item_mean=np.zeros(30), genres=[[]] * 30, context={},
                               rng=np.random.default_rng(s), level=1.0).chosen) for s in range(100)]) < takes(1.0)
    assert "take_spread" not in m.model_copy(update={"implicit": False, "take_spread": 0.0}).model_dump()


def test_the_llm_judgement_asks_the_data_sets_verb_and_movielens_text_is_unchanged():
    """`simulator.grounded.llm_judgement`'s prompts: MovieLens-100k's ('watch') read exactly as before, so its
    judgements and figures do not move; another data set's verb asks about that data set's items."""
    from personas.card import PersonaCard
    from simulator.prompts import render

    card = PersonaCard(id="p0", name="Ana", summary="Buys for a family.")
    assert render("grounded_item", item="Heat (1995)", verb="watch") == \
        "Would you enjoy watching Heat (1995)? Answer yes or no."
    assert render("grounded_judge", persona=card, liked=["Heat (1995)"], disliked=["Twister (1996)"],
                  verb="watch").splitlines() == ["You are Ana. Buys for a family.", "Films you loved: Heat (1995).",
                                                 "Films you disliked: Twister (1996).", "Answer only yes or no."]
    assert render("grounded_item", item="Bananas", verb="buy") == "Would you buy Bananas? Answer yes or no."
    judge = render("grounded_judge", persona=card, liked=["Bananas"], disliked=[], verb="buy")
    assert "You liked: Bananas." in judge and "Film" not in judge
