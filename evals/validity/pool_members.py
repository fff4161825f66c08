"""The pool of A/B fidelity (`evals.validity.pool`): its members, trained on one split's train part, and their
ranked lists. A member that raises while training or ranking is a failed row; the rest run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from evals.validity.fidelity_ab import rank_unseen
from evals.validity.grounding import LIKED_MIN
from recsys.models import Recommender
from simulator.evidence import ItemSpace


log = logging.getLogger(__name__)

#: The list each recommender is judged on: its top DEPTH, shown as pages of ``FidelityConfig.slate_size``.
DEPTH = 10


#: Days of the recency model's window (the 30-day window `benchmarks/twin_ceiling.py` tried as a feature).
RECENT_DAYS = 30.0
#: Families whose members rank without the user's own history: left out of the "close competitors".
UNPERSONALISED = ("random", "popularity", "recency")


# ---- the pool ------------------------------------------------------------------------------------

@dataclass
class PoolInputs:
    """What a member trains on: ``matrix`` the split's train positives [n_users, N] (CSR), ``ratings`` its train
    ratings (all of them, with timestamps), ``space`` the simulator's item space of the same train part, the
    registry ``settings``, the members fitted so far (AMP-CF-from-MF starts from 'mf'), and the ``split``
    itself (`recsys.time_splits.TimeSplit`), whose validation split a member may tune on (`tuned_als`)."""

    matrix: object
    ratings: pd.DataFrame
    space: ItemSpace
    settings: object
    fitted: dict = field(default_factory=dict)
    split: object | None = None


@dataclass(frozen=True)
class Member:
    """One recommender of the pool. ``fit(inputs)`` gives it trained (None ranks at random, as `rank_unseen`);
    or it reranks the trained ``base``'s scores with ``reranker`` (`recsys.pipeline.slate`). ``probe``: the
    evidence family it ranks by (`EvidenceProbe`), None for a real recommender."""

    name: str
    family: str
    fit: Callable[[PoolInputs], object] | None = None
    base: str | None = None
    reranker: object | None = None
    probe: str | None = None


class RecentPopularity(Recommender):
    """Recency: an item's training positives in the ``days`` up to the user's last training rating (a user
    without one: up to the training part's last rating), all-time positives breaking ties. What was being
    watched when the user was last seen. Per user, not the last days of train as a whole: under a per-user
    split those are, for most users, after their test period."""

    name = "recent-pop"

    def __init__(self, ratings: pd.DataFrame, days: float = RECENT_DAYS):
        self.ratings, self.days = ratings, days

    def fit(self, train, show_progress=False):
        t0 = time.perf_counter()
        self._remember(train)
        pos = self.ratings[self.ratings["rating"] >= LIKED_MIN].sort_values("timestamp", kind="stable")
        self._t, self._items = pos["timestamp"].to_numpy(float), pos["item"].to_numpy(np.int64)
        self._last = np.full(self.n_users, float(self.ratings["timestamp"].max()))
        last = self.ratings.groupby("user")["timestamp"].max()
        self._last[last.index.to_numpy()] = last.to_numpy(float)
        counts = np.bincount(self._items, minlength=self.n_items).astype(np.float64)
        self._ties = counts / (counts.max() + 1.0)  # < 1: never outweighs one rating in the window
        self.train_s = time.perf_counter() - t0
        return self

    def score_all(self, users):
        users = self._check_users(users)
        out = np.empty((len(users), self.n_items), np.float32)
        for row, u in enumerate(users):
            lo, hi = np.searchsorted(self._t, [self._last[u] - self.days * 86400.0, self._last[u]], side="right")
            out[row] = np.bincount(self._items[lo:hi], minlength=self.n_items) + self._ties
        return out


class EvidenceProbe(Recommender):
    """Ranks by the simulator's own evidence for the user's train-rated items (any rating), as a twin's memory
    holds them (`evals.validity.grounding.memories`): 'ease', the ease feature's item-item weights
    (`simulator.evidence.ease_percentile`: watched @ B), or 'svd', the cf feature's PureSVD
    (`cf_percentile`: factors @ taste, taste the sum of the rated items' factors). The same order as those
    percentiles: the recommender the simulator's evidence would be."""

    def __init__(self, kind: str, space: ItemSpace, ratings: pd.DataFrame):
        if kind not in ("ease", "svd"):
            raise ValueError(f"probe kind {kind!r}: 'ease' or 'svd'")
        self.kind, self.space, self.ratings, self.name = kind, space, ratings, f"{kind}-probe"

    def fit(self, train, show_progress=False):
        self._remember(train)
        self.watched = np.zeros((self.n_users, self.n_items), np.float32)  # [U, N]
        self.watched[self.ratings["user"].to_numpy(), self.ratings["item"].to_numpy()] = 1.0
        return self

    def score_all(self, users):
        w = self.watched[self._check_users(users)]
        if self.kind == "ease":
            return w @ self.space.ease
        return (w @ self.space.factors) @ self.space.factors.T


def _registry(name: str) -> Callable[[PoolInputs], object]:
    def fit(inputs: PoolInputs):
        from recsys.registry import resolve, train

        start = inputs.fitted.get("mf") if resolve(name).starts_from_mf else None
        return train(name, inputs.settings, inputs.matrix, start=start)

    return fit


#: The grid `tuned_als` searches: ALS's defaults (`recsys.library.ALS`) were fixed on the per-user bench
#: protocol, where they reproduce implicit's published figure; under leave-future-out they rank 13th of 14.
ALS_GRID = {"factors": (32, 64, 128), "regularization": (0.05, 1.0, 10.0), "alpha": (1.0, 5.0, 20.0)}


def offline_truth(ranked: dict[str, dict[int, np.ndarray]], positives: dict[int, set], users: np.ndarray,
                  k: int = DEPTH) -> dict[str, dict[str, np.ndarray]]:
    """{member: {'recall': [n], 'ndcg': [n]}} per user of ``users``: Recall@k = hits / min(k, positives) and
    NDCG@k with binary relevance (positives = the user's test ratings >= 4)."""
    disc = 1.0 / np.log2(np.arange(k) + 2.0)
    out = {}
    for name, top in ranked.items():
        rec, ndcg = np.zeros(len(users)), np.zeros(len(users))
        for j, u in enumerate(users):
            pos = positives[int(u)]
            hit = np.array([int(i) in pos for i in top[int(u)][:k]], bool)
            rec[j] = hit.sum() / min(k, len(pos))
            ndcg[j] = disc[:len(hit)][hit].sum() / disc[:min(k, len(pos))].sum()
        out[name] = {"recall": rec, "ndcg": ndcg}
    return out


def held_out(split) -> tuple[dict[int, set], np.ndarray, dict[int, set]]:
    """What the offline truth of ``split`` reads: ({user: its test positives (ratings >= LIKED_MIN), possibly
    none}, the users with one [n], {user: its train-rated items}: what a ranking leaves out)."""
    positives = {int(u): set(g.loc[g["rating"] >= LIKED_MIN, "item"].tolist()) for u, g in split.test.groupby("user")}
    users = np.array(sorted(u for u, s in positives.items() if s), dtype=np.int64)
    seen = {int(u): set(g["item"].tolist()) for u, g in split.train.groupby("user")}
    return positives, users, seen


def tuned_als(inputs: PoolInputs, grid: dict | None = None):
    """implicit's ALS with the hyper-parameters of ``grid`` (default `ALS_GRID`) that give the best Recall@10 on
    the split's *validation* split (`TimeSplit.inner`: its own train part, cut again), refitted on the whole
    train part. The test part is never read. Without a split, the registry's ALS. The choice is the model's
    ``tuned`` record: the parameters, their validation recall, the validation split's key and the grid."""
    from itertools import product

    from recsys.library import ALS

    if inputs.split is None:
        return _registry("als")(inputs)
    grid = ALS_GRID if grid is None else grid
    inner = inputs.split.inner()
    pos, users, seen = held_out(inner)
    X = inner.train_positives()
    scores = []
    for values in product(*grid.values()):
        params = dict(zip(grid, values))
        ranked = rank_unseen({"als": ALS(seed=inputs.settings.seed, **params).fit(X)}, users, seen, inner.n_items,
                             DEPTH, 0)
        scores.append((float(offline_truth(ranked, pos, users)["als"]["recall"].mean()), params))
    best_recall, best = max(scores, key=lambda t: t[0])  # the first of equals, in grid order
    model = ALS(seed=inputs.settings.seed, **best).fit(inputs.matrix)
    model.tuned = {"params": best, "validation_recall@10": round(best_recall, 4), "validation": inner.key,
                   "validation_users": int(len(users)), "grid": {k: list(v) for k, v in grid.items()}}
    return model


def default_pool(other_lambda: float = 0.5, recent_days: float = RECENT_DAYS) -> list[Member]:
    """The pool: random, popularity, recency, the registry's MF, AMP-CF (K mixture components from `Settings`), AMP-CF
    started from MF, implicit's ALS (tuned on the split's validation split: `tuned_als`), BPR and item-kNN,
    EASE, and MF + MMR and MF + DPP each at its validation-tuned lambda (`recsys.bench.TUNED_LAMBDAS`) and at
    ``other_lambda`` (another value of the bench's grid). Families as the registry names them, plus random,
    recency and reranked."""
    from recsys.bench import TUNED_LAMBDAS
    from recsys.pipeline import Reranker
    from recsys.registry import BUILTINS

    members = [Member("random", "random", fit=lambda i: None), Member("pop", "popularity", fit=_registry("pop")),
               Member("recent-pop", "recency", fit=lambda i: RecentPopularity(i.ratings, recent_days).fit(i.matrix))]
    members += [Member(n, BUILTINS[n].family, fit=tuned_als if n == "als" else _registry(n))
                for n in ("mf", "ampcf", "ampcf-mf", "als", "bpr", "itemknn", "ease")]
    for kind in ("mmr", "dpp"):
        for lam in dict.fromkeys((TUNED_LAMBDAS[f"mf+{kind}"], other_lambda)):
            members.append(Member(f"mf+{kind}@{lam:g}", "reranked", base="mf", reranker=Reranker(kind, lam)))
    return members


def probes() -> list[Member]:
    """The two probes that rank by the simulator's own evidence (`EvidenceProbe`)."""
    return [Member(f"{k}-probe", "probe", fit=lambda i, k=k: EvidenceProbe(k, i.space, i.ratings).fit(i.matrix),
                   probe={"ease": "ease", "svd": "svd"}[k]) for k in ("ease", "svd")]


@dataclass
class Fitted:
    """A member after training: its model (None for random), or the one-line error that stopped it."""

    member: Member
    model: object | None = None
    error: str | None = None
    train_s: float = 0.0


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def fit_pool(members: list[Member], inputs: PoolInputs, show_progress: bool = False) -> dict[str, Fitted]:
    """Train every member in order; one that raises is a failed `Fitted` (a reranker whose base failed too)."""
    out: dict[str, Fitted] = {}
    for m in tqdm(members, desc="training the pool", unit="model", disable=not show_progress):
        t0 = time.perf_counter()
        try:
            if m.base is not None:
                base = out.get(m.base)
                if base is None or base.error is not None:
                    raise RuntimeError(f"its base {m.base!r} did not train")
                model = base.model
            else:
                model = m.fit(inputs)
                inputs.fitted[m.name] = model
            out[m.name] = Fitted(m, model, None, time.perf_counter() - t0)
        except Exception as exc:  # any failure of one recommender is its row's, never the run's
            log.warning("recommender %s failed to train: %s", m.name, _one_line(exc))
            out[m.name] = Fitted(m, None, _one_line(exc), time.perf_counter() - t0)
    return out


def rank_pool(fitted: dict[str, Fitted], users: np.ndarray, seen: dict[int, set], n_items: int, genres: np.ndarray,
              seed: int, depth: int = DEPTH) -> dict[str, dict[int, np.ndarray]]:
    """{member: {user: top-``depth`` item indices}}, train-rated items excluded; a member that raises here is
    marked failed in ``fitted`` and left out."""
    from recsys.pipeline import slate

    out = {}
    for name, f in fitted.items():
        if f.error is not None:
            continue
        try:
            if f.member.reranker is None:
                out[name] = rank_unseen({name: f.model}, users, seen, n_items, depth, seed)[name]
                continue
            emb, ranked = f.model.item_embeddings(), {}
            for lo in range(0, len(users), 256):
                chunk = users[lo:lo + 256]
                for row, u in zip(f.model.score_all(chunk), chunk):
                    ranked[int(u)] = slate(row, depth, exclude=np.fromiter(seen.get(int(u), ()), np.int64),
                                           reranker=f.member.reranker, genres=genres, embeddings=emb)
            out[name] = ranked
        except Exception as exc:
            log.warning("recommender %s failed to rank: %s", name, _one_line(exc))
            f.error = f"ranking: {_one_line(exc)}"
    return out

