"""Library recommenders as built-in variants: implicit's ALS, BPR and item-item cosine KNN, and EASE.

Shapes: B users, N = catalog size, d factors, L liked items. Each model fits on CSR positives [n_users, N],
scores known users with ``score_all`` -> float32 [B, N], and meets a *new* user (a simulated user is always
new to the model) through ``fold_in(liked [L]) -> params`` and ``score_params(params) -> [N]``:

- `ALS`: params are the user vector [d], the exact least-squares solve against the frozen item factors.
- `BPR`: params are the user vector [d + 1] whose last entry is 1 (implicit keeps each item's bias as the
  last column of its item factors), fitted by BPR's own objective against the frozen items (see `BPR`).
- `ItemKNN`, `EASE`: no user vector; params are the user's scores [N] (liked indicator times the item-item
  matrix), so a known user's training positives fold in to exactly their ``score_all`` row.

Decisions:
- implicit's CPU classes are used directly (no GPU dispatch) and only while fitting: a fitted model keeps
  plain numpy / scipy arrays, so it pickles without implicit's objects and scores without implicit.
- Determinism: implicit runs with ``num_threads=1`` by default; ALS and the KNN give the same result at
  any thread count (checked on ML-100k), BPR with several threads is Hogwild SGD and does not. BLAS runs one
  thread while implicit fits (`_one_blas_thread`), which is what implicit's OpenBLAS warning asks for, and
  while BPR folds in (small products, where BLAS threads only wait on each other).
- Hyper-parameters are implicit's documented defaults or the values `benchmarks/recsys_speed.py` ran
  implicit with, never chosen on a test figure; each class says which.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp

from recsys.models import Recommender


def _one_blas_thread():
    """BLAS limited to one thread; enter it after implicit is imported (its BLAS loads with it)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


class _Library(Recommender):
    """What the four share: ``fit`` (timed, around each model's ``_fit``) and the check of liked items."""

    def fit(self, train: sp.csr_matrix, show_progress: bool = False) -> "_Library":
        t0 = time.perf_counter()
        self._remember(train)
        self._fit(self._train.astype(np.float32), show_progress)
        self.train_s = time.perf_counter() - t0
        return self

    def _fit(self, X: sp.csr_matrix, show_progress: bool) -> None:
        raise NotImplementedError

    def _liked(self, liked) -> np.ndarray:
        liked = np.unique(np.asarray(liked, dtype=np.int64))  # a repeated like counts once, as in a CSR row
        self._check_items(liked)
        return liked


class ALS(_Library):
    """implicit's alternating least squares (Hu, Koren & Volinsky 2008; conjugate-gradient solver).

    A positive has confidence ``alpha`` (the train matrix holds 1s), every other item confidence 1 and
    target 0. Defaults: factors 128, regularization 0.05, iterations 15 are the "implicit ALS 128" row of
    `benchmarks/recsys_speed.py`, the run behind the NDCG@10 ~0.067-0.069 the project quotes for implicit ALS
    on the bench split (its 64-factor row gave 0.064); alpha 1.0 is implicit's default and that run's.
    """

    name = "als"

    def __init__(self, seed: int = 0, factors: int = 128, regularization: float = 0.05, iterations: int = 15,
                 alpha: float = 1.0, num_threads: int = 1):
        self.seed, self.factors, self.regularization = seed, factors, regularization
        self.iterations, self.alpha, self.num_threads = iterations, alpha, num_threads

    def _fit(self, X, show_progress):
        from implicit.cpu.als import AlternatingLeastSquares

        with _one_blas_thread():
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            alpha=self.alpha, iterations=self.iterations,
                                            num_threads=self.num_threads, random_state=self.seed)
            model.fit(X, show_progress=show_progress)
        self.user_factors, self.item_factors = model.user_factors, model.item_factors  # [U, d], [N, d]
        Y = self.item_factors.astype(np.float64)
        self._YtY = Y.T @ Y

    def score_all(self, users):
        return self.user_factors[self._check_users(users)] @ self.item_factors.T

    def fold_in(self, liked, steps=60, seed=0):
        """User vector [d]: x = (Y'Y + reg I + (alpha - 1) Y_L'Y_L)^-1 alpha Y_L'1, the exact solve of implicit's
        ``recalculate_user`` in numpy (fit takes 3 conjugate-gradient steps instead). Deterministic; steps and
        seed unused."""
        liked = self._liked(liked)
        YL = self.item_factors[liked].astype(np.float64)
        A = self._YtY + self.regularization * np.eye(self.factors) + (self.alpha - 1.0) * YL.T @ YL
        return np.linalg.solve(A, self.alpha * YL.sum(0)).astype(np.float32)

    def score_params(self, params):
        return self.item_factors @ np.asarray(params, np.float32)

    def item_embeddings(self):
        return self.item_factors


