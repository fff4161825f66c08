"""Recommenders by name, built, trained and scored offline: the one API that the offline bench
(`recsys.bench`) and campaigns (`evals.campaign.world`) share, so a campaign's 'mf' or 'ampcf' is built by the
same code, with the same defaults, as the bench's.

The bench's own model variants are `Variant`s: a kind and its settings as fields (K mixture components, user
vectors per user; started from a trained MF or not). Their labels ('pop', 'mf', 'ampcf-kK', 'ampcf-kK-mf') name
them in result files and in the tuned settings; a label is made from the fields and never parsed back
(`bench_variants` is the catalogue a label is looked up in).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from recsys import metrics
from recsys.data import Split
from recsys.factorised import AMPCF, MF
from recsys.models import Popularity, Recommender, RecsysError, TrainConfig
from recsys.pipeline import Reranker, reranked_top_k
from recsys.registry import AMPCF_BATCH

#: The shared base config (used by campaigns and fidelity); MF: reg 1e-2 -> 3e-2 gave 0.080 -> 0.084 on seed 0's
#: *test* split, before validation tuning existed. The bench itself trains with its validation-tuned overrides.
DEFAULT_TRAIN = TrainConfig(dim=64, epochs=6, lr=1e-2, reg=3e-2, batch_size=1024, loss="softmax")


@dataclass(frozen=True)
class Variant:
    """One of the bench's model variants: ``kind`` 'pop', 'mf' or 'ampcf'; AMP-CF with ``k`` mixture components,
    its components started from a trained MF when ``from_mf`` (K >= 2: with one component it is MF)."""

    kind: str
    k: int = 1
    from_mf: bool = False

    def __post_init__(self):
        if self.kind not in ("pop", "mf", "ampcf"):
            raise RecsysError(f"unknown model kind {self.kind!r}: expected 'pop', 'mf' or 'ampcf'")
        if self.kind != "ampcf" and (self.k != 1 or self.from_mf):
            raise RecsysError(f"{self.kind!r} has no mixture components: k and from_mf are AMP-CF's")
        if self.k < (2 if self.from_mf else 1):
            raise RecsysError(f"AMP-CF with k={self.k}" + (" started from MF needs k >= 2 (with one component it is "
                                                           "MF)" if self.from_mf else " needs k >= 1"))

    @property
    def label(self) -> str:
        """The name in result files: 'pop', 'mf', 'ampcf-kK' or 'ampcf-kK-mf'."""
        if self.kind != "ampcf":
            return self.kind
        return f"ampcf-k{self.k}" + ("-mf" if self.from_mf else "")


def bench_variants(ks=(1, 2, 4, 8), pretrained=(2, 4, 8)) -> dict[str, Variant]:
    """The catalogue of the bench's variants by label: pop, mf, AMP-CF with each K of ``ks``, and started from MF
    with each K of ``pretrained``."""
    variants = [Variant("pop"), Variant("mf")] + [Variant("ampcf", k) for k in ks] + \
        [Variant("ampcf", k, from_mf=True) for k in pretrained]
    return {v.label: v for v in variants}


def make_recommender(variant: Variant, train: TrainConfig, *, tau: float = 0.5, att_dim: int | None = 16,
                     peak_reg: float = 0.0, spread_reg: float = 0.0, pretrain: TrainConfig | None = None) -> Recommender:
    """An untrained recommender of ``variant`` on ``train`` (AMP-CF: attention temperature, attention dims and
    regularisers as given; its batch size is ``train.batch_size``). A variant started from MF starts its mixture
    components from an MF trained on ``pretrain`` (`AMPCF._start_from_mf`)."""
    if variant.kind == "pop":
        return Popularity()
    if variant.kind == "mf":
        return MF(train)
    if variant.from_mf and pretrain is None:
        raise RecsysError(f"{variant.label!r} starts from an MF: give the MF's training config (pretrain=...)")
    return AMPCF(train, k=variant.k, tau=tau, att_dim=att_dim, peak_reg=peak_reg, spread_reg=spread_reg,
                 pretrain=pretrain if variant.from_mf else None)


def campaign_train_config(variant: Variant, train: TrainConfig) -> TrainConfig:
    """``train`` as a campaign trains ``variant``: AMP-CF with its own batch size (AMPCF_BATCH), the rest shared."""
    return replace(train, batch_size=AMPCF_BATCH) if variant.kind == "ampcf" else train


def train_recommender(variant: Variant, train_matrix: sp.csr_matrix, train: TrainConfig, show_progress: bool = False,
                      start: MF | None = None, **attention) -> Recommender:
    """`make_recommender` fitted on CSR positives [n_users, n_items]; a variant started from MF starts from ``start``
    when given (the MF its ``pretrain`` config trains, already trained), else trains that MF itself."""
    model = make_recommender(variant, train, **attention)
    if variant.kind == "pop":
        return model.fit(train_matrix)
    return model.fit(train_matrix, show_progress=show_progress, start=start)


@dataclass(frozen=True)
class Lists:
    """What a list metric reads: the top-``k`` lists ``recs`` [n_users, k] of the split's test users, their held-out
    items ``test_items`` [n_users], their train histories, the catalog's ``genres`` [N, G] (G may be 0), its size
    ``n_items``, and the ``model`` that ranked (for its item embeddings)."""

    recs: np.ndarray
    k: int
    test_items: np.ndarray
    histories: list[np.ndarray]
    genres: np.ndarray
    n_items: int
    model: Recommender


@dataclass(frozen=True)
class ListMetric:
    """One offline metric of top-k lists: ``value(lists)`` -> float (NaN where undefined); ``summarised``: averaged
    over seeds by the bench's multi-seed summary (`recsys.bench.run_seeds`)."""

    name: str
    value: Callable[[Lists], float]
    summarised: bool = True


