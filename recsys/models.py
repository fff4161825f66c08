"""The recommender contract: fit / score / recommend / fold_in, and the simplest model behind it.

Shapes: B users, M items, N = catalog size.

- `Recommender`: the base class every model subclasses; `TrainConfig`, the training settings of
  the factorised models; `top_k`, the row-wise ranking they share.
- `Popularity`: train-count ranking.

MF and AMP-CF live in `recsys.factorised`; the package (`recsys`) exports all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


class RecsysError(ValueError):
    """Bad input to a recommender (unknown ids, empty histories, K too large)."""


@dataclass
class TrainConfig:
    dim: int = 64
    epochs: int = 40
    lr: float = 5e-3
    batch_size: int = 2048
    reg: float = 1e-4
    negatives: int = 4
    loss: str = "bpr"  # "bpr" (sampled negatives) or "softmax" (full catalog cross-entropy)
    seed: int = 0


class Recommender:
    """fit(train CSR [n_users, n_items]) then score / recommend / fold_in."""

    name = "base"
    train_s: float = 0.0

    def fit(self, train: sp.csr_matrix, show_progress: bool = False) -> "Recommender":
        raise NotImplementedError

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """Scores [B, N] for user indices [B]."""
        raise NotImplementedError

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores [B, M] of items [M] (or [B, M]) for users [B]."""
        users = self._check_users(users)
        all_scores = self.score_all(users)
        items = np.asarray(items)
        self._check_items(items)
        return np.take_along_axis(all_scores, np.broadcast_to(items, (len(users), items.shape[-1])), axis=1)

    def recommend(self, users: np.ndarray, k: int = 10, exclude_seen: bool = True,
                  exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices [B, k] and their scores [B, k], best first.

        ``exclude_seen``: drop the user's training positives. ``exclude``: a further
        CSR [n_users, n_items] of items never to show (e.g. `Split.seen`: every item the
        user rated, whatever the rating). Fewer than k candidates leave -inf scores.
        """
        users = self._check_users(users)
        if k < 1:
            raise RecsysError(f"k must be >= 1, got {k}")
        scores = self.score_all(users).astype(np.float32, copy=True)
        if exclude_seen:
            scores[self._train[users].nonzero()] = -np.inf
        if exclude is not None:
            if exclude.shape[1] != self.n_items:
                raise RecsysError(f"exclude has {exclude.shape[1]} item columns; the model knows {self.n_items} items")
            scores[exclude[users].nonzero()] = -np.inf
        return top_k(scores, k)

    # --- fold-in: a new user from a handful of liked items, item parameters frozen
    def fold_in(self, liked: np.ndarray, steps: int = 60, seed: int = 0) -> np.ndarray:
        """User parameters for liked item indices (shape depends on the model)."""
        raise NotImplementedError

    def score_params(self, params: np.ndarray) -> np.ndarray:
        """Scores [N] for folded-in user parameters."""
        raise NotImplementedError

    def item_embeddings(self) -> np.ndarray | None:
        return None

    def _check_users(self, users) -> np.ndarray:
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise RecsysError(f"unknown user index {int(users.max() if users.max() >= self.n_users else users.min())}; "
                              f"the model knows {self.n_users} users")
        return users

    def _check_items(self, items: np.ndarray) -> None:
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            raise RecsysError(f"unknown item index; the model knows {self.n_items} items")

    def _remember(self, train: sp.csr_matrix) -> None:
        if train.nnz == 0:
            raise RecsysError("training matrix has no positives")
        self._train = train.tocsr()
        self.n_users, self.n_items = train.shape


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k [B, k] (indices, scores), best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


class Popularity(Recommender):
    name = "pop"

    def fit(self, train, show_progress=False):
        t0 = time.perf_counter()
        self._remember(train)
        self.counts = np.asarray(train.sum(axis=0)).ravel().astype(np.float32)
        self.train_s = time.perf_counter() - t0
        return self

    def score_all(self, users):
        return np.broadcast_to(self.counts, (len(users), self.n_items)).copy()

    def fold_in(self, liked, steps=0, seed=0):
        return np.zeros(0, dtype=np.float32)

    def score_params(self, params):
        return self.counts.copy()