class BPR(_Library):
    """implicit's Bayesian personalised ranking (Rendle et al. 2009), SGD with one thread (reproducible).

    Defaults: factors 64, iterations 100 are the "implicit BPR 64" row of `benchmarks/recsys_speed.py`
    (published NDCG@10 ~0.060); learning_rate 0.01 and regularization 0.01 are implicit's defaults and
    that run's. ``num_threads`` > 1 trains faster but Hogwild: the same seed no longer gives the same model.
    """

    name = "bpr"

    def __init__(self, seed: int = 0, factors: int = 64, learning_rate: float = 0.01, regularization: float = 0.01,
                 iterations: int = 100, num_threads: int = 1):
        self.seed, self.factors, self.learning_rate = seed, factors, learning_rate
        self.regularization, self.iterations, self.num_threads = regularization, iterations, num_threads

    def _fit(self, X, show_progress):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        with _one_blas_thread():
            model = BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                                regularization=self.regularization, iterations=self.iterations,
                                                num_threads=self.num_threads, random_state=self.seed)
            model.fit(X, show_progress=show_progress)
        # [U, d + 1] (last column 1), [N, d + 1] (last column the item's bias)
        self.user_factors, self.item_factors = model.user_factors, model.item_factors
        self._item_counts = np.asarray(X.sum(axis=0)).ravel()

    def score_all(self, users):
        return self.user_factors[self._check_users(users)] @ self.item_factors.T

    def fold_in(self, liked, steps=60, seed=0):
        """User vector [d + 1] (last entry 1) maximising BPR's objective with the items frozen: the mean of
        log sigmoid(x_i - x_j) over liked i and non-liked j drawn as implicit draws them (in proportion to
        their train counts), minus regularization / 2 * |x|^2. Newton's method from zero, at most ``steps``
        iterations (about 5 suffice). Deterministic; seed unused.

        Not a ridge solve (least squares against the item factors, as ALS): on ML-100k that finds about 13% of a
        known user's top 20 from their own history, this 73% (seed 0; tests/test_recsys_library.py holds it
        above 65%)."""
        from scipy.special import expit

        liked = self._liked(liked)
        others = np.setdiff1d(np.arange(self.n_items), liked)
        x = np.zeros(self.factors)
        if not (len(liked) and len(others)):
            return np.append(x, 1.0).astype(np.float32)
        w = self._item_counts[others].astype(np.float64)
        w = w / w.sum() if w.sum() > 0 else np.full(len(others), 1.0 / len(others))
        Q, bias = self.item_factors[:, :-1].astype(np.float64), self.item_factors[:, -1].astype(np.float64)
        QL, QN, bL, bN, reg = Q[liked], Q[others], bias[liked], bias[others], self.regularization

        def objective(x):  # and the margins x_i - x_j [L, N - L]
            margin = (QL @ x + bL)[:, None] - (QN @ x + bN)[None, :]
            return (np.logaddexp(0.0, -margin) * w).sum() / len(liked) + 0.5 * reg * x @ x, margin

        with _one_blas_thread():  # small products: BLAS threads only wait on each other
            f, margin = objective(x)
            for _ in range(steps):
                s = expit(-margin)
                g, c = s * w / len(liked), s * (1.0 - s) * w / len(liked)
                grad = g.sum(0) @ QN - g.sum(1) @ QL + reg * x
                cross = QL.T @ c @ QN
                hess = (QL.T * c.sum(1)) @ QL + (QN.T * c.sum(0)) @ QN - cross - cross.T + reg * np.eye(len(x))
                step, t = np.linalg.solve(hess, grad), 1.0
                while (new := objective(x - t * step))[0] > f and t > 1e-4:  # halve a step that overshoots
                    t /= 2
                if new[0] > f:  # no step lowers it: converged to rounding
                    break
                x, gain, (f, margin) = x - t * step, f - new[0], new
                if gain <= 1e-9 * max(abs(f), 1.0):
                    break
        return np.append(x, 1.0).astype(np.float32)

    def score_params(self, params):
        return self.item_factors @ np.asarray(params, np.float32)

    def item_embeddings(self):
        """Item factors [N, d], without the bias column (a bias is no taste dimension)."""
        return self.item_factors[:, :-1]


