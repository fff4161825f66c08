"""Comparing the simulated and offline orders of the pool (`evals.validity.pool`, protocol steps 4 and 5): rank
correlations with bootstrap CIs over users, pair-by-pair paired tests, and the circularity check (each evidence
family of the choice model left out of the simulator in turn; probes that rank by the simulator's own evidence)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, rankdata, spearmanr
from tqdm import tqdm

from evals.stats.bootstrap import bootstrap_mean_ci, percentile_interval, resample_indices, rounded
from evals.stats.testing import ALPHA, holm, paired_test
from evals.validity.pool_members import Member
from simulator.choice import ChoiceModel
from simulator.evidence import sources


log = logging.getLogger(__name__)


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
                              per_user=record["per_user"], seed=record["seed"],
                              hard_negatives=record.get("hard_negatives", 0))
    return rows["twin"]


def fit_without(rows, features: list[str], drop: Iterable[str], seed: int) -> ChoiceModel:
    """The twin `ChoiceModel` fitted by `calibration.fit_kind` on ``rows`` without the columns of the base features
    ``drop`` (and their products): its ``features`` lack them, so no weight can fall on them."""
    from evals.validity.calibration import Rows, fit_kind

    gone = set(family_columns(features, drop))
    keep = [j for j in range(len(features)) if j not in gone]
    sub = Rows(X=[np.asarray(x)[keep] for x in rows.X], y=rows.y, Xr=[np.asarray(x)[keep] for x in rows.Xr],
               r=rows.r, um=rows.um, im=rows.im, Xt=[np.asarray(x)[:, keep] for x in rows.Xt], hits=rows.hits,
               Xw=[np.asarray(x)[keep] for x in rows.Xw], w=rows.w, wr=rows.wr, wg=rows.wg, wum=rows.wum,
               wim=rows.wim)
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


def order_ceiling(off: np.ndarray, boot: Resampled, *, seed: int, n_halves: int = 200) -> dict:
    """How closely *any* simulator could reproduce the offline order measured on these users (``off`` [R, n]
    per user): the order is itself an estimate from n users, and its noise caps tau for a simulator that knew
    every recommender's true standing.

    - ``bootstrap``: Kendall tau between the order on each bootstrap resample of the users and the order on all
      of them: by the bootstrap principle, the tau between an n-user order and the population's. It treats the
      observed means as the population's, whose spread exceeds the truth's, so it is generous (an upper
      reference).
    - ``split_half``: Kendall tau between the orders of two disjoint random halves of the users (``n_halves``
      splits): two independent orders of n/2 users each, a lower reference.

    Each gives the median and the 2.5-97.5% range of its draws."""
    point = off.mean(1)
    draws = np.array([_correlations(o, point)[0] for o in boot.off(off)])
    rng = np.random.default_rng([seed, 36])
    n = off.shape[1]
    halves = []
    for _ in range(n_halves):
        perm = rng.permutation(n)
        halves.append(_correlations(off[:, perm[: n // 2]].mean(1), off[:, perm[n // 2:]].mean(1))[0])

    def summary(x) -> dict:
        x = np.asarray(x)[np.isfinite(x)]
        return {"median": round(float(np.median(x)), 4), "range_95": [round(float(v), 4)
                                                                      for v in np.percentile(x, [2.5, 97.5])]}

    return {"bootstrap": summary(draws), "split_half": summary(halves), "n_users": int(n)}


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
    members that beat it offline (`probe_standing`). A kin lifted by more than one rank is also named under
    'kin_lifted_past_offline' when the full simulator ranks it above its offline rank: a lift that carries it past
    where held-out data puts it flatters it; one that leaves it at or below that rank moves it towards the data."""
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
        past = [r["recommender"] for r in rows
                if r["kin"] and r["lift"] > 1 and r["rank_full"] < r["rank_offline"]]
        families[fam] = {"features_left_out": list(FAMILIES[fam]), "kin": list(KIN[fam]), "ranks": rows,
                         "kin_lift": kin_lift, "lifts_own_kind": any(v["value"] > 1 for v in kin_lift.values()),
                         "kin_lifted_past_offline": past, "order_without": order_agreement(abl, off_pool, boot)}
    probe_rows = [probe_standing(p, pool, members, off, sims, seed=seed, n_boot=n_boot)
                  for p, m in members.items() if m.probe and p in sims["full"]]
    return {"families": families, "probes": probe_rows,
            "families_lifting_own_kind": [f for f, v in families.items() if v["lifts_own_kind"]],
            "kin_lifted_more_than_one_rank": sorted({n for v in families.values() for n, l in v["kin_lift"].items()
                                                     if l["value"] > 1}),
            "kin_lifted_past_offline_rank": sorted({n for v in families.values() for n in v["kin_lifted_past_offline"]})}


def kin_blind(pool: list[str], sims: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], dict]:
    """A mitigation of circularity: each member judged by the simulator without the evidence family whose kind it
    is (`KIN`: MF, ALS and BPR by the one without SVD evidence, EASE without EASE, popularity and recent-pop
    without popularity, item-kNN without its cosines); a member of no family's kind by the full simulator.
    Returns ({member: like rate [m]}, {member: the simulator that judged it}). No family can lift its own kind in
    this order, by construction; what it can be read for is whether its order agrees with offline better or worse
    than the full simulator's (`order_agreement`)."""
    judge = {n: next((fam for fam, kin in KIN.items() if n in kin and fam in sims), "full") for n in pool}
    return {n: sims[judge[n]][n] for n in pool}, judge


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

