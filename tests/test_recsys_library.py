"""The library models (`recsys.library`): the contract, the bench split against popularity and the published
figures, fold-in that finds a known user's own recommendations, and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from recsys import library
from recsys.contract import check_contract
from recsys.data import leave_last_out, load_movielens
from recsys.models import Popularity, TrainConfig
from recsys.synthetic import WorldConfig, generate

CLASSES = {"als": library.ALS, "bpr": library.BPR, "itemknn": library.ItemKNN, "ease": library.EASE}


@pytest.fixture(scope="module")
def small():
    """A synthetic world's train positives [300, 480]."""
    return leave_last_out(generate(WorldConfig(seed=0))).train


@pytest.fixture(scope="module")
def ml100k():
    """(split, genres, fitted models) on the bench protocol: ML-100k, leave-last-out, ratings >= 4, seed 0."""
    from personas.infra.assets import ml100k_dir

    ds = load_movielens(ml100k_dir())
    split = leave_last_out(ds)
    models = {"pop": Popularity().fit(split.train), **{n: c(seed=0).fit(split.train) for n, c in CLASSES.items()}}
    return split, ds.genre_matrix()[0], models


@pytest.fixture(scope="module")
def ndcg(ml100k):
    from recsys.offline import evaluate

    split, genres, models = ml100k
    return {name: evaluate(name, m, split, genres, 10)["ndcg@10"] for name, m in models.items()}


@pytest.mark.parametrize("name", CLASSES)
def test_each_keeps_the_contract(small, name):
    report = check_contract(CLASSES[name](seed=0), small, name)
    assert report["checks"][-1] == "pickle round trip"
    assert ("item_embeddings" in report["capabilities"]) == (name in ("als", "bpr"))


def test_the_registry_builds_them_with_its_seed():
    from recsys.registry import Settings, build

    for name, cls in CLASSES.items():
        model = build(name, Settings(train=TrainConfig(), seed=7))
        assert type(model) is cls and model.seed == 7


@pytest.mark.parametrize("name", CLASSES)
def test_each_beats_popularity_on_ml100k(ndcg, name):
    assert ndcg[name] > ndcg["pop"], ndcg


def test_als_and_bpr_reproduce_the_published_figures(ndcg):
    # published on this split with implicit run directly (benchmarks/recsys_speed.py): ALS ~0.069, BPR ~0.060;
    # seeds 0-3 gave ALS 0.066-0.070, BPR 0.061-0.067; the ranges allow for seeds, not for a broken wrapper
    assert 0.055 <= ndcg["als"] <= 0.085, ndcg
    assert 0.048 <= ndcg["bpr"] <= 0.075, ndcg


def _top(scores: np.ndarray, seen: np.ndarray, k: int = 20) -> set[int]:
    scores = np.array(scores, np.float64)
    scores[seen] = -np.inf
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


@pytest.mark.parametrize("name,least", [("als", 0.95), ("bpr", 0.65)])
def test_fold_in_of_a_known_users_history_finds_their_top_20(ml100k, name, least):
    # a user folded in from their training positives should be shown what the trained model shows them;
    # seeds 0-3 gave mean overlaps ALS 0.98-0.99, BPR 0.73 (a ridge solve for BPR gave 0.13)
    split, _, models = ml100k
    model, X = models[name], split.train
    overlap = [len(_top(model.score_params(model.fold_in(X[u].indices)), X[u].indices)
                   & _top(model.score_all([u])[0], X[u].indices)) / 20 for u in split.test_users[::20]]
    assert np.mean(overlap) >= least, (np.mean(overlap), min(overlap))


@pytest.mark.parametrize("name", ["itemknn", "ease"])
def test_fold_in_of_a_known_users_history_is_their_row(ml100k, name):
    split, _, models = ml100k
    model, users = models[name], split.test_users[:20]
    rows = np.stack([model.score_params(model.fold_in(split.train[u].indices)) for u in users])
    np.testing.assert_allclose(rows, model.score_all(users), rtol=1e-5, atol=1e-5)


def test_als_fold_in_is_implicits_recalculate_user(small):
    from implicit.cpu.als import AlternatingLeastSquares

    model = library.ALS(seed=0, factors=16, alpha=4.0).fit(small)  # alpha != 1: the confidence weighting counts
    ref = AlternatingLeastSquares(factors=16, regularization=model.regularization, alpha=4.0)
    ref.item_factors = model.item_factors
    liked = small[3].indices
    np.testing.assert_allclose(model.fold_in(liked), ref.recalculate_user(0, small[3]), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", CLASSES)
def test_the_same_seed_gives_the_same_scores(small, name):
    users = np.arange(20)
    a, b = (CLASSES[name](seed=5).fit(small).score_all(users) for _ in range(2))
    assert a.dtype == np.float32 and np.array_equal(a, b)


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_another_seed_gives_other_scores(small, name):
    users = np.arange(20)
    a, b = (CLASSES[name](seed=s).fit(small).score_all(users) for s in (0, 1))
    assert not np.allclose(a, b, atol=1e-3)
