"""The recommender contract: what any model must do to be bench-scored and to meet simulated users, and the
suite that checks it (`check_contract`; CLI: `personasim recsys check TARGET`).

A recommender is an object with these methods (shapes: B users, N = catalog size, L liked items):

- ``fit(train)``: train on a CSR matrix [n_users, N] of positives (1 = liked); returns the model (or None).
- ``score_all(users)``: float scores [B, N] for known user indices [B] (the offline bench ranks by these).
- ``fold_in(liked, steps=60, seed=0)``: the parameters of a *new* user who liked item indices [L] (a simulated
  user is always new to the model); any picklable value.
- ``score_params(params)``: float scores [N] for those parameters (a campaign's slates rank by these).

Optional: ``item_embeddings()`` -> [N, d] or None (embedding diversity and the MMR / DPP rerankers on catalogs
without genres); ``explain_params(params, items)`` -> attention [len(items), K] (AMP-CF: the "mixture"
reranker and the A/B's mixture-component attribution); ``set_catalog(item_ids, categories)``, called before ``fit`` with
the data set's own id and category names (genres; [] where the data have none) of each item column: a service
knows items by its ids, a plug-in may rank by category. What a model has is its `capabilities`.

A fitted model must pickle (a campaign saves it once and its workers load it). `recsys.Recommender` is the
base class the built-ins subclass; it adds ``recommend`` and input checks. A plug-in need not subclass it:
`as_recommender` wraps any object that keeps the contract, so built-ins and plug-ins are treated alike.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from recsys.models import Recommender, RecsysError

REQUIRED = ("fit", "score_all", "fold_in", "score_params")
#: capability -> the method that gives it
OPTIONAL = {"item_embeddings": "item_embeddings", "attention": "explain_params"}


@dataclass(frozen=True)
class Catalog:
    """The data set's own id and categories of each item column, for models that ask (``set_catalog``)."""

    item_ids: list[str]
    categories: list[list[str]]

    @classmethod
    def of(cls, items) -> "Catalog":
        """From a `recsys.data.Dataset`'s ``items`` frame (item_id, genres)."""
        return cls([str(i) for i in items["item_id"]], [list(g) for g in items["genres"]])


def give_catalog(model, catalog: Catalog | None) -> None:
    """Hand ``catalog`` to ``model`` when it has ``set_catalog``."""
    if catalog is not None and callable(getattr(model, "set_catalog", None)):
        _call(model, "set_catalog", list(catalog.item_ids), [list(c) for c in catalog.categories])


class ContractError(RecsysError):
    """A model that breaks the contract; the message names the method."""


@runtime_checkable
class RecommenderContract(Protocol):
    def fit(self, train: sp.csr_matrix) -> Any: ...

    def score_all(self, users: np.ndarray) -> np.ndarray: ...

    def fold_in(self, liked: np.ndarray, steps: int = 60, seed: int = 0) -> Any: ...

    def score_params(self, params: Any) -> np.ndarray: ...


def capabilities(model) -> frozenset[str]:
    """What a fitted model offers beyond the required methods: 'item_embeddings' (it returns some),
    'attention' (it has ``explain_params`` and K > 1 mixture components)."""
    inner = getattr(model, "inner", model)
    caps = set()
    emb = getattr(inner, "item_embeddings", None)
    if callable(emb) and emb() is not None:
        caps.add("item_embeddings")
    if callable(getattr(inner, "explain_params", None)) and getattr(inner, "k", 1) > 1:
        caps.add("attention")
    return frozenset(caps)


class Plugged(Recommender):
    """Any object that keeps the contract, behind `Recommender` (``recommend``, input checks, timing)."""

    def __init__(self, inner, name: str):
        self.inner, self.name = inner, name

    def fit(self, train, show_progress: bool = False):
        t0 = time.perf_counter()
        self._remember(train)
        _call(self.inner, "fit", train)
        self.train_s = time.perf_counter() - t0
        return self

    def score_all(self, users):
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        return _scores(_call(self.inner, "score_all", users), (len(users), self.n_items), "score_all")

    def fold_in(self, liked, steps=60, seed=0):
        return _call(self.inner, "fold_in", np.asarray(liked, dtype=np.int64), steps=steps, seed=seed)

    def score_params(self, params):
        return _scores(_call(self.inner, "score_params", params), (self.n_items,), "score_params")

    def item_embeddings(self):
        emb = getattr(self.inner, "item_embeddings", None)
        return None if emb is None else emb()

    def __getattr__(self, attr):  # explain_params, k, ... when the plug-in has them
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)