class ItemKNN(_Library):
    """implicit's item-item cosine nearest neighbours (``CosineRecommender``): cosine between items over the
    users who liked them, each item's ``neighbours`` most similar kept (itself among them, as implicit keeps
    it); a user's score for item j is the sum of sim(i, j) over their liked items i, as implicit's
    ``recommend`` scores. neighbours 20: implicit's default K. Deterministic; seed unused.
    """

    name = "itemknn"

    def __init__(self, seed: int = 0, neighbours: int = 20, num_threads: int = 1):
        self.seed, self.neighbours, self.num_threads = seed, neighbours, num_threads

    def _fit(self, X, show_progress):
        from implicit.nearest_neighbours import CosineRecommender
        from implicit.utils import ParameterWarning

        with _one_blas_thread(), warnings.catch_warnings():
            # CosineRecommender hands its own normalised COO matrix on, and implicit warns at itself about it
            warnings.simplefilter("ignore", ParameterWarning)
            model = CosineRecommender(K=self.neighbours, num_threads=self.num_threads)
            model.fit(X, show_progress=show_progress)
        self.similarity = model.similarity.tocsr().astype(np.float32)  # [N, N], `neighbours` a row

    def score_all(self, users):
        return (self._train[self._check_users(users)] @ self.similarity).toarray().astype(np.float32)

    def fold_in(self, liked, steps=60, seed=0):
        """The user's scores [N]: the sum of the liked items' similarity rows."""
        return np.asarray(self.similarity[self._liked(liked)].sum(axis=0), np.float32).ravel()

    def score_params(self, params):
        return np.array(params, np.float32)


class EASE(_Library):
    """EASE (Steck 2019): the item-item B = I - P / diag(P) (column-wise), P = (X'X + l2 I)^-1, zero diagonal;
    a user's scores are their liked indicator times B. Dense [N, N]: for catalogs up to some 10^4 items.
    l2 250: RecBole's default ``reg_weight`` for EASE (the bench reads ML-100k from RecBole's files);
    `simulator.evidence`'s 1000 was tuned for another matrix (every rated item). Deterministic; seed unused.
    """

    name = "ease"

    def __init__(self, seed: int = 0, l2: float = 250.0):
        self.seed, self.l2 = seed, l2

    def _fit(self, X, show_progress):
        G = (X.T @ X).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += self.l2
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]
        np.fill_diagonal(B, 0.0)
        self.B = B.astype(np.float32)  # [N, N]

    def score_all(self, users):
        return np.asarray(self._train[self._check_users(users)] @ self.B, np.float32)

    def fold_in(self, liked, steps=60, seed=0):
        """The user's scores [N]: the sum of the liked items' rows of B."""
        return self.B[self._liked(liked)].sum(axis=0)

    def score_params(self, params):
        return np.array(params, np.float32)
