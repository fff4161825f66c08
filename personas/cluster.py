"""Deduplication and clustering of unit-norm document vectors.

* dedup: exact duplicates (same cleaned, lower-cased text) and near-duplicates
  (cosine > ``NEAR_DUP_COSINE`` = 0.97 to an earlier kept document) are removed
  before clustering; each is later assigned the persona of the document it copies.
* k-means: scikit-learn ``KMeans(n_init, random_state=seed)``; with ``k='auto'`` K is
  the one with the highest silhouette (cosine, on a seeded sample of at most
  ``SILHOUETTE_SAMPLE`` points) over ``k_range``; the whole curve is returned.
* HDBSCAN: scikit-learn's, on a PCA projection (<= 32 dims); noise points get label -1.
"""

from __future__ import annotations

import logging

import numpy as np

from personas.errors import PersonaError

log = logging.getLogger(__name__)

NEAR_DUP_COSINE = 0.97
SILHOUETTE_SAMPLE = 4000
K_RANGE = (2, 12)
N_INIT = 4


def find_duplicates(texts: list[str], vectors: np.ndarray, threshold: float = NEAR_DUP_COSINE,
                    block: int = 2048) -> np.ndarray:
    """For each row, the index of the earlier row it duplicates, or -1. Shape (n,)."""
    n = len(texts)
    dup_of = np.full(n, -1, dtype=np.int64)
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        key = " ".join(t.lower().split())
        if key in first:
            dup_of[i] = first[key]
        else:
            first[key] = i
    keep = np.flatnonzero(dup_of < 0)
    kv = vectors[keep]
    for start in range(0, len(keep), block):
        sims = kv[start:start + block] @ kv.T  # (b, m)
        for r in range(sims.shape[0]):
            i = start + r
            row = sims[r, :i]
            hits = np.flatnonzero(row > threshold)
            if hits.size:
                j = keep[hits[0]]
                dup_of[keep[i]] = dup_of[j] if dup_of[j] >= 0 else j
    return dup_of


def silhouette(vectors: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Cosine silhouette on a seeded sample of at most SILHOUETTE_SAMPLE points (nan if < 2 labels)."""
    from sklearn.metrics import silhouette_score

    mask = labels >= 0
    if len(set(labels[mask].tolist())) < 2:
        return float("nan")
    x, y = vectors[mask], labels[mask]
    size = min(len(x), SILHOUETTE_SAMPLE)
    return float(silhouette_score(x, y, metric="cosine", sample_size=size if size < len(x) else None,
                                  random_state=seed))


def kmeans(vectors: np.ndarray, k: int, seed: int = 0, n_init: int = N_INIT) -> np.ndarray:
    """Labels (n,) from scikit-learn KMeans."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(vectors).astype(np.int64)


def choose_k(vectors: np.ndarray, seed: int = 0, k_range: tuple[int, int] = K_RANGE,
             show_progress: bool = False) -> tuple[int, np.ndarray, list[dict]]:
    """Best K by silhouette over ``k_range`` (inclusive). Returns (k, labels, curve)."""
    from tqdm.auto import tqdm

    lo, hi = k_range
    hi = min(hi, len(vectors) - 1)
    if hi < max(lo, 2):
        raise PersonaError(f"too few distinct documents ({len(vectors)}) to choose K in {list(k_range)}")
    curve, best = [], None
    for k in tqdm(range(max(lo, 2), hi + 1), desc="choosing K", disable=not show_progress):
        labels = kmeans(vectors, k, seed)
        score = silhouette(vectors, labels, seed)
        curve.append({"k": k, "silhouette": round(score, 6)})
        if best is None or score > best[1] + 1e-9:
            best = (k, score, labels)
    log.info("K by silhouette: %d (curve %s)", best[0], curve)
    return best[0], best[2], curve


def hdbscan(vectors: np.ndarray, seed: int = 0, min_cluster_size: int | None = None) -> np.ndarray:
    """Labels (n,) from scikit-learn HDBSCAN on a PCA projection; -1 = noise."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    n = len(vectors)
    dims = min(32, n - 1, vectors.shape[1])
    x = PCA(n_components=dims, random_state=seed).fit_transform(vectors) if dims < vectors.shape[1] else vectors
    size = min_cluster_size or max(5, n // 50)
    return HDBSCAN(min_cluster_size=size, copy=True).fit_predict(x).astype(np.int64)
