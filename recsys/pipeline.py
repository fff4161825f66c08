"""A model plus an optional post-hoc reranker: one slate from one user's scores.

Used by the offline benchmark (per test user) and by evals' adapter (per
simulated user), so both see the exact same ranking code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys import rerank
from recsys.metrics import genre_distribution

#: "mixture": mixture calibration, only over a model with K > 1 mixture components (`rerank.mixture_allocate`).
RERANKERS = ("mmr", "dpp", "calibration", "mixture")


@dataclass
class Reranker:
    """``kind`` in RERANKERS; ``lam``: relevance weight (MMR, DPP theta) or calibration weight."""

    kind: str
    lam: float
    candidates: int = 100

    def __post_init__(self):
        if self.kind not in RERANKERS:
            raise ValueError(f"unknown reranker {self.kind!r}; choose one of {RERANKERS}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"reranker lambda must be in [0, 1], got {self.lam}")


def slate(scores: np.ndarray, k: int, *, exclude: np.ndarray | None = None, reranker: Reranker | None = None,
          genres: np.ndarray | None = None, embeddings: np.ndarray | None = None,
          history: np.ndarray | None = None, attention: np.ndarray | None = None) -> np.ndarray:
    """Top-k item indices [k] for one user's catalog scores [N], reranked if asked.

    ``exclude``: item indices never shown (seen or already recommended).
    ``history``: the user's positives, for calibration's target distribution.
    ``attention``: [N, K] the user's attention over mixture components for every item (the "mixture" reranker).
    """
    s = np.asarray(scores, dtype=np.float64).copy()
    if exclude is not None and len(exclude):
        s[np.asarray(exclude, dtype=np.int64)] = -np.inf
    n = int(np.isfinite(s).sum())
    if reranker is None:
        top = np.argpartition(-s, min(k, len(s) - 1))[:k]
        return top[np.argsort(-s[top], kind="stable")][: min(k, n)]
    m = min(reranker.candidates, n)
    cand = np.argpartition(-s, m - 1)[:m]
    cand = cand[np.argsort(-s[cand], kind="stable")]
    rel = s[cand]
    hist = history if history is not None and len(history) else cand
    if reranker.kind == "mixture":
        if attention is None or np.ndim(attention) != 2 or np.shape(attention)[1] < 2:
            raise ValueError("the mixture reranker needs the model's attention over K > 1 mixture components "
                             "(AMP-CF, not MF)")
        target = rerank.component_weights(attention[hist])
        return cand[rerank.mixture_allocate(rel, attention[cand], target, k, reranker.lam)]
    if reranker.kind == "calibration":
        if genres is None or not genres.shape[1]:
            raise ValueError("calibration needs item genres; this catalog has none (use MMR or DPP)")
        target = genre_distribution(hist, genres)
        pos = rerank.calibrate(rel, genres[cand], target, k, reranker.lam)
    else:
        sim = rerank.item_similarity(cand, genres, embeddings)
        pos = rerank.mmr(rel, sim, k, reranker.lam) if reranker.kind == "mmr" else rerank.dpp(rel, sim, k, reranker.lam)
    return cand[pos]


def reranked_top_k(model, users: np.ndarray, k: int, *, seen: list[np.ndarray], reranker: Reranker,
                   genres: np.ndarray | None = None, histories: list[np.ndarray] | None = None) -> np.ndarray:
    """Top-k [B, k] for many users: ``model``'s full-catalog scores, then ``slate`` with ``reranker``.

    ``seen[u]`` / ``histories[u]``: user u's excluded items and positives (indexed by user id)."""
    emb = model.item_embeddings()
    out = []
    for start in range(0, len(users), 256):  # chunks bound the [B, N, K] attention
        chunk = users[start: start + 256]
        scores = model.score_all(chunk)
        att = model.attention_all(chunk) if reranker.kind == "mixture" and hasattr(model, "attention_all") else None
        out += [slate(scores[i], k, exclude=seen[u], reranker=reranker, genres=genres, embeddings=emb,
                      history=None if histories is None else histories[u], attention=None if att is None else att[i])
                for i, u in enumerate(chunk)]
    return np.stack(out)
