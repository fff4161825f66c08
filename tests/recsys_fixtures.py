"""A planted-taste fixture: users who each mix two known item clusters."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def planted(n_clusters=4, items_per=30, n_users=240, per_user=24, major=0.6, seed=0):
    """Returns (train CSR, user_clusters [U, 2], item_cluster [N], genres one-hot [N, C]).

    Each user likes ``per_user`` items: ``major`` of them from a first cluster,
    the rest from a second; within a cluster, popular items are likelier.
    """
    rng = np.random.default_rng(seed)
    n_items = n_clusters * items_per
    item_cluster = np.repeat(np.arange(n_clusters), items_per)
    pop = 1.0 / np.arange(1, items_per + 1) ** 0.7
    pop /= pop.sum()
    rows, cols, user_clusters = [], [], []
    for u in range(n_users):
        a, b = rng.choice(n_clusters, 2, replace=False)
        user_clusters.append((a, b))
        n_a = int(round(per_user * major))
        for c, n in ((a, n_a), (b, per_user - n_a)):
            picks = rng.choice(items_per, n, replace=False, p=pop) + c * items_per
            rows += [u] * n
            cols += list(picks)
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    genres = np.eye(n_clusters, dtype=np.float32)[item_cluster]
    return train, np.asarray(user_clusters), item_cluster, genres
