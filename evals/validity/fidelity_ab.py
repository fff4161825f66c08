"""Step 5 of `evals.validity.fidelity`'s protocol, A/B fidelity: do the twins order recommenders as held-out
data does? The twins meet random, popularity, MF and AMP-CF (trained on TRAIN) for ``ab_turns`` pages of
``slate_size``; the order of their like rates is compared with the order of held-out Recall@10 over every
test user (Kendall tau; per pair: agrees, disagrees, or a tie when either CI covers 0). Each recommender's
simulated acceptance is checked against its real hit rate on the same pages (`_take_check`).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from evals.stats.bootstrap import bootstrap_mean_ci, mean_ci
from evals.validity.grounding import LIKED_MIN
from simulator.choice import decide
from simulator.grounded import grounded_features
from simulator.selector import person_level

AB_VARIANTS = ("random", "pop", "mf", "ampcf")


def ab_models(split, seed: int, train_config=None, mixture_k: int = 4) -> dict:
    """The recommenders the twins meet, trained on TRAIN as a campaign trains them (`recsys.offline`;
    ``train_config``: a campaign's own, default `recsys.offline.DEFAULT_TRAIN`)."""
    from dataclasses import replace

    from recsys.offline import DEFAULT_TRAIN
    from recsys.registry import Settings, train

    matrix = split.train_positives()
    settings = Settings(replace(train_config or DEFAULT_TRAIN, seed=seed), mixture_k=mixture_k, seed=seed)
    return {"random": None, **{name: train(name, settings, matrix) for name in ("pop", "mf", "ampcf")}}


def rank_unseen(models: dict, users: np.ndarray, seen: dict[int, set], n_items: int, depth: int, seed: int) -> dict:
    """{variant: {user: top-``depth`` item indices, train-rated items excluded}}."""
    out = {}
    for name, model in models.items():
        rng = np.random.default_rng([seed, len(name)])
        scores = rng.random((len(users), n_items)) if model is None else model.score_all(users)
        ranked = {}
        for row, u in zip(scores, users):
            row = row.astype(float).copy()
            row[list(seen.get(u, ()))] = -np.inf
            ranked[int(u)] = np.argsort(-row, kind="stable")[:depth]
        out[name] = ranked
    return out


def _pair_verdict(sim: dict, off: dict, a: str, b: str, n_boot: int, seed: int) -> dict:
    """Paired differences a - b, simulated (acceptance, over the simulated users) and offline (held-out
    Recall@10, over every test user: the reference order), with CIs and a verdict."""
    def diff_ci(x: dict) -> tuple:  # (mean of the per-user differences a - b, low, high)
        return bootstrap_mean_ci(np.asarray(x[a], np.float64) - np.asarray(x[b], np.float64), n_boot=n_boot, seed=seed)

    s, o = diff_ci(sim), diff_ci(off)
    s_sig, o_sig = s[1] > 0 or s[2] < 0, o[1] > 0 or o[2] < 0
    if s_sig and o_sig:
        verdict = "agrees" if np.sign(s[0]) == np.sign(o[0]) else "disagrees"
    else:
        verdict = "tie: " + " and ".join(w for w, sig in (("simulated CI covers 0", s_sig), ("offline CI covers 0", o_sig))
                                          if not sig)
    return {"pair": f"{a} - {b}", "simulated_diff": round(s[0], 4), "simulated_ci": [round(s[1], 4), round(s[2], 4)],
            "offline_diff": round(o[0], 4), "offline_ci": [round(o[1], 4), round(o[2], 4)], "verdict": verdict}


def _mean_ci(values, cfg) -> dict:
    return mean_ci(values, n_boot=cfg.n_boot, seed=cfg.seed)


def _take_check(hit_rate: dict, off_users: np.ndarray, ab_users: np.ndarray, accepted: dict, expected_take: dict,
                depth: int, cfg) -> dict:
    """Each recommender's simulated acceptance (sampled, and its expectation) against its real hit rate over
    the same pages: the share of them the user went on to rate, on the simulated users and on every test user,
    each with a 95% CI over users. The take level was fitted on popularity on the validation part
    (`evals.validity.calibration`): random, MF and AMP-CF are recommenders the fit never saw."""
    pos_of = {int(u): i for i, u in enumerate(off_users)}
    same = [pos_of[int(u)] for u in ab_users]
    rows = []
    for v in AB_VARIANTS:
        real_same, sim = _mean_ci(hit_rate[v][same], cfg), _mean_ci(accepted[v], cfg)
        rows.append({"recommender": v, "used_by_the_fit": v == "pop",
                     "simulated_acceptance": sim, "expected_acceptance": round(float(np.mean(expected_take[v])), 4),
                     "real_hit_rate_same_users": real_same, "real_hit_rate_all_users": _mean_ci(hit_rate[v], cfg),
                     "within_real_ci": bool(real_same["ci"][0] <= sim["value"] <= real_same["ci"][1])})
    return {"k": depth, "rows": rows,
            "unseen_within_ci": sum(r["within_real_ci"] for r in rows if not r["used_by_the_fit"]),
            "n_unseen": sum(not r["used_by_the_fit"] for r in rows)}


async def ab_fidelity(scorer, ds, split, ab_users: np.ndarray, cfg, show_progress: bool, models: dict) -> dict:
    """The A/B fidelity record of ``ab_users`` (fidelity's scorer and FidelityConfig ``cfg``) meeting
    ``models`` (`ab_models`)."""
    from scipy.stats import kendalltau

    from simulator.turn import MAX_CHOICES

    uid = ds.users["user_id"].astype(str).to_numpy()
    test_pos = {u: set(g.loc[g["rating"] >= LIKED_MIN, "item"].tolist()) for u, g in split.test.groupby("user")}
    off_users = np.array(sorted(u for u, s in test_pos.items() if s))
    seen = {u: set(g["item"].tolist()) for u, g in split.train.groupby("user")}
    depth = max(10, cfg.ab_turns * cfg.slate_size)
    ranked = rank_unseen(models, off_users, seen, split.n_items, depth, cfg.seed)
    offline = {v: np.array([len(set(ranked[v][int(u)][:10].tolist()) & test_pos[u]) / min(10, len(test_pos[u]))
                            for u in off_users]) for v in AB_VARIANTS}
    test_rated = {u: set(g["item"].tolist()) for u, g in split.test.groupby("user")}
    # consumption: the share of a recommender's pages (depth items) the user went on to rate, any rating
    hit_rate = {v: np.array([len(set(ranked[v][int(u)][:depth].tolist()) & test_rated[u]) / depth
                             for u in off_users]) for v in AB_VARIANTS}
    model = scorer.models["twin"]
    liked_rate = {v: [] for v in AB_VARIANTS}
    accepted = {v: [] for v in AB_VARIANTS}
    expected_take = {v: [] for v in AB_VARIANTS}
    for u in tqdm(ab_users, desc="A/B fidelity users", unit="user", disable=not show_progress):
        memory = scorer.mems[f"twin:{uid[u]}"]
        level = person_level("fidelity", cfg.seed, f"twin:{uid[u]}")  # as the scorer draws it
        context, focus = scorer.layers_of(f"twin:{uid[u]}")
        for v in AB_VARIANTS:
            shown = chosen = liked = 0
            p_take = 0.0
            for t in range(cfg.ab_turns):
                page = ranked[v][int(u)][t * cfg.slate_size:(t + 1) * cfg.slate_size]
                [X] = await grounded_features(scorer.llm, scorer.cards[memory.persona_id], [memory],
                                              scorer.mems[f"persona:{memory.persona_id}"], scorer.space, page,
                                              model.features, seed=cfg.seed, verb=scorer.verb)
                d = decide(model, X, user_mean=memory.mean_rating, item_mean=scorer.space.mean_rating[page],
                           genres=[scorer.space.genres[i] for i in page], context=context, focus=focus,
                           sampled=cfg.decision == "sampled", rng=np.random.default_rng([cfg.seed, int(u), t]),
                           max_choices=MAX_CHOICES, level=level)
                shown += len(page)
                chosen += len(d.chosen)
                liked += int(d.liked.sum())
                p_take += float(d.p_take.sum())
            liked_rate[v].append(liked / shown)
            accepted[v].append(chosen / shown)
            expected_take[v].append(p_take / shown)
    # the offline figures of the simulated users too, to see how far they are from all users
    pos_of = {int(u): i for i, u in enumerate(off_users)}
    off_same = {v: offline[v][[pos_of[int(u)] for u in ab_users]] for v in AB_VARIANTS}

    def compare(sim: dict[str, list]) -> dict:
        sim = {v: np.asarray(sim[v]) for v in AB_VARIANTS}
        tau = kendalltau([sim[v].mean() for v in AB_VARIANTS], [offline[v].mean() for v in AB_VARIANTS])
        return {"by_variant": {v: round(float(sim[v].mean()), 4) for v in AB_VARIANTS},
                "order": sorted(AB_VARIANTS, key=lambda v: sim[v].mean()),
                "kendall_tau": round(float(tau.statistic), 4),
                "pairs": [_pair_verdict(sim, offline, b, a, cfg.n_boot, cfg.seed)
                          for i, a in enumerate(AB_VARIANTS) for b in AB_VARIANTS[i + 1:]]}

    like, acc = compare(liked_rate), compare(accepted)
    return {
        "acceptance_against_hit_rate": _take_check(hit_rate, off_users, ab_users, accepted, expected_take, depth, cfg),
        "variants": list(AB_VARIANTS), "n_sim_users": int(len(ab_users)), "n_offline_users": int(len(off_users)),
        "measure": "like rate: the share of shown items the twin takes and likes, sampled from its calibrated "
                   "probabilities; its acceptance (taken / shown) is reported beside it",
        "simulated_like_rate": like["by_variant"], "simulated_order": like["order"],
        "kendall_tau": like["kendall_tau"], "pairs": like["pairs"],
        "capped_acceptance": {"simulated_acceptance": acc["by_variant"], "simulated_order": acc["order"],
                              "kendall_tau": acc["kendall_tau"], "pairs": acc["pairs"],
                              "ceiling": round(MAX_CHOICES / cfg.slate_size, 4)},
        "offline_recall_at_10": {v: round(float(offline[v].mean()), 4) for v in AB_VARIANTS},
        "offline_recall_at_10_same_users": {v: round(float(off_same[v].mean()), 4) for v in AB_VARIANTS},
        "offline_order": sorted(AB_VARIANTS, key=lambda v: offline[v].mean()),
        "protocol": f"static recommenders trained on TRAIN; slates are pages 1-{cfg.ab_turns} of {cfg.slate_size} "
                    "items of each user's ranking (train-rated items excluded); the twin decides each page with "
                    f"the calibrated choice model (take, then like given watched; at most {MAX_CHOICES} choices a page)",
    }