#: The offline metrics of every evaluated variant, by column name. Add one: a function in `recsys.metrics` and one
#: line here; the bench, the map, a campaign's offline table and the multi-seed summary read it from here, and
#: tests/test_recsys_offline.py checks every entry. (recsys imports nothing of ours, so this is a plain dict, not
#: `personas.infra.registry`.)
LIST_METRICS: dict[str, ListMetric] = {m.name: m for m in (
    ListMetric("recall@10", lambda ls: metrics.recall(ls.recs, ls.test_items, ls.k)),
    ListMetric("mrr@10", lambda ls: metrics.mrr(ls.recs, ls.test_items, ls.k), summarised=False),
    ListMetric("ild@10", lambda ls: _ild(ls.recs, ls.genres, ls.model)),
    ListMetric("coverage@10", lambda ls: metrics.coverage(ls.recs, ls.n_items)),
    ListMetric("gini@10", lambda ls: metrics.gini(ls.recs, ls.n_items), summarised=False),
    ListMetric("calibration_kl@10", lambda ls: metrics.calibration_kl(ls.recs, ls.histories, ls.genres)
               if ls.genres.shape[1] else float("nan")),
    ListMetric("taste_coverage@10", lambda ls: metrics.taste_coverage(ls.recs, ls.histories, ls.genres)),
)}


def evaluate(name: str, model: Recommender, split: Split, genres: np.ndarray, k: int,
             reranker: Reranker | None = None) -> dict:
    """Score one variant on the split's test users (seen items excluded): NDCG@10 with its standard error and
    per-user values, then every `LIST_METRICS` entry."""
    users = split.test_users
    histories = split.train_lists()
    seen = split.seen_lists()
    t0 = time.perf_counter()
    if reranker is None:
        recs, _ = model.recommend(users, k, exclude=split.seen)
    else:
        recs = reranked_top_k(model, users, k, seen=seen, reranker=reranker, genres=genres, histories=histories)
    ms = 1000 * (time.perf_counter() - t0) / len(users)
    lists = Lists(recs, k, split.test_items, [histories[u] for u in users], genres, split.n_items, model)
    per_user = metrics.ndcg_per_user(recs, split.test_items, k)
    return {
        "variant": name,
        "ndcg@10": float(per_user.mean()),
        "ndcg@10_se": float(per_user.std(ddof=1) / np.sqrt(len(per_user))),
        **{col: float(m.value(lists)) for col, m in LIST_METRICS.items()},
        "train_s": round(model.train_s, 2),
        "recommend_ms_per_user": round(ms, 3),
        "_per_user_ndcg": per_user,
    }


def _ild(recs: np.ndarray, genres: np.ndarray, model: Recommender) -> float:
    """Genre-Jaccard ILD; a catalog without genres falls back to the model's item-embedding cosine
    (NaN for a model without embeddings, e.g. popularity)."""
    if genres.shape[1]:
        return metrics.intra_list_diversity(recs, metrics.genre_jaccard_sim(genres))
    emb = model.item_embeddings()
    return metrics.intra_list_diversity(recs, metrics.embedding_cosine_sim(emb)) if emb is not None else float("nan")