def as_recommender(model, name: str) -> Recommender:
    """``model`` itself when it subclasses `Recommender`, else wrapped (`Plugged`). ContractError naming the
    first required method it lacks."""
    if isinstance(model, Recommender):
        return model
    for method in REQUIRED:
        if not callable(getattr(model, method, None)):
            raise ContractError(f"{name}: has no method {method}() (the contract: {', '.join(REQUIRED)})")
    return Plugged(model, name)


def _call(model, method: str, *args, **kwargs):
    try:
        return getattr(model, method)(*args, **kwargs)
    except RecsysError:
        raise
    except Exception as exc:  # a plug-in's own failure, named by method
        first = (str(exc).splitlines() or [""])[0]
        raise ContractError(f"{method}() raised {type(exc).__name__}: {first}") from exc


def _scores(out, shape: tuple[int, ...], method: str) -> np.ndarray:
    arr = np.asarray(out)
    if arr.shape != shape:
        raise ContractError(f"{method}() returned shape {arr.shape}, expected {shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ContractError(f"{method}() returned {arr.dtype} values, expected numbers")
    if np.isnan(arr).any():
        raise ContractError(f"{method}() returned NaN scores")
    return arr.astype(np.float32, copy=False)


def check_contract(model, train: sp.csr_matrix, name: str = "model", catalog: Catalog | None = None) -> dict:
    """Run the contract suite on an unfitted ``model`` with ``train`` (CSR positives [n_users, N]; ``catalog``:
    for a model with ``set_catalog``): fit, known-user scores, fold-in of a new user and its
    scores (the same seed gives the same scores), ranking without the items excluded, optional embeddings and
    attention, and a pickle round trip that scores the same. A `Recommender` passed in is fitted in place.
    Returns {"name", "capabilities", "fit_s", "checks": [names passed]}; ContractError naming the method that
    broke."""
    checks = []
    rec = as_recommender(model, name)
    give_catalog(rec, catalog)
    rec = rec.fit(train) if isinstance(rec, Plugged) else _fitted(rec, train)
    checks.append("fit")
    n_users, n_items = train.shape
    users = np.arange(min(n_users, 8))
    scores = _scores(rec.score_all(users), (len(users), n_items), "score_all")
    checks.append("score_all")
    top, _ = rec.recommend(users, 5)
    for u, row in zip(users, top):
        if np.intersect1d(row, train[u].indices).size:
            raise ContractError(f"recommend(): user {u}'s top 5 holds a training positive")
    checks.append("recommend excludes seen")
    liked = train[int(np.argmax(np.diff(train.indptr)))].indices[:5]
    a = _scores(rec.score_params(rec.fold_in(liked, seed=3)), (n_items,), "score_params")
    b = _scores(rec.score_params(rec.fold_in(liked, seed=3)), (n_items,), "score_params")
    if not np.allclose(a, b, atol=1e-5, equal_nan=True):
        raise ContractError("fold_in(): the same likes and seed gave different scores; fold-in must be seeded")
    checks.append("fold_in + score_params, seeded")
    caps = capabilities(rec)
    if "item_embeddings" in caps:
        emb = np.asarray(rec.item_embeddings())
        if emb.ndim != 2 or emb.shape[0] != n_items or not np.isfinite(emb).all():
            raise ContractError(f"item_embeddings() returned shape {emb.shape} or non-finite values, expected "
                                f"[{n_items}, d] finite")
        checks.append("item_embeddings")
    if "attention" in caps:
        att = np.asarray(rec.explain_params(rec.fold_in(liked, seed=3), np.arange(n_items)))
        if att.shape != (n_items, rec.k) or not np.allclose(att.sum(1), 1, atol=1e-4):
            raise ContractError(f"explain_params() returned shape {att.shape} or rows not summing to 1, expected "
                                f"[{n_items}, {rec.k}] attention")
        checks.append("explain_params")
    try:
        again = pickle.loads(pickle.dumps(rec))
    except Exception as exc:
        raise ContractError(f"a fitted model must pickle (a campaign saves it once): {type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0]}") from exc
    if not np.allclose(_scores(again.score_all(users), scores.shape, "score_all"), scores, atol=1e-5, equal_nan=True):
        raise ContractError("score_all(): a pickled and reloaded model scores differently")
    checks.append("pickle round trip")
    return {"name": name, "capabilities": sorted(caps), "fit_s": round(float(rec.train_s), 3), "checks": checks}


def _fitted(rec: Recommender, train) -> Recommender:
    t0 = time.perf_counter()
    out = rec.fit(train)
    if out is not None and out is not rec and not isinstance(out, Recommender):
        raise ContractError(f"fit() returned {type(out).__name__}, expected the model")
    rec = out if isinstance(out, Recommender) else rec
    rec.train_s = rec.train_s or time.perf_counter() - t0
    return rec
