"""The validation rows the grounded users' evidence is chosen on: one place, so every choice sees the same data.

The calibration's inner split (the outer training part split again by the same
per-user time rule, `recsys.TimeSplit.inner`) is the only data read: the outer test
part, on which `personasim validate fidelity` reports, is never touched. Rows are
built as `personasim calibrate` builds them: up to 3 validation positives (rating >= 4)
per user, each against one never-rated item drawn uniformly (``UNIFORM``) and one
popularity-matched (``MATCHED``), the fidelity benchmark's two kinds of negatives.
Used by benchmarks/cf_factors.py, ease_feature.py and twin_ceiling.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


POSITIVE, UNIFORM, MATCHED = 1, 0, 2


@dataclass
class Rows:
    """One row per (user, item): ``user`` [R] the position in ``users``, ``kind`` [R], ``item`` [R].
    ``split``: the time split the rows come from (its train part is the evidence, its test part
    the labels; the calibration's inner split for validation rows); ``space``: its train's
    `simulator.evidence.ItemSpace`."""

    ds: object
    split: object
    space: object
    users: np.ndarray
    user: np.ndarray
    kind: np.ndarray
    item: np.ndarray

    def watched(self) -> np.ndarray:
        """The train part's "watched" matrix [users x items], 0/1."""
        W = np.zeros((self.ds.n_users, self.ds.n_items))
        W[self.split.train["user"], self.split.train["item"]] = 1
        return W

    def uniform_by_user(self, at: np.ndarray) -> list[np.ndarray]:
        """One mask [R] per user: their positives and uniform negatives among the rows ``at``."""
        uni = at & (self.kind != MATCHED)
        return [uni & (self.user == n) for n in np.unique(self.user[uni])]

    def accuracy_uniform(self, score: np.ndarray, at: np.ndarray, threshold: float = 0.0) -> float:
        """Mean over users of the accuracy of ``score > threshold`` on their positives and uniform negatives."""
        return float(np.mean([((score[m] > threshold) == (self.kind[m] == POSITIVE)).mean()
                              for m in self.uniform_by_user(at)]))

    def auc(self, score: np.ndarray, at: np.ndarray, negatives: int) -> float:
        """Pooled AUC of ``score`` on the positives against one kind of negative (UNIFORM or MATCHED)."""
        from sklearn.metrics import roc_auc_score

        rows = at & ((self.kind == POSITIVE) | (self.kind == negatives))
        return float(roc_auc_score(self.kind[rows] == POSITIVE, score[rows]))


def over_draws(values) -> str:
    """'mean [min, max]' of one figure over several draws of the rows."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4f} [{v.min():.4f}, {v.max():.4f}]"


def validation_rows(n_users: int | None = None, seed: int = 0, per_user: int = 3) -> Rows:
    """Rows for ``n_users`` inner-split users in a seeded random order (all of them when None)."""
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens, time_split

    ds = load_movielens(ml100k_dir())
    inner = time_split(ds, 0.2).inner()
    rng = np.random.default_rng(seed)
    users = rng.permutation(sorted(inner.test["user"].unique()))[:n_users]
    return draw_rows(ds, inner, users, rng, per_user)


def draw_rows(ds, split, users: np.ndarray, rng: np.random.Generator, per_user: int = 3) -> Rows:
    """Rows of ``users`` on any time ``split``, as `personasim calibrate` draws them: up to ``per_user``
    of a user's test positives, each with one never-rated item drawn uniformly and one matched to its
    popularity (never-rated: outside the user's train and test parts). A user without a test positive
    gets no rows."""
    from evals.validity.calibration import draw_negatives, pop_bins
    from evals.validity.grounding import LIKED_MIN, item_space

    space = item_space(ds, split.train)
    bins = pop_bins(space)
    rated = {u: set(g["item"]) for u, g in split.train.groupby("user")}
    test_by = dict(tuple(split.test.groupby("user")))
    rows = []
    for n, u in enumerate(users):
        g = test_by.get(u, split.test.iloc[:0])
        pos = rng.permutation(g.loc[g["rating"] >= LIKED_MIN, "item"].to_numpy().copy())[:per_user]
        if not len(pos):
            continue
        seen = rated.get(u, set()) | set(g["item"])
        for kind, items in ((POSITIVE, pos), (UNIFORM, draw_negatives(rng, seen, pos, 1, bins, matched=False)),
                            (MATCHED, draw_negatives(rng, seen, pos, 1, bins, matched=True))):
            rows += [(n, kind, int(i)) for i in items]
    user, kind, item = (np.array(c) for c in zip(*rows))
    return Rows(ds, split, space, np.asarray(users), user, kind, item)


def twin_memories(rows: Rows) -> dict[int, object]:
    """{position in ``rows.users``: that user's twin memory (its train history) for every user with rows."""
    from evals.validity.grounding import memories

    uid = rows.ds.users["user_id"].astype(str).to_numpy()
    mems = memories(rows.ds, rows.split.train, {u: "all" for u in uid}, rows.space)  # twins only: one persona holds all
    return {int(n): mems[f"twin:{uid[rows.users[n]]}"] for n in np.unique(rows.user)}


def twin_evidence(rows: Rows, features=None) -> np.ndarray:
    """The evidence features [R, F] of every row (``features``, default all of
    `simulator.evidence.EVIDENCE`, in that order), each user's memory its twin's (the split's train)
    history, read through ``rows.space`` (set its ``ease`` to try another penalty)."""
    from simulator.evidence import EVIDENCE, evidence_features

    X = np.zeros((len(rows.item), len(EVIDENCE)))
    for n, memory in twin_memories(rows).items():
        at = rows.user == n
        X[at] = evidence_features(rows.space, memory, rows.item[at])
    return X if features is None else columns(X, features)


def columns(X: np.ndarray, features) -> np.ndarray:
    """The ``features`` columns of evidence features ``X`` [R, len(EVIDENCE)], in that order."""
    from simulator.evidence import EVIDENCE

    return X[:, [EVIDENCE.index(f) for f in features]]
