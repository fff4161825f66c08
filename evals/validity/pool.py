"""A/B fidelity over a broad pool of recommenders, and a circularity check (issue 36, items 2 and 3): the run.
The pool's members are `evals.validity.pool_members`; the orders and the circularity check are
`evals.validity.pool_orders`.

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
   simulator meets the same random numbers); the measure is the like rate (taken and liked / shown), the mean
   over ``FidelityConfig.pool_draws`` decisions a page (one by default);
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
6. a mitigation (`pool_orders.kin_blind`, in ``orders['kin_blind_recall@10']``): the order when each recommender is
   judged by the simulator without its own family's evidence, against offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evals.stats.bootstrap import mean_ci
from evals.stats.testing import ALPHA
from evals.validity.grounding import LIKED_MIN
from evals.validity.pool_members import (DEPTH, UNPERSONALISED, Member, PoolInputs, default_pool, fit_pool, held_out,
                                         offline_truth, probes, rank_pool)
from evals.validity.pool_orders import (Resampled, _ranks, ablated_judges, agreement, calibration_rows, circularity,
                                        kin_blind, order_agreement, order_ceiling, pairwise)
from simulator.choice import ChoiceModel, decide
from simulator.evidence import ItemSpace
from simulator.selector import person_level


log = logging.getLogger(__name__)

POOL_VERSION = 1
# ---- offline truth and the simulated measure -----------------------------------------------------

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
        level = person_level("fidelity", cfg.seed, f"twin:{world.uid[u]}")  # as validate fidelity draws it
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
                for r in range(cfg.pool_draws):  # draw 0 is seeded as a one-draw run is
                    seed = [cfg.seed, int(u), t] + ([r] if r else [])
                    for label, model in judges.items():
                        d = decide(model, X[np.ix_(rows, cols[label])], user_mean=memory.mean_rating,
                                   item_mean=world.space.mean_rating[page],
                                   genres=[world.space.genres[i] for i in page], context={},
                                   sampled=cfg.decision == "sampled", rng=np.random.default_rng(seed),
                                   max_choices=MAX_CHOICES, level=level)
                        liked[label] += int(d.liked.sum())
            for label in judges:
                likes[label][name][j] = liked[label] / max(shown * cfg.pool_draws, 1)
    return likes


def judge_pool(ranked: dict, twins: np.ndarray, world: World, judges: dict[str, ChoiceModel], cfg,
               show_progress: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """{simulator label: {member: like rate [n twins]}}: each twin meets each member's top DEPTH as pages of
    ``cfg.slate_size`` and decides with each simulator in ``judges`` ('full' first: the others' features are
    subsets of its), drawn with the same seed per user and page (`fidelity_ab`'s seeding); ``cfg.pool_draws``
    decisions a page, the like rate their mean (draw r > 0 seeded by user, page and r)."""
    return asyncio.run(_judge(ranked, twins, world, judges, cfg, show_progress))


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

    from evals.validity.calibration import read_calibration
    from evals.validity.fidelity import check_calibration, ensure_calibration, prepare_personas
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
    ensure_calibration(ds, split, ppath, cfg, llm, show_progress)
    record, models = read_calibration(ppath)
    check_calibration(record, split, cfg, ppath)
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
    inputs = PoolInputs(split.train_positives(), split.train, space, settings, split=split)
    fitted = fit_pool(members + probe_members, inputs, show_progress)
    lap("training")

    positives, off_users, seen = held_out(split)
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

    orders = {"recall@10": {**order_agreement(stack(full, pool), stack(rec, pool), boot),
                            "ceiling": order_ceiling(stack(rec, pool), boot, seed=cfg.seed)},
              "ndcg@10": {**order_agreement(stack(full, pool), stack(ndcg, pool), boot),
                          "ceiling": order_ceiling(stack(ndcg, pool), boot, seed=cfg.seed)}}
    blind, blind_judge = kin_blind(pool, simulated)  # the mitigation: each judged without its own family's evidence
    orders["kin_blind_recall@10"] = {**order_agreement(stack(blind, pool), stack(rec, pool), boot),
                                     "ceiling": orders["recall@10"]["ceiling"], "judged_by": blind_judge,
                                     "note": "each recommender judged by the simulator without its own family's "
                                             "evidence: no family lifts its kind here, by construction"}
    if len(close) >= 3:
        orders["close_competitors_recall@10"] = {**order_agreement(stack(full, close), stack(rec, close), boot),
                                                 "ceiling": order_ceiling(stack(rec, close), boot, seed=cfg.seed),
                                                 "recommenders": close}
    pairs = pairwise(pool, rec, ndcg, full, seed=cfg.seed, n_boot=cfg.n_boot, show_progress=show_progress)
    circ = circularity(pool, by_name, rec, simulated, boot, seed=cfg.seed, n_boot=cfg.n_boot)
    lap("statistics")

    rows = []
    off_rank = dict(zip(pool, _ranks([rec[n].mean() for n in pool])))
    sim_rank = dict(zip(pool, _ranks([full[n].mean() for n in pool])))
    for name, f in fitted.items():
        row = {"recommender": name, "family": f.member.family, "probe": f.member.probe is not None,
               "status": "failed" if f.error else "ok", "error": f.error, "train_s": round(f.train_s, 2),
               "tuned": getattr(f.model, "tuned", None)}
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
        "depth": DEPTH, "slate_size": cfg.slate_size, "draws_per_twin": cfg.pool_draws, "n_boot": cfg.n_boot,
        "alpha": ALPHA,
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
                     f"over every test user with one; simulated: the calibrated twins ({cfg.decision}, "
                     f"{cfg.pool_draws} draw(s) a page) meet each top {DEPTH} as pages of {cfg.slate_size}, like "
                     "rate; tau/rho with bootstrap CIs over users; "
                     "pairs: sign-flip paired tests, Holm over the pool's pairs per measure; circularity: the twin "
                     "calibration refitted on its own rows without each evidence family"),
        "timings_s": {**timings, "total": round(time.perf_counter() - started, 1)},
    }
    return PoolRun(off_users, twins, offline, simulated, sims, result)
