"""Post-hoc diversity rerankers over one user's top-N candidates.

Each takes candidate item indices [N] with relevance scores [N] and returns
k indices, best first. Similarity between items is either genre Jaccard
(multi-hot genres) or embedding cosine; a catalog without genres falls back
to embeddings (`item_similarity`).

- `mmr`: maximal marginal relevance (Carbonell & Goldstein 1998).
- `dpp`: fast greedy MAP inference for a DPP (Chen, Zhang & Zhou, NeurIPS
  2018, Algorithm 1: incremental Cholesky, O(N k^2)).
- `calibrate`: calibrated recommendations (Steck, RecSys 2018): greedy
  maximisation of (1 - lam) * relevance - lam * KL(p || q~) over genres.
- `mixture_allocate`: the same calibration over the model's *own* mixture
  components (AMP-CF's K user vectors) instead of genres: each candidate
  belongs to the component whose attention dominates it, the target is the
  share of the user's history each component dominates, so slate positions go
  to components in proportion to the user's component weights (lam near 1: a
  strict proportional allocation). No external diversity metric is used.
"""

from __future__ import annotations

import numpy as np


def item_similarity(items: np.ndarray, genres: np.ndarray | None, embeddings: np.ndarray | None) -> np.ndarray:
    """[M, M] similarity in [0, 1] for item indices: genre Jaccard, else embedding cosine mapped to [0, 1]."""
    if genres is not None and genres.shape[1] and genres[items].sum() > 0:
        g = genres[items].astype(np.float32)
        inter = g @ g.T
        sizes = g.sum(1)
        union = sizes[:, None] + sizes[None, :] - inter
        return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    if embeddings is None:
        raise ValueError("no genres and no item embeddings: cannot measure similarity")
    e = embeddings[items]
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)
    return (e @ e.T + 1.0) / 2.0


def _normalise(rel: np.ndarray) -> np.ndarray:
    lo, hi = float(rel.min()), float(rel.max())
    return (rel - lo) / (hi - lo) if hi > lo else np.ones_like(rel)


def mmr(rel: np.ndarray, sim: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Positions (into the candidate list) chosen by MMR; ``lam`` = 1 is pure relevance."""
    r = _normalise(np.asarray(rel, dtype=np.float64))
    chosen: list[int] = []
    max_sim = np.zeros(len(r))
    available = np.ones(len(r), dtype=bool)
    for _ in range(min(k, len(r))):
        gain = lam * r - (1 - lam) * max_sim
        gain[~available] = -np.inf
        j = int(np.argmax(gain))
        chosen.append(j)
        available[j] = False
        max_sim = np.maximum(max_sim, sim[j])
    return np.asarray(chosen, dtype=np.int64)


def dpp(rel: np.ndarray, sim: np.ndarray, k: int, theta: float = 0.7, eps: float = 1e-10) -> np.ndarray:
    """Greedy MAP of a DPP with kernel L = diag(q) S diag(q), q = exp(alpha * rel).

    ``theta`` in (0, 1) trades relevance for diversity as in Chen et al.
    (alpha = theta / (2 (1 - theta))); S must be positive semi-definite
    (Jaccard and shifted cosine kernels are, up to rounding; eps guards it).
    """
    r = _normalise(np.asarray(rel, dtype=np.float64))
    alpha = theta / (2 * (1 - theta)) if theta < 1 else 50.0
    q = np.exp(alpha * r)
    L = q[:, None] * np.asarray(sim, dtype=np.float64) * q[None, :]
    n = len(r)
    c = np.zeros((min(k, n), n))
    d2 = np.diag(L).copy()
    chosen = [int(np.argmax(d2))]
    while len(chosen) < min(k, n):
        j = chosen[-1]
        m = len(chosen) - 1
        e = (L[j] - c[:m, j] @ c[:m]) / np.sqrt(max(d2[j], eps))
        c[m] = e
        d2 = d2 - e ** 2
        d2[chosen] = -np.inf
        nxt = int(np.argmax(d2))
        if d2[nxt] < eps:  # the kernel is exhausted: fill by relevance
            rest = [i for i in np.argsort(-r) if i not in chosen]
            chosen += rest[: min(k, n) - len(chosen)]
            break
        chosen.append(nxt)
    return np.asarray(chosen, dtype=np.int64)


def calibrate(rel: np.ndarray, item_genres: np.ndarray, target: np.ndarray, k: int, lam: float, alpha: float = 0.01) -> np.ndarray:
    """Steck's greedy calibration: ``target`` p(g) from the user's history [G], item_genres [N, G]."""
    r = _normalise(np.asarray(rel, dtype=np.float64))
    w = item_genres / np.maximum(item_genres.sum(1, keepdims=True), 1e-9)  # each item spreads 1 over its genres
    p = np.asarray(target, dtype=np.float64)
    chosen: list[int] = []
    acc = np.zeros(item_genres.shape[1])
    mask = p > 0
    for _ in range(min(k, len(r))):
        q = (acc[None, :] + w) / (len(chosen) + 1)  # [N, G]: the list's genres if j were added
        q_t = (1 - alpha) * q[:, mask] + alpha * p[mask]
        kl = (p[mask] * np.log(p[mask] / np.maximum(q_t, 1e-12))).sum(1)
        val = (1 - lam) * (r[chosen].sum() + r) - lam * kl
        val[chosen] = -np.inf
        best = int(np.argmax(val))
        chosen.append(best)
        acc += w[best]
    return np.asarray(chosen, dtype=np.int64)


def kl_divergence(p: np.ndarray, q: np.ndarray, alpha: float = 0.01) -> float:
    """KL(p || q~) with q~ = (1 - alpha) q + alpha p (Steck's smoothing); 0 where p = 0."""
    q_t = (1 - alpha) * q + alpha * p
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q_t[mask], 1e-12))))


def component_weights(attention: np.ndarray) -> np.ndarray:
    """A user's mixture-component weights [K] from the attention [H, K] of their history items: the share of the
    history each component dominates (argmax attention)."""
    a = np.asarray(attention)
    return np.bincount(a.argmax(1), minlength=a.shape[1]) / max(len(a), 1)


def mixture_allocate(rel: np.ndarray, attention: np.ndarray, target: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Positions into the candidates [M] (relevance ``rel``, attention [M, K]) whose dominant components
    match ``target`` [K] (see `component_weights`) the way Steck's calibration matches genres."""
    att = np.asarray(attention)
    return calibrate(rel, np.eye(att.shape[1])[att.argmax(1)], target, k, lam)
