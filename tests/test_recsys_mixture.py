"""Mixture calibration, the frontier, the validation split and the rating-column rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys import AMPCF, MF, DataError, Reranker, TrainConfig, leave_last_out, load_interactions, slate, validation_split
from recsys import frontier, rerank
from tests.recsys_fixtures import planted

torch.set_num_threads(1)


def test_component_weights_and_proportional_allocation_by_hand():
    # 8 candidates, best first; the first six belong to component 0, the last two to component 1
    att = np.array([[0.9, 0.1]] * 6 + [[0.2, 0.8]] * 2)
    rel = np.linspace(1.0, 0.3, 8)
    hist_att = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])  # two items each
    target = rerank.component_weights(hist_att)
    np.testing.assert_allclose(target, [0.5, 0.5])
    strict = rerank.mixture_allocate(rel, att, target, 4, lam=0.99)
    assert sorted(att[strict].argmax(1).tolist()) == [0, 0, 1, 1]  # 4 positions split 2 / 2 like the history
    assert list(strict[att[strict].argmax(1) == 0]) == [0, 1]  # within a component, by relevance
    assert list(rerank.mixture_allocate(rel, att, target, 4, lam=0.0)) == [0, 1, 2, 3]  # lam 0: relevance only


def test_mixture_reranker_in_the_slate_needs_attention():
    scores = np.linspace(1, 0, 10)
    att = np.tile([[0.9, 0.1]], (10, 1))
    att[7:] = [0.1, 0.9]
    rr = Reranker("mixture", 0.99, candidates=10)
    picked = slate(scores, 4, reranker=rr, history=np.array([0, 8]), attention=att)
    assert sorted(att[picked].argmax(1).tolist()) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="K > 1 mixture components"):
        slate(scores, 4, reranker=rr, history=np.array([0, 8]))


def test_ampcf_mixture_slate_names_its_component_and_follows_the_history():
    """On the planted fixture a user with a 2:1 history gets a slate whose dominant components follow it."""
    train, user_clusters, item_cluster, _ = planted(major=0.7)
    tc = TrainConfig(dim=16, epochs=30, lr=1e-2, reg=1e-3, batch_size=256, loss="softmax", seed=0)
    amp = AMPCF(tc, k=2, tau=0.5).fit(train)
    users = np.arange(40)
    att = amp.attention_all(users)
    assert att.shape == (40, train.shape[1], 2)
    np.testing.assert_allclose(att[3][:5], amp.explain(np.array([3]), np.arange(5))[0], rtol=1e-4, atol=1e-9)
    shares = []
    for u in users:
        h = train[u].indices
        target = rerank.component_weights(att[u][h])
        s = amp.score_all(np.array([u]))[0]
        picked = slate(s, 10, exclude=h, reranker=Reranker("mixture", 0.9), history=h, attention=att[u])
        named = att[u][picked].argmax(1)  # each item names its component
        shares.append(np.abs(np.bincount(named, minlength=2) / 10 - target).max())
    assert np.mean(shares) < 0.15  # slate shares within ~1 position of the history's component weights


def test_frontier_envelope_and_margin_by_hand():
    xs, ys = [0.80, 0.85, 0.90, 0.84], [0.080, 0.075, 0.065, 0.070]  # (0.84, 0.070) is dominated
    fx, fy = frontier.envelope(xs, ys)
    np.testing.assert_allclose(fx, [0.80, 0.85, 0.90])
    assert frontier.margin(xs, ys, 0.825, 0.0775) == pytest.approx(0.0)  # on the line between two points
    assert frontier.margin(xs, ys, 0.825, 0.070) == pytest.approx(-0.0075)
    assert frontier.margin(xs, ys, 0.95, 0.066) == pytest.approx(0.001)  # beyond the sweep: flat extension
    def row(variant, model, k, reranker, ndcg, ild, kl):  # the fields recsys.bench writes beside each label
        return {"variant": variant, "model": model, "mixture_k": k, "reranker": reranker, "ndcg@10": ndcg,
                "ild@10": ild, "calibration_kl@10": kl}

    rows = [row("mf", "mf", None, None, 0.08, 0.80, 0.7),
            row("mf+mmr@0.5", "mf", None, "mmr", 0.065, 0.90, 0.5),
            row("ampcf-k4", "ampcf-k4", 4, None, 0.075, 0.85, 0.4),
            row("ampcf-k1", "ampcf-k1", 1, None, 0.08, 0.80, 0.7),
            row("ampcf-k4+mmr@0.5", "ampcf-k4", 4, "mmr", 0.01, 0.99, 0.1)]
    ild = frontier.margins(rows, "ild")
    assert set(ild) == {"ampcf-k4"}  # K = 1 and AMP-CF + an external reranker are not mixture variants
    # the fields decide, not the labels: a mixture model under any label is one
    renamed = frontier.margins([{**r, "variant": f"v{i}"} for i, r in enumerate(rows)], "ild")
    assert renamed == {"v2": ild["ampcf-k4"]}
    assert ild["ampcf-k4"] == pytest.approx(0.0025)
    assert frontier.margins(rows, "kl")["ampcf-k4"] == pytest.approx(0.075 - 0.065)  # lower KL than every point


def _ratings(per_user: dict[str, int]) -> pd.DataFrame:
    rows = [(u, f"i{j}", 5.0, float(t)) for u, n in per_user.items() for t, j in enumerate(range(n))]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_validation_split_is_second_to_last_and_never_sees_a_test_item(tmp_path):
    p = tmp_path / "inter.csv"
    df = _ratings({"a": 5, "b": 4})
    df.loc[len(df)] = ["a", "i9", 2.0, 99.0]  # a low rating, later than everything: not a positive
    df.to_csv(p, index=False)
    ds = load_interactions(p)
    test, val = leave_last_out(ds), validation_split(ds)
    idx = {u: i for i, u in enumerate(ds.users["user_id"])}
    item = {f"i{j}": int(ds.item_index([f"i{j}"])[0]) for j in range(5)}
    assert dict(zip(val.test_users, val.test_items)) == {idx["a"]: item["i3"], idx["b"]: item["i2"]}
    assert dict(zip(test.test_users, test.test_items)) == {idx["a"]: item["i4"], idx["b"]: item["i3"]}
    for u, t in zip(test.test_users, test.test_items):
        assert t not in val.train[u].indices and t not in val.test_items[val.test_users == u]
    assert sorted(val.train[idx["b"]].indices) == [item["i0"], item["i1"]]


def test_validation_split_that_empties_a_user_is_one_clear_error(tmp_path):
    p = tmp_path / "inter.csv"
    _ratings({"a": 5, "short": 2}).to_csv(p, index=False)
    with pytest.raises(DataError, match="leaves 1 user\\(s\\) with no training items \\(e.g. user 'short'\\)"):
        validation_split(load_interactions(p))


def test_dataset_without_rating_column_is_refused_unless_implicit(tmp_path):
    p = tmp_path / "inter.csv"
    pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="no rating column 'rating'.*implicit"):
        load_interactions(p)
    ds = load_interactions(p, implicit=True)
    assert (ds.ratings["rating"] == 5.0).all() and len(ds.ratings) == 3


def test_mf_cannot_be_mixture_calibrated_in_the_bench_pipeline():
    train, *_ = planted(n_users=40, per_user=12)
    mf = MF(TrainConfig(dim=8, epochs=1, batch_size=256, loss="softmax")).fit(train)
    from recsys.pipeline import reranked_top_k

    seen = [train[u].indices for u in range(40)]
    with pytest.raises(ValueError, match="AMP-CF, not MF"):
        reranked_top_k(mf, np.arange(4), 5, seen=seen, reranker=Reranker("mixture", 0.5), histories=seen)


def test_campaign_variant_ampcf_mixture_is_registered_and_names_components():
    from pydantic import ValidationError

    from evals.campaign.config import CampaignConfig
    from evals.campaign.world import RecsysAdapter
    from simulator import Item

    ok = CampaignConfig(personas={"extract": "ml-100k-users"}, variants=["mf", "ampcf", "ampcf+mixture"])
    assert ok.variants[-1] == "ampcf+mixture"
    with pytest.raises(ValidationError, match="variant 'mf\\+mixture': the 'mixture' reranker needs a model with "
                                              "attention over mixture components"):
        CampaignConfig(personas={"extract": "ml-100k-users"}, variants=["mf+mixture"])
    train, user_clusters, item_cluster, genres = planted(major=0.5)
    amp = AMPCF(TrainConfig(dim=16, epochs=20, lr=1e-2, reg=1e-3, batch_size=256, loss="softmax"), k=2).fit(train)
    items = [Item(id=f"i{j}", title=f"item {j}") for j in range(train.shape[1])]
    adapter = RecsysAdapter(amp, Reranker("mixture", 0.95), items, np.ones(len(items)), genres, seed=0)
    a, b = user_clusters[0]
    liked = [f"i{j}" for j in np.flatnonzero(item_cluster == a)[:4]] + [f"i{j}" for j in np.flatnonzero(item_cluster == b)[:4]]
    adapter.onboard(liked)
    out = adapter.recommend([], 6)
    components = [it.meta["component"] for it in out]
    assert len(out) == 6 and sorted(np.bincount(components, minlength=2).tolist()) == [3, 3]  # 4:4 history -> 3:3 slate
