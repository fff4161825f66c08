"""Ranking and beyond-accuracy metrics: pure functions over index arrays.

Conventions: ``recs`` [U, K] item indices best first; ``test`` [U] one
held-out item per user (leave-one-out), so relevance is binary and the ideal
DCG is 1.
"""

from __future__ import annotations

import numpy as np


def _rank(recs: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """0-based rank of the test item in the top-k, or -1."""
    hit = recs[:, :k] == np.asarray(test)[:, None]
    return np.where(hit.any(1), hit.argmax(1), -1)


def hit_rate(recs, test, k: int) -> float:
    return float((_rank(recs, test, k) >= 0).mean())


def recall(recs, test, k: int) -> float:
    """With one held-out item per user, Recall@K equals HitRate@K."""
    return hit_rate(recs, test, k)


def ndcg_per_user(recs, test, k: int) -> np.ndarray:
    """NDCG@k of each user [U] (one relevant item: 1 / log2(rank + 2), or 0)."""
    r = _rank(recs, test, k)
    return np.where(r >= 0, 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)


def ndcg(recs, test, k: int) -> float:
    return float(ndcg_per_user(recs, test, k).mean())


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = 2000,
                        level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-user differences a - b [U] and its percentile bootstrap interval (lo, hi)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)


def mrr(recs, test, k: int) -> float:
    r = _rank(recs, test, k)
    return float(np.where(r >= 0, 1.0 / (np.maximum(r, 0) + 1.0), 0.0).mean())


def intra_list_diversity(recs: np.ndarray, sim_fn) -> float:
    """Mean over users of the mean pairwise (1 - similarity) in each list; sim_fn(items) -> [K, K]."""
    vals = []
    for row in recs:
        if len(row) < 2:
            continue
        s = sim_fn(row)
        iu = np.triu_indices(len(row), 1)
        vals.append(float((1.0 - s[iu]).mean()))
    return float(np.mean(vals)) if vals else 0.0


def genre_jaccard_sim(genres: np.ndarray):
    def sim(items):
        g = genres[items].astype(np.float32)
        inter = g @ g.T
        sizes = g.sum(1)
        union = sizes[:, None] + sizes[None, :] - inter
        return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    return sim


def embedding_cosine_sim(emb: np.ndarray):
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)

    def sim(items):
        x = e[items]
        return x @ x.T
    return sim


def coverage(recs: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    return float(len(np.unique(recs)) / n_items)


def gini(recs: np.ndarray, n_items: int) -> float:
    """Gini of item exposure counts over the whole catalog (0 = equal exposure)."""
    counts = np.sort(np.bincount(recs.ravel(), minlength=n_items).astype(np.float64))
    if counts.sum() == 0:
        return 0.0
    n = len(counts)
    return float((2 * np.arange(1, n + 1) - n - 1) @ counts / (n * counts.sum()))


def genre_distribution(items: np.ndarray, genres: np.ndarray) -> np.ndarray:
    """p(g) of a set of items, each item's weight spread evenly over its genres."""
    g = genres[items].astype(np.float64)
    g = g / np.maximum(g.sum(1, keepdims=True), 1e-9)
    total = g.sum(0)
    return total / total.sum() if total.sum() > 0 else total


def calibration_kl(recs: np.ndarray, histories: list[np.ndarray], genres: np.ndarray, alpha: float = 0.01) -> float:
    """Mean KL(p_history || q~_list) over users (Steck 2018); users without history skipped."""
    from recsys.rerank import kl_divergence

    vals = [kl_divergence(genre_distribution(h, genres), genre_distribution(r, genres), alpha)
            for r, h in zip(recs, histories) if len(h)]
    return float(np.mean(vals)) if vals else 0.0


def user_tastes(history: np.ndarray, genres: np.ndarray, min_share: float = 0.15) -> np.ndarray:
    """A user's tastes: genres holding >= ``min_share`` of their history's genre mass."""
    p = genre_distribution(history, genres)
    return np.flatnonzero(p >= min_share)


def taste_coverage(recs: np.ndarray, histories: list[np.ndarray], genres: np.ndarray,
                   min_share: float = 0.15, min_tastes: int = 2) -> float:
    """For users with >= ``min_tastes`` tastes, the mean share of tastes hit by their list.

    A taste is hit when some recommended item carries that genre.
    """
    vals = []
    for r, h in zip(recs, histories):
        tastes = user_tastes(h, genres, min_share)
        if len(tastes) < min_tastes:
            continue
        present = genres[r][:, tastes].max(0) > 0
        vals.append(float(present.mean()))
    return float(np.mean(vals)) if vals else float("nan")
