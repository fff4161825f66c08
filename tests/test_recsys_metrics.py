"""Metrics on hand-computed cases and against scikit-learn; rerankers; data loading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from recsys import (DataError, Reranker, leave_last_out, load_instacart, load_interactions, load_movielens, random_holdout,
                    slate)
from recsys import metrics, rerank

RECS = np.array([[3, 1, 2], [0, 4, 5], [7, 8, 9]])
TEST = np.array([1, 5, 0])  # ranks 2, 3, miss


def test_ranking_metrics_by_hand():
    assert metrics.hit_rate(RECS, TEST, 3) == pytest.approx(2 / 3)
    assert metrics.recall(RECS, TEST, 1) == 0.0
    assert metrics.mrr(RECS, TEST, 3) == pytest.approx((1 / 2 + 1 / 3) / 3)
    assert metrics.ndcg(RECS, TEST, 3) == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / 3)


def test_ndcg_matches_sklearn():
    rng = np.random.default_rng(0)
    n_items, k = 30, 10
    scores = rng.random((50, n_items))
    test = rng.integers(0, n_items, 50)
    recs = np.argsort(-scores, axis=1)[:, :k]
    truth = np.zeros_like(scores)
    truth[np.arange(50), test] = 1
    assert metrics.ndcg(recs, test, k) == pytest.approx(ndcg_score(truth, scores, k=k), abs=1e-9)


def test_diversity_coverage_gini_calibration():
    genres = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    sim = metrics.genre_jaccard_sim(genres)
    assert metrics.intra_list_diversity(np.array([[0, 1]]), sim) == 0.0
    assert metrics.intra_list_diversity(np.array([[0, 2]]), sim) == 1.0
    assert metrics.intra_list_diversity(np.array([[0, 3]]), sim) == pytest.approx(0.5)
    recs = np.array([[0, 1], [0, 1]])
    assert metrics.coverage(recs, 4) == 0.5
    assert metrics.gini(np.array([[0, 1, 2, 3]]), 4) == pytest.approx(0.0)
    assert metrics.gini(np.array([[0, 0, 0, 0]]), 4) == pytest.approx(0.75)
    # history all genre 0; a list of genre-0 items is perfectly calibrated
    assert metrics.calibration_kl(np.array([[0, 1]]), [np.array([0, 1])], genres) == pytest.approx(0.0, abs=1e-9)
    assert metrics.calibration_kl(np.array([[2]]), [np.array([0])], genres) > 3.0


def test_taste_coverage_by_hand():
    genres = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float32)
    history = [np.array([0, 3, 1])]  # tastes: genre 0 (2/3) and genre 1 (1/3)
    assert metrics.taste_coverage(np.array([[0, 3]]), history, genres) == 0.5
    assert metrics.taste_coverage(np.array([[0, 1]]), history, genres) == 1.0
    assert np.isnan(metrics.taste_coverage(np.array([[0]]), [np.array([0])], genres))  # one taste: not counted


def test_rerankers_trade_relevance_for_diversity():
    genres = np.array([[1, 0, 0]] * 6 + [[0, 1, 0]] * 2 + [[0, 0, 1]] * 2, dtype=np.float32)
    rel = np.linspace(1.0, 0.1, 10)  # all genre-0 items are the most relevant
    sim = rerank.item_similarity(np.arange(10), genres, None)
    assert list(rerank.mmr(rel, sim, 3, lam=1.0)) == [0, 1, 2]
    assert set(genres[rerank.mmr(rel, sim, 3, lam=0.3)].argmax(1)) == {0, 1, 2}
    assert list(rerank.dpp(rel, sim, 1, theta=0.7)) == [0]
    assert set(genres[rerank.dpp(rel, sim, 3, theta=0.5)].argmax(1)) == {0, 1, 2}
    cal = rerank.calibrate(rel, genres, np.array([1 / 3, 1 / 3, 1 / 3]), 3, lam=0.9)
    assert set(genres[cal].argmax(1)) == {0, 1, 2}
    assert list(rerank.calibrate(rel, genres, np.array([1.0, 0, 0]), 3, lam=0.5)) == [0, 1, 2]


def test_slate_excludes_and_falls_back_to_embeddings():
    scores = np.arange(10, dtype=float)[::-1]
    assert list(slate(scores, 3, exclude=np.array([0, 2]))) == [1, 3, 4]
    emb = np.eye(10)[np.repeat(np.arange(5), 2)]  # pairs of identical items
    out = slate(scores, 3, reranker=Reranker("mmr", 0.3), embeddings=emb)  # no genres: embedding cosine
    assert len({int(i) // 2 for i in out}) == 3
    with pytest.raises(ValueError, match="unknown reranker"):
        Reranker("shuffle", 0.5)


def test_movielens_and_splits():
    from personas.infra.assets import ml100k_dir

    ds = load_movielens(ml100k_dir())
    assert (ds.n_users, ds.n_items, len(ds.ratings)) == (943, 1682, 100_000)
    assert ds.items.loc[0, "title"] == "Toy Story" and "Comedy" in ds.items.loc[0, "genres"]
    s = leave_last_out(ds)
    pos = ds.ratings[ds.ratings["rating"] >= 4]
    for u, i in list(zip(s.test_users, s.test_items))[:50]:
        assert pos[(pos["user"] == u)]["timestamp"].max() == pos[(pos["user"] == u) & (pos["item"] == i)]["timestamp"].max()
        assert s.train[u, i] == 0
    assert s.train.nnz + len(s.test_users) == len(pos[pos.groupby("user")["item"].transform("size") >= 2])
    r1, r2 = random_holdout(ds, seed=1), random_holdout(ds, seed=1)
    assert np.array_equal(r1.test_items, r2.test_items)
    assert not np.array_equal(r1.test_items, random_holdout(ds, seed=2).test_items)
    with pytest.raises(DataError, match="unknown item id"):
        ds.item_index(["999999"])


def test_generic_loader_bad_input(tmp_path):
    p = tmp_path / "inter.csv"
    pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"], "rating": [5, "x", 4]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="NaN"):
        load_interactions(p)
    pd.DataFrame({"user": [1], "item_id": ["a"]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="no column 'user_id'"):
        load_interactions(p)
    pd.DataFrame({"user_id": [1, 2, 2], "item_id": ["a", "b", "c"], "rating": [5, 4, 5]}).to_csv(p, index=False)
    cat = tmp_path / "cat.csv"
    pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]}).to_csv(cat, index=False)
    with pytest.raises(DataError, match="missing from the catalog"):
        load_interactions(p, cat)
    pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"]}).to_csv(cat, index=False)
    ds = load_interactions(p, cat)
    assert ds.n_items == 3 and ds.genre_matrix()[0].shape == (3, 0)  # no genres: embeddings fallback


def test_per_user_ndcg_and_paired_bootstrap():
    per = metrics.ndcg_per_user(RECS, TEST, 3)
    np.testing.assert_allclose(per, [1 / np.log2(3), 1 / np.log2(4), 0.0])
    diff, lo, hi = metrics.paired_bootstrap_ci(per, per)
    assert (diff, lo, hi) == (0.0, 0.0, 0.0)
    a, b = np.ones(200), np.zeros(200)
    b[:50] = 1.0
    diff, lo, hi = metrics.paired_bootstrap_ci(a, b, seed=1)
    assert diff == pytest.approx(0.75) and lo < 0.75 < hi and lo > 0.6


def test_instacart_sample_first_purchases_in_order_and_its_core():
    """The packaged Instacart sample: first purchases only, each user's purchases in order, the 5-core, one
    category a product."""
    from personas.infra.assets import instacart_csv

    raw = pd.read_csv(instacart_csv())
    ds = load_instacart(instacart_csv())
    assert (ds.n_users, ds.n_items, len(ds.ratings)) == (586, 2555, 35_162)  # the docstring's figures
    r = ds.ratings
    assert not r.duplicated(["user", "item"]).any() and (r["rating"] == 5.0).all()
    assert (r.groupby("item")["user"].size() >= 5).all() and (r.groupby("user")["item"].size() >= 5).all()
    # a user's timestamps follow (order_number, add_to_cart_order), and each product sits at its first purchase
    u = ds.users["user_id"].iloc[0]
    mine = raw[raw["user_id"] == int(u)].sort_values(["order_number", "add_to_cart_order"])
    first = mine.drop_duplicates("product_id")["product_id"].astype(str).tolist()
    kept = set(ds.items["item_id"])
    got = r[r["user"] == 0].sort_values("timestamp")["item"].map(dict(enumerate(ds.items["item_id"]))).tolist()
    assert got == [p for p in first if p in kept]
    g, names = ds.genre_matrix()
    assert len(names) == 20 and (g.sum(1) == 1).all()
    assert leave_last_out(ds).test_users.size == ds.n_users


def _orders(path, last: dict[int, int]) -> None:
    """An Instacart-shaped CSV: 30 users in four groups of taste, each buying 9 of its group's 10 products over 5
    orders (every product bought by >= 5 users), then one last order with the product ``last[user]``."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        taste = (u % 4) * 10  # four groups of ten products
        bought = rng.permutation([p for p in range(10) if p != u % 10]) + taste
        for n, p in enumerate(bought):
            rows.append((u, int(p), n // 2 + 1, n % 2 + 1))
        rows.append((u, last[u], 6, 1))
    pd.DataFrame(rows, columns=["user_id", "product_id", "order_number", "add_to_cart_order"]).to_csv(path, index=False)


def test_instacart_categories_never_see_the_held_out_purchases(tmp_path):
    """The categories come from the leave-last-out train part: whatever each user bought last (the held-out
    item), they do not change; what each user bought last is the test item."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    # (a) each user's last product lies in the next group's products; (b) every user's last product is product 0
    _orders(a, {u: ((u % 4 + 1) % 4) * 10 + u % 10 for u in range(30)})
    _orders(b, {u: 0 if u % 4 else 10 for u in range(30)})
    da, db = load_instacart(a, categories=4), load_instacart(b, categories=4)
    assert da.items["item_id"].tolist() == db.items["item_id"].tolist()
    assert da.items["genres"].tolist() == db.items["genres"].tolist()
    sa = leave_last_out(da)
    assert sorted(da.items["item_id"].iloc[sa.test_items].astype(int)) == sorted(
        ((u % 4 + 1) % 4) * 10 + u % 10 for u in range(30))


def test_instacart_bad_input(tmp_path):
    p = tmp_path / "orders.csv"
    pd.DataFrame({"user_id": [1], "product_id": [2], "order_number": [1]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="orders.csv: no column 'add_to_cart_order'"):
        load_instacart(p)
    pd.DataFrame({"user_id": [1, 2], "product_id": [2, 2], "order_number": [1, 1],
                  "add_to_cart_order": [1, 1]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="no user and product left with >= 5 purchases"):
        load_instacart(p)
    with pytest.raises(DataError, match="no such file"):
        load_instacart(tmp_path / "missing.csv")
