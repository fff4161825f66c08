"""A/B fidelity over a broad pool of recommenders, and a circularity check (issue 36, items 2 and 3).

Protocol, on one split (a `recsys.time_splits.TimeSplit`: the per-user time split, or any split with its interface):
1. a pool (`default_pool`) of recommenders from many families is trained on the split's train positives
   (`TimeSplit.train_positives`); one that raises while training or ranking is a failed row, the rest run;
2. offline truth: each recommender's top 10 over the catalog minus the user's train-rated items, against
   the test part's positives (rating >= 4): Recall@10 (hits / min(10, positives), as `fidelity_ab`) and
   NDCG@10 per user, over every test user with a positive;
3. the simulated measure: the twins, personas and calibration of `personasim validate fidelity`
   (`fidelity.prepare_personas`, `calibration.calibrate`, drawn as `fidelity.measure_fidelity` draws its
   users) meet each recommender's top 10 as 2 pages of 5 and decide with the calibrated, sampled choice
   model (`simulator.choice.decide`; the draws are seeded by user and page, so every recommender and every
   simulator meets the same random numbers); the measure is the like rate (taken and liked / shown);
4. the two orders: Kendall tau and Spearman rho (scipy) with percentile bootstrap CIs over users (each
   resample draws test users and recomputes both orders from the same draw; a twin is a test user, so the
   two sides are paired); every pair: a sign-flip paired test (`evals.stats.testing.paired_test`) offline
   and in simulation, Holm over the pool's pairs within each; a pair whose offline difference is significant
   agrees, disagrees, or is reversed significantly in simulation;
5. circularity: for each evidence family of the choice model (`FAMILIES`) the twin's calibration is fitted
   again without that family's columns (the same rows: the users, seed and draws of the calibration), and
   that simulator judges the pool again; each recommender's rank under the full and the ablated simulator,
   and offline. Two probes rank by the simulator's own EASE and PureSVD evidence (`EvidenceProbe`): is one
   promoted, in simulation, over a recommender that beats it offline?
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, rankdata, spearmanr
from tqdm import tqdm

from evals.stats.bootstrap import bootstrap_mean_ci, mean_ci, percentile_interval, resample_indices, rounded
from evals.stats.testing import ALPHA, holm, paired_test
from evals.validity.fidelity_ab import rank_unseen
from evals.validity.grounding import LIKED_MIN
from recsys.models import Recommender
from simulator.choice import ChoiceModel, decide
from simulator.evidence import ItemSpace, sources

log = logging.getLogger(__name__)

POOL_VERSION = 1
#: The list each recommender is judged on: its top DEPTH, shown as pages of ``FidelityConfig.slate_size``.
DEPTH = 10
#: Evidence families of the choice model (`simulator.evidence`): the base features each leaves out, with every
#: product of theirs (``history*n_rated``, ``popularity*recent_pop``). n_rated, the length of the user's history,
#: is a moderator of the others and no kind of recommender; it stays in every simulator.
FAMILIES: dict[str, tuple[str, ...]] = {
    "item-knn": ("history", "recent"),  # cosines to the liked and the latest items, in the item-kNN space
    "svd": ("cf",),
    "ease": ("ease",),
    "popularity": ("popularity", "recent_pop"),
    "persona": ("persona",),
    "genre": ("genre",),
    "llm": ("llm",),
}
#: The recommenders of each family's own kind: what that family's presence in the simulator could flatter.
KIN: dict[str, tuple[str, ...]] = {
    "item-knn": ("itemknn",), "svd": ("mf", "als", "bpr", "svd-probe"), "ease": ("ease", "ease-probe"),
    "popularity": ("pop", "recent-pop"), "persona": (), "genre": (), "llm": (),
}
#: Days of the recency model's window (the 30-day window `benchmarks/twin_ceiling.py` tried as a feature).
RECENT_DAYS = 30.0
#: Families whose members rank without the user's own history: left out of the "close competitors".
UNPERSONALISED = ("random", "popularity", "recency")


# ---- the pool ------------------------------------------------------------------------------------

@dataclass
class PoolInputs:
    """What a member trains on: ``matrix`` the split's train positives [n_users, N] (CSR), ``ratings`` its train
    ratings (all of them, with timestamps), ``space`` the simulator's item space of the same train part, the
    registry ``settings``, and the members fitted so far (AMP-CF-from-MF starts from 'mf')."""

    matrix: object
    ratings: pd.DataFrame
    space: ItemSpace
    settings: object
    fitted: dict = field(default_factory=dict)


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


def default_pool(other_lambda: float = 0.5, recent_days: float = RECENT_DAYS) -> list[Member]:
    """The pool: random, popularity, recency, the registry's MF, AMP-CF (K mixture components from `Settings`), AMP-CF
    started from MF, implicit's ALS, BPR and item-kNN, EASE, and MF + MMR and MF + DPP each at its
    validation-tuned lambda (`recsys.bench.TUNED_LAMBDAS`) and at ``other_lambda`` (another value of the
    bench's grid). Families as the registry names them, plus random, recency and reranked."""
    from recsys.bench import TUNED_LAMBDAS
    from recsys.pipeline import Reranker
    from recsys.registry import BUILTINS

    members = [Member("random", "random", fit=lambda i: None), Member("pop", "popularity", fit=_registry("pop")),
               Member("recent-pop", "recency", fit=lambda i: RecentPopularity(i.ratings, recent_days).fit(i.matrix))]
    members += [Member(n, BUILTINS[n].family, fit=_registry(n))
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


# ---- offline truth and the simulated measure -----------------------------------------------------

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


def draw_twins(split, mems: dict, uid: np.ndarray, seed: int, n: int | None) -> np.ndarray:
    """The twins `fidelity.measure_fidelity` draws (test users with a positive and a twin memory, permuted with
    its seed), the first ``n`` (None: all). The same three lines as there; it has no function to call."""
    pos_users = sorted(u for u, g in split.test.groupby("user")
                       if (g["rating"] >= LIKED_MIN).any() and f"twin:{uid[u]}" in mems)
    return np.random.default_rng([seed, 1]).permutation(pos_users)[:n]


@dataclass
class World:
    """What the twins judge with: the LLM (None without its feature), persona cards, the item space and
    memories of the split's train part, raw user ids."""

    llm: object
    cards: dict
    space: ItemSpace
    mems: dict
    uid: np.ndarray


async def _judge(ranked: dict, twins: np.ndarray, world: World, judges: dict[str, ChoiceModel], cfg,
                 show_progress: bool) -> dict[str, dict[str, np.ndarray]]:
    from simulator.grounded import grounded_features
    from simulator.turn import MAX_CHOICES

    full = judges["full"].features
    cols = {label: [full.index(f) for f in m.features] for label, m in judges.items()}
    likes = {label: {name: np.zeros(len(twins)) for name in ranked} for label in judges}
    turns = DEPTH // cfg.slate_size
    for j, u in enumerate(tqdm(twins, desc="twins judging the pool", unit="twin", disable=not show_progress)):
        memory = world.mems[f"twin:{world.uid[u]}"]
        items = np.unique(np.concatenate([top[int(u)] for top in ranked.values()]))
        at = {int(i): r for r, i in enumerate(items)}
        # an item's features do not depend on the other items shown: computed once for the union of the lists
        [X] = await grounded_features(world.llm, world.cards[memory.persona_id], [memory],
                                      world.mems[f"persona:{memory.persona_id}"], world.space, items, full,
                                      seed=cfg.seed)
        for name, top in ranked.items():
            shown = 0
            liked = dict.fromkeys(judges, 0)
            for t in range(turns):
                page = top[int(u)][t * cfg.slate_size:(t + 1) * cfg.slate_size]
                rows = [at[int(i)] for i in page]
                shown += len(page)
                for label, model in judges.items():
                    d = decide(model, X[np.ix_(rows, cols[label])], user_mean=memory.mean_rating,
                               item_mean=world.space.mean_rating[page],
                               genres=[world.space.genres[i] for i in page], context={},
                               sampled=cfg.decision == "sampled", rng=np.random.default_rng([cfg.seed, int(u), t]),
                               max_choices=MAX_CHOICES)
                    liked[label] += int(d.liked.sum())
            for label in judges:
                likes[label][name][j] = liked[label] / max(shown, 1)
    return likes


def judge_pool(ranked: dict, twins: np.ndarray, world: World, judges: dict[str, ChoiceModel], cfg,
               show_progress: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """{simulator label: {member: like rate [n twins]}}: each twin meets each member's top DEPTH as pages of
    ``cfg.slate_size`` and decides with each simulator in ``judges`` ('full' first: the others' features are
    subsets of its), drawn with the same seed per user and page (`fidelity_ab`'s seeding)."""
    return asyncio.run(_judge(ranked, twins, world, judges, cfg, show_progress))


# ---- circularity: the calibration without one family ---------------------------------------------

def family_columns(features: list[str], family: Iterable[str]) -> list[int]:
    """Columns of ``features`` that belong to the base features ``family``, products included
    (`simulator.evidence.sources`)."""
    src = sources(features)
    return sorted({j for base in family for j in src.get(base, [])})


def calibration_rows(ds, split, ppath: Path, llm, record: dict):
    """The twin rows (`calibration.Rows`) the calibration ``record`` beside ``ppath`` was fitted on, collected
    again with its users, seed and per-user counts (`calibration.collect_rows`). `fit_without(rows, features, ())`
    must give the calibrated twin model back (`ablated_judges` checks it)."""
    from evals.validity.calibration import collect_rows

    rows, _, _ = collect_rows(ds, split, Path(ppath), llm, features=record["features"], n_users=record["n_users"],
                              per_user=record["per_user"], seed=record["seed"])
    return rows["twin"]


def fit_without(rows, features: list[str], drop: Iterable[str], seed: int) -> ChoiceModel:
    """The twin `ChoiceModel` fitted by `calibration.fit_kind` on ``rows`` without the columns of the base features
    ``drop`` (and their products): its ``features`` lack them, so no weight can fall on them."""
    from evals.validity.calibration import Rows, fit_kind

    gone = set(family_columns(features, drop))
    keep = [j for j in range(len(features)) if j not in gone]
    sub = Rows(X=[np.asarray(x)[keep] for x in rows.X], y=rows.y, Xr=[np.asarray(x)[keep] for x in rows.Xr],
               r=rows.r, um=rows.um, im=rows.im, Xt=[np.asarray(x)[:, keep] for x in rows.Xt], hits=rows.hits,
               Xw=[np.asarray(x)[keep] for x in rows.Xw], w=rows.w)
    return fit_kind("twin", sub, [features[j] for j in keep], seed)[0]


def ablated_judges(full: ChoiceModel, rows, seed: int) -> tuple[dict[str, ChoiceModel], dict]:
    """({'full': the calibrated twin model, family: the model refitted without it}, a check): one simulator per
    family present in ``full.features``. A refit with nothing left out must give ``full`` back, else the rows are
    not the calibration's (`calibrate`'s set-up changed): ValueError, as the ablations would not be comparable."""
    from threadpoolctl import threadpool_limits

    # small logistic fits: with two BLAS threads on a busy 2-core machine each took ten times as long (5.4 s
    # against 0.46 s on 120 rows), the threads waiting on each other
    with threadpool_limits(1, "blas"):
        refit = fit_without(rows, full.features, (), seed)
        diff = float(np.max(np.abs(np.subtract(refit.like_coef, full.like_coef))))
        if diff >= 1e-6:
            raise ValueError(f"the twin calibration refitted on its own rows differs from calibration.json (like "
                             f"weights up to {diff:.3g} apart): calibration_rows no longer repeats calibrate's set-up")
        out = {"full": full}
        for fam, base in FAMILIES.items():
            if family_columns(full.features, base):
                out[fam] = fit_without(rows, full.features, base, seed)
    return out, {"refit_equals_calibration": True, "max_like_coef_difference": diff}


# ---- comparing the orders ------------------------------------------------------------------------

def _ranks(means: np.ndarray) -> np.ndarray:
    """Rank of each mean [R], 1 = the highest (ties share the average rank)."""
    return rankdata(-np.asarray(means, float), method="average")


def _correlations(sim: np.ndarray, off: np.ndarray) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho); NaN where one side is constant (a resample of a few users can be)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's ConstantInputWarning: the NaN says it
        return float(kendalltau(sim, off).statistic), float(spearmanr(sim, off).statistic)


class Resampled:
    """Bootstrap draws of per-member means: one resample of the offline users serves both sides (a twin is an
    offline user: its resampled count weights it in the simulated means too). ``off`` [R, n], ``sim`` [R, m],
    ``twin_at`` [m] each twin's position among the offline users."""

    def __init__(self, n_off: int, twin_at: np.ndarray, *, n_boot: int, seed: int):
        idx = resample_indices(n_off, n_boot=n_boot, seed=seed)
        self.counts = np.zeros((n_boot, n_off))
        np.add.at(self.counts, (np.arange(n_boot)[:, None], idx), 1.0)
        self.twin_counts = self.counts[:, twin_at]
        self.ok = self.twin_counts.sum(1) > 0

    def off(self, per_user: np.ndarray) -> np.ndarray:
        return (self.counts @ per_user.T / self.counts.shape[1])[self.ok]  # [B, R]

    def sim(self, per_user: np.ndarray) -> np.ndarray:
        return (self.twin_counts @ per_user.T)[self.ok] / self.twin_counts.sum(1)[self.ok, None]


def order_agreement(sim: np.ndarray, off: np.ndarray, boot: Resampled) -> dict:
    """Kendall tau and Spearman rho of the members' simulated against offline means (``sim`` [R, m], ``off``
    [R, n] per user), with percentile bootstrap CIs."""
    point = _correlations(sim.mean(1), off.mean(1))
    draws = np.array([_correlations(s, o) for s, o in zip(boot.sim(sim), boot.off(off))])
    out = {}
    for c, name in enumerate(("kendall_tau", "spearman_rho")):
        d = draws[:, c][np.isfinite(draws[:, c])]
        out[name] = rounded(point[c], *percentile_interval(d))
    return {**out, "n_recommenders": int(len(sim))}


def _test(a: np.ndarray, b: np.ndarray, seed: int, n_perm: int, n_boot: int) -> dict:
    """Mean of a - b per user, its bootstrap CI and the sign-flip p (`paired_test`)."""
    t = paired_test(b, a, seed=seed, n_boot=0, n_perm=n_perm)
    _, lo, hi = bootstrap_mean_ci(a - b, n_boot=n_boot, seed=seed)
    return {"diff": round(t["diff"], 4), "ci": [round(lo, 4), round(hi, 4)], "p": t["p_value"]}


def n_permutations(m: int, alpha: float = ALPHA) -> int:
    """Sign flips per test so that each of m tests can pass Holm: a two-sided Monte Carlo p is at least
    2 / (n + 1), and that floor times m stays at alpha / 4 (with `paired_test`'s 2,000 no pair of 91 could pass:
    91 x 2 / 2,001 = 0.09; with 4 m / alpha a pair at the floor sat at 0.04999, the ones just above it at 0.051)."""
    return max(2000, int(np.ceil(8 * m / alpha)))


def pairwise(names: list[str], off: dict[str, np.ndarray], ndcg: dict[str, np.ndarray], sim: dict[str, np.ndarray],
             *, seed: int, n_boot: int, show_progress: bool = False) -> list[dict]:
    """Every pair a - b, a the better offline (Recall@10), with the paired difference offline (Recall@10 over
    offline users: CI, p and Holm's p over these pairs) and in simulation (like rate over twins: the same), a
    verdict (`verdict`), and the NDCG@10 difference with its CI (no test: Recall@10 is the reference)."""
    order = sorted(names, key=lambda n: -off[n].mean())
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    n_perm = n_permutations(len(pairs))
    rows = []
    for k, (a, b) in enumerate(tqdm(pairs, desc="pairwise tests", unit="pair", disable=not show_progress)):
        d, lo, hi = bootstrap_mean_ci(ndcg[a] - ndcg[b], n_boot=n_boot, seed=seed + k)
        rows.append({"pair": f"{a} - {b}", "a": a, "b": b,
                     "offline_recall": _test(off[a], off[b], seed + k, n_perm, n_boot),
                     "simulated": _test(sim[a], sim[b], seed + k, n_perm, n_boot),
                     "offline_ndcg": {"diff": round(d, 4), "ci": [round(lo, 4), round(hi, 4)]}})
    for key in ("offline_recall", "simulated"):
        for r, p in zip(rows, holm([r[key]["p"] for r in rows])):
            r[key].update(p=round(r[key]["p"], 5), p_holm=round(p, 5), significant=bool(p < ALPHA))
    for r in rows:
        r["verdict"] = verdict(r["offline_recall"], r["simulated"])
    return rows


def verdict(offline: dict, simulated: dict) -> str:
    """'agree' / 'disagree' / 'reversed-significantly' for an offline-significant pair (the simulated
    difference's sign; reversed and significant after Holm); else 'simulator-orders-offline-does-not' or
    'neither-orders'."""
    if offline["significant"]:
        same = np.sign(simulated["diff"]) == np.sign(offline["diff"]) and simulated["diff"] != 0
        return "agree" if same else "reversed-significantly" if simulated["significant"] else "disagree"
    return "simulator-orders-offline-does-not" if simulated["significant"] else "neither-orders"


def agreement(pairs: list[dict], key: str = "verdict") -> dict:
    """Counts of the verdicts over the offline-significant pairs, and the pairs one side orders alone."""
    sig = [p for p in pairs if p["offline_recall"]["significant"]]
    count = {v: sum(p[key] == v for p in sig) for v in ("agree", "disagree", "reversed-significantly")}
    return {"n_pairs": len(pairs), "n_offline_significant": len(sig), **count,
            "share_agreeing": round(count["agree"] / len(sig), 4) if sig else None,
            "reversed_significantly": [p["pair"] for p in sig if p[key] == "reversed-significantly"],
            "simulator_orders_offline_does_not": [p["pair"] for p in pairs
                                                  if p[key] == "simulator-orders-offline-does-not"],
            "offline_orders_simulator_does_not": [p["pair"] for p in sig if not p["simulated"]["significant"]]}


# ---- circularity ---------------------------------------------------------------------------------

def circularity(pool: list[str], members: dict[str, Member], off: dict[str, np.ndarray],
                sims: dict[str, dict[str, np.ndarray]], boot: Resampled, *, seed: int, n_boot: int) -> dict:
    """Per family: each pool member's rank offline (Recall@10), under the full simulator and under the one
    without the family ('lift': rank without - rank with, > 0 when the family's presence moves it up), with a
    bootstrap CI for its kin (`KIN`); the ablated simulator's tau; and each probe's standing against the pool
    members that beat it offline (`probe_standing`)."""
    off_rank = _ranks([off[n].mean() for n in pool])
    off_pool = np.stack([off[n] for n in pool])
    full = np.stack([sims["full"][n] for n in pool])
    full_rank, full_draws = _ranks(full.mean(1)), np.apply_along_axis(_ranks, 1, boot.sim(full))
    families = {}
    for fam, sim in sims.items():
        if fam == "full":
            continue
        abl = np.stack([sim[n] for n in pool])
        abl_rank, abl_draws = _ranks(abl.mean(1)), np.apply_along_axis(_ranks, 1, boot.sim(abl))
        rows, kin_lift = [], {}
        for i, n in enumerate(pool):
            rows.append({"recommender": n, "family": members[n].family, "rank_offline": float(off_rank[i]),
                         "rank_full": float(full_rank[i]), "rank_without": float(abl_rank[i]),
                         "lift": float(abl_rank[i] - full_rank[i]), "kin": n in KIN[fam]})
            if n in KIN[fam]:
                kin_lift[n] = rounded(abl_rank[i] - full_rank[i],
                                      *percentile_interval(abl_draws[:, i] - full_draws[:, i]))
        families[fam] = {"features_left_out": list(FAMILIES[fam]), "kin": list(KIN[fam]), "ranks": rows,
                         "kin_lift": kin_lift, "lifts_own_kind": any(v["value"] > 1 for v in kin_lift.values()),
                         "order_without": order_agreement(abl, off_pool, boot)}
    probe_rows = [probe_standing(p, pool, members, off, sims, seed=seed, n_boot=n_boot)
                  for p, m in members.items() if m.probe and p in sims["full"]]
    return {"families": families, "probes": probe_rows,
            "families_lifting_own_kind": [f for f, v in families.items() if v["lifts_own_kind"]],
            "kin_lifted_more_than_one_rank": sorted({n for v in families.values() for n, l in v["kin_lift"].items()
                                                     if l["value"] > 1})}


def probe_standing(probe: str, pool: list[str], members: dict[str, Member], off: dict[str, np.ndarray],
                   sims: dict[str, dict[str, np.ndarray]], *, seed: int, n_boot: int) -> dict:
    """A probe against every pool member: offline (Recall@10) and in simulation, with the full simulator and
    the one without the probe's own family; Holm over the pool per measure. 'promoted_over': members that beat
    the probe significantly offline and that the full simulator puts below it (significantly or not);
    'promoted_over_ahead_offline': the same for every member ahead of it offline, significantly or not."""
    fam = members[probe].probe
    others = [n for n in pool if n != probe]
    n_perm = n_permutations(len(others))
    rows = [{"vs": n, "offline_recall": _test(off[probe], off[n], seed + k, n_perm, n_boot),
             "simulated_full": _test(sims["full"][probe], sims["full"][n], seed + k, n_perm, n_boot),
             **({"simulated_without": _test(sims[fam][probe], sims[fam][n], seed + k, n_perm, n_boot)}
                if fam in sims else {})}
            for k, n in enumerate(others)]
    for key in ("offline_recall", "simulated_full", "simulated_without"):
        if key in rows[0]:
            for r, p in zip(rows, holm([r[key]["p"] for r in rows])):
                r[key].update(p=round(r[key]["p"], 5), p_holm=round(p, 5), significant=bool(p < ALPHA))
    beaten_by = [r for r in rows if r["offline_recall"]["significant"] and r["offline_recall"]["diff"] < 0]

    def rank_among(means: dict[str, float]) -> float:
        return float(_ranks([means[probe]] + [means[n] for n in others])[0])

    by_sim = {label: rank_among({n: s[n].mean() for n in pool + [probe]}) for label, s in sims.items()}
    ranks = {"rank_offline": rank_among({n: off[n].mean() for n in pool + [probe]}), "rank_full": by_sim["full"],
             **({"rank_without": by_sim[fam]} if fam in sims else {})}
    return {"probe": probe, "family": fam, **ranks, "rank_by_simulator": by_sim, "n_ranked": len(others) + 1,
            "beaten_offline_by": [r["vs"] for r in beaten_by],
            "promoted_over": [r["vs"] for r in beaten_by if r["simulated_full"]["diff"] > 0],
            "promoted_over_significantly": [r["vs"] for r in beaten_by if r["simulated_full"]["diff"] > 0
                                            and r["simulated_full"]["significant"]],
            "promoted_over_without_its_family": [r["vs"] for r in beaten_by if "simulated_without" in r
                                                 and r["simulated_without"]["diff"] > 0],
            "promoted_over_ahead_offline": [r["vs"] for r in rows if r["offline_recall"]["diff"] < 0
                                            and r["simulated_full"]["diff"] > 0],
            "pairs": rows}


# ---- the run -------------------------------------------------------------------------------------

@dataclass
class PoolRun:
    """What `run_pool` measured, per user, for paired tests beyond the record: ``offline_users`` [n] and
    ``twins`` [m] user indices; ``offline`` {member: {'recall', 'ndcg': [n]}}; ``simulated`` {simulator:
    {member: like rate [m]}}; ``judges`` {simulator: its twin `ChoiceModel`}; ``record`` the JSON record."""

    offline_users: np.ndarray
    twins: np.ndarray
    offline: dict
    simulated: dict
    judges: dict
    record: dict


def run_pool(ds, split, out: str | Path, cfg, llm, *, members: list[Member] | None = None,
             probe_members: list[Member] | None = None, n_twins: int | None = None, show_progress: bool = True,
             train_config=None, mixture_k: int = 4) -> PoolRun:
    """The protocol (module docstring) on ``split`` with `FidelityConfig` ``cfg``: personas and calibration
    under OUT/personas (made as `run_fidelity` makes them, reused when present and of this split), the pool
    (`default_pool` unless ``members``; `probes` unless ``probe_members``) trained as `fidelity_ab.ab_models`
    trains (``train_config``: default `recsys.offline.DEFAULT_TRAIN`; AMP-CF with ``mixture_k`` components), ``n_twins``
    of the twins (None: all). Returns the `PoolRun`; writes nothing else."""
    from dataclasses import replace

    from evals.validity.calibration import calibrate, read_calibration, write_calibration
    from evals.validity.fidelity import FidelityError, prepare_personas
    from evals.validity.grounding import item_space, memories, read_assignments
    from personas.card import read_personas
    from recsys.offline import DEFAULT_TRAIN
    from recsys.registry import Settings

    started, timings = time.perf_counter(), {}

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - started - sum(timings.values()), 1)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ppath = prepare_personas(ds, split, out, cfg, show_progress)
    if not (ppath.parent / "calibration.json").exists():
        write_calibration(calibrate(ds, split, ppath, llm, n_users=cfg.calibration_users, use_llm=cfg.use_llm,
                                    seed=cfg.seed, show_progress=show_progress), ppath)
    record, models = read_calibration(ppath)
    if record["split"] != split.key or ("llm" in record["features"]) != cfg.use_llm:
        raise FidelityError(f"{ppath.parent / 'calibration.json'}: fitted on {record['split']} with features "
                            f"{record['features']}, not this run's; use a fresh --out")
    lap("personas_and_calibration")
    sims, check = ablated_judges(models["twin"], calibration_rows(ds, split, ppath, llm, record), record["seed"])
    lap("ablated_calibrations")

    space = item_space(ds, split.train)
    world = World(llm, {c.id: c for c in read_personas(ppath)}, space,
                  memories(ds, split.train, read_assignments(ppath.parent), space),
                  ds.users["user_id"].astype(str).to_numpy())
    members = default_pool() if members is None else members
    probe_members = probes() if probe_members is None else probe_members
    settings = Settings(replace(train_config or DEFAULT_TRAIN, seed=cfg.seed), mixture_k=mixture_k, seed=cfg.seed)
    inputs = PoolInputs(split.train_positives(), split.train, space, settings)
    fitted = fit_pool(members + probe_members, inputs, show_progress)
    lap("training")

    positives = {int(u): set(g.loc[g["rating"] >= LIKED_MIN, "item"].tolist()) for u, g in split.test.groupby("user")}
    off_users = np.array(sorted(u for u, s in positives.items() if s))
    seen = {int(u): set(g["item"].tolist()) for u, g in split.train.groupby("user")}
    ranked = rank_pool(fitted, off_users, seen, split.n_items, ds.genre_matrix()[0], cfg.seed)
    offline = offline_truth(ranked, positives, off_users)
    twins = draw_twins(split, world.mems, world.uid, cfg.seed, n_twins)
    lap("ranking_and_offline")
    simulated = judge_pool(ranked, twins, world, sims, cfg, show_progress)
    lap("simulation")

    by_name = {m.name: m for m in members + probe_members}
    pool = [m.name for m in members if m.name in ranked]
    close = [n for n in pool if by_name[n].family not in UNPERSONALISED]
    at = {int(u): i for i, u in enumerate(off_users)}
    boot = Resampled(len(off_users), np.array([at[int(u)] for u in twins]), n_boot=cfg.n_boot, seed=cfg.seed)
    rec = {n: offline[n]["recall"] for n in ranked}
    ndcg = {n: offline[n]["ndcg"] for n in ranked}
    full = simulated["full"]

    def stack(d: dict, names: list[str]) -> np.ndarray:
        return np.stack([d[n] for n in names])

    orders = {"recall@10": order_agreement(stack(full, pool), stack(rec, pool), boot),
              "ndcg@10": order_agreement(stack(full, pool), stack(ndcg, pool), boot)}
    if len(close) >= 3:
        orders["close_competitors_recall@10"] = {**order_agreement(stack(full, close), stack(rec, close), boot),
                                                 "recommenders": close}
    pairs = pairwise(pool, rec, ndcg, full, seed=cfg.seed, n_boot=cfg.n_boot, show_progress=show_progress)
    circ = circularity(pool, by_name, rec, simulated, boot, seed=cfg.seed, n_boot=cfg.n_boot)
    lap("statistics")

    rows = []
    off_rank = dict(zip(pool, _ranks([rec[n].mean() for n in pool])))
    sim_rank = dict(zip(pool, _ranks([full[n].mean() for n in pool])))
    for name, f in fitted.items():
        row = {"recommender": name, "family": f.member.family, "probe": f.member.probe is not None,
               "status": "failed" if f.error else "ok", "error": f.error, "train_s": round(f.train_s, 2)}
        if f.error is None:
            row.update({"recall@10": mean_ci(rec[name], n_boot=cfg.n_boot, seed=cfg.seed),
                        "ndcg@10": mean_ci(ndcg[name], n_boot=cfg.n_boot, seed=cfg.seed),
                        "like_rate": mean_ci(full[name], n_boot=cfg.n_boot, seed=cfg.seed),
                        "rank_offline": float(off_rank[name]) if name in off_rank else None,
                        "rank_simulated": float(sim_rank[name]) if name in sim_rank else None})
        rows.append(row)
    agree = agreement(pairs)
    tau = orders["recall@10"]["kendall_tau"]["value"]
    targets = {
        "kendall tau >= 0.8 over >= 10 recommenders, all twins": bool(tau is not None and tau >= 0.8 and len(pool) >= 10
                                                                      and n_twins is None),
        "agreement >= 0.9 on offline-significant pairs": bool((agree["share_agreeing"] or 0) >= 0.9),
        "no significant reversal": agree["reversed-significantly"] == 0,
        "no recommender moves up > 1 rank because its own family is in the simulator":
            not circ["kin_lifted_more_than_one_rank"],
        "no probe promoted over a recommender that beats it offline":
            not any(p["promoted_over"] for p in circ["probes"]),
    }
    result = {
        "version": POOL_VERSION, "split": split.key, "seed": cfg.seed, "config": cfg.model_dump(),
        "config_hash": cfg.config_hash(), "calibration_features": record["features"],
        "n_offline_users": int(len(off_users)), "n_twins": int(len(twins)), "all_twins": n_twins is None,
        "depth": DEPTH, "slate_size": cfg.slate_size, "n_boot": cfg.n_boot, "alpha": ALPHA,
        "pool": pool, "close_competitors": close, "probes": [m.name for m in probe_members if m.name in ranked],
        "recommenders": rows,
        "offline_order": sorted(pool, key=lambda n: -rec[n].mean()),
        "simulated_order": sorted(pool, key=lambda n: -full[n].mean()),
        "orders": orders, "pairs": pairs, "agreement": agree,
        "calibration_check": check,
        "ablated_models": {k: {"features": m.features} for k, m in sims.items() if k != "full"},
        "circularity": circ, "targets": targets,
        "protocol": (f"recommenders trained on the train positives of {split.key}; top {DEPTH} over the catalog "
                     f"minus train-rated items; offline: Recall@{DEPTH} and NDCG@{DEPTH} against test ratings >= 4 "
                     f"over every test user with one; simulated: the calibrated twins ({cfg.decision}) meet each "
                     f"top {DEPTH} as pages of {cfg.slate_size}, like rate; tau/rho with bootstrap CIs over users; "
                     "pairs: sign-flip paired tests, Holm over the pool's pairs per measure; circularity: the twin "
                     "calibration refitted on its own rows without each evidence family"),
        "timings_s": {**timings, "total": round(time.perf_counter() - started, 1)},
    }
    return PoolRun(off_users, twins, offline, simulated, sims, result)
