"""The tables and the headline of a fidelity record (`evals.validity.fidelity`): taste alignment, rating error,
the rating histograms, like given watched, and the targets."""

from __future__ import annotations

import numpy as np

from evals.stats.bootstrap import (bootstrap_ci, bootstrap_pooled_auc, mean_ci, percentile_interval, pooled_auc,
                                   pooled_auc_draws, rounded)
from evals.validity.grounding import LIKED_MIN
from simulator.selector import reliability


def boot(values_by_user: list, stat, n_boot: int, seed: int) -> dict:
    """stat(list of per-user records) with a percentile bootstrap CI over users, rounded."""
    return rounded(*bootstrap_ci(values_by_user, stat, n_boot=n_boot, seed=seed))


def taste_table(taste: dict, cfg) -> list[dict]:
    rows = []
    for (kind, ratio, method), recs in sorted(taste.items()):
        row = {"negatives": kind, "ratio": f"1:{ratio}", "method": method, "n_users": len(recs)}
        for m in ("accuracy", "precision", "recall", "f1"):  # None for a ranking without a like rule (user-level ALS)
            row[m] = None if recs[0][2] is None else mean_ci([r[2][m] for r in recs], n_boot=cfg.n_boot, seed=cfg.seed)
        row["auc"] = rounded(*bootstrap_pooled_auc(recs, n_boot=cfg.n_boot, seed=cfg.seed))
        rows.append(row)
    return rows


#: The same-run simple rules taste alignment must beat (issue 36): popularity, the persona's members' likes, and
#: user-level ALS.
SIMPLE_RULES = ("popularity", "persona_cf", "user_als")


def auc_differences(taste: dict, cfg, rules: tuple[str, ...] = SIMPLE_RULES, method: str = "twin") -> list[dict]:
    """``method``'s 1:1 AUC (the twins, or the same twins without their layers) minus each of ``rules``' (the simple
    rules, or another method of the run), on the same users (paired: the same resamples of users), for each kind of
    negatives: [{negatives, rule, diff: {value, ci}}]."""
    rows = []
    for kind in sorted({k for k, _, _ in taste}):
        twin = taste.get((kind, 1, method))
        if twin is None:
            continue
        twin_draws = pooled_auc_draws(twin, n_boot=cfg.n_boot, seed=cfg.seed)
        for rule in rules:
            other = taste.get((kind, 1, rule))
            if other is None:
                continue
            d = twin_draws - pooled_auc_draws(other, n_boot=cfg.n_boot, seed=cfg.seed)
            rows.append({"negatives": kind, "ratio": "1:1", "rule": rule,
                         "diff": rounded(pooled_auc(twin) - pooled_auc(other), *percentile_interval(d[~np.isnan(d)]))})
    return rows


def within_user_auc(records: list) -> np.ndarray:
    """Per user [n], the AUC of its own items: the share of its (positive, negative) pairs its scores order right,
    ties half (scikit-learn's roc_auc_score on the user's rows); NaN for a user without both. A shift of every item
    of a user alike (a context of "20 minutes") leaves it as it is, where the pooled AUC mixes users."""
    from sklearn.metrics import roc_auc_score

    return np.array([roc_auc_score(r[0], r[1]) if 0 < np.sum(r[0]) < len(r[0]) else np.nan for r in records])


def within_user_taste(taste: dict, cfg, rules: tuple[str, ...] = SIMPLE_RULES) -> dict:
    """Taste alignment read within users (`within_user_auc`), at 1:1, beside the pooled AUC the targets read: each
    method's mean over users with a CI, and the twins (with and without their layers) minus each of ``rules``, the
    CI of the per-user difference (paired: the same users and items)."""
    per_user = {key: within_user_auc(recs) for key, recs in taste.items() if key[1] == 1}
    rows, diffs = [], []
    for (kind, _, method), auc in sorted(per_user.items()):
        ok = ~np.isnan(auc)
        rows.append({"negatives": kind, "ratio": "1:1", "method": method, "n_users": int(ok.sum()),
                     "auc": mean_ci(auc[ok], n_boot=cfg.n_boot, seed=cfg.seed)})
    for (kind, _, method), auc in sorted(per_user.items()):
        if method not in ("twin", "twin_without_layers"):
            continue
        for rule in rules + (("twin_without_layers",) if method == "twin" else ()):
            other = per_user.get((kind, 1, rule))
            if other is None:
                continue
            d = auc - other
            diffs.append({"negatives": kind, "ratio": "1:1", "method": method, "rule": rule,
                          "diff": mean_ci(d[~np.isnan(d)], n_boot=cfg.n_boot, seed=cfg.seed)})
    return {"auc": rows, "differences": diffs,
            "note": "per user, the AUC of its own items; the targets read the pooled AUC ('taste_alignment')"}


def rating_table(ratings: list[dict], cfg) -> list[dict]:
    rows = []
    for method in ("twin", "twin_matched", "twin_expected", "persona", "user_mean", "item_mean"):
        def mae(rs, m=method):
            return float(np.mean(np.concatenate([np.abs(r[m] - r["truth"]) for r in rs])))

        rows.append({"method": method, "rmse": boot(ratings, lambda rs, m=method: rmse_of(rs, m), cfg.n_boot, cfg.seed),
                     "mae": boot(ratings, mae, cfg.n_boot, cfg.seed), "n_ratings": int(sum(len(r["truth"]) for r in ratings))})
    # paired, on the same resampled users: is the twin below each baseline?
    for base in ("user_mean", "item_mean"):
        diff = boot(ratings, lambda rs, b=base: rmse_of(rs, "twin") - rmse_of(rs, b), cfg.n_boot, cfg.seed)
        rows.append({"method": f"twin - {base} (RMSE difference)", "rmse": diff})
    return rows


def rating_histogram(rs: list[dict], key: str) -> np.ndarray:
    """Counts of ratings 1..5 [5] of ``key`` over the records (values rounded to the nearest integer)."""
    return np.bincount(np.clip(np.rint(np.concatenate([r[key] for r in rs])), 1, 5).astype(int), minlength=6)[1:]


def rating_histograms(ratings: list[dict], cfg) -> dict:
    """The held-out ratings' histogram against each rating rule's, and their total variation distance
    (half the L1 distance of the shares: 0 = the same distribution, 1 = disjoint) with a CI over users."""
    def tv(rs, key):
        real, sim = rating_histogram(rs, "truth"), rating_histogram(rs, key)
        return float(0.5 * np.abs(real / real.sum() - sim / sim.sum()).sum())

    sampled = ("twin_sampled", "twin_matched_sampled")
    return {"histogram": {k: rating_histogram(ratings, k).tolist() for k in ("truth", *sampled)},
            "total_variation": {k: boot(ratings, lambda rs, k=k: tv(rs, k), cfg.n_boot, cfg.seed) for k in sampled},
            "note": "histograms of one draw from each rule's rating distribution (the error uses its mean)"}


def like_given_watched(ratings: list[dict]) -> dict:
    """Reliability of the twins' P(like | watched) on their held-out rated items: ECE, the mean probability
    against the real like share (rating >= 4), and the reliability diagram's rows (`simulator.selector`)."""
    p = np.concatenate([r["p_like_watched"] for r in ratings])
    y = np.concatenate([r["truth"] for r in ratings]) >= LIKED_MIN
    return reliability(p, y)


def rmse_of(rs: list[dict], key: str) -> float:
    return float(np.sqrt(np.mean(np.concatenate([(r[key] - r["truth"]) ** 2 for r in rs]))))


# ---- the run ------------------------------------------------------------------------------------

def headline_of(taste: list[dict], rating: list[dict], ab: dict | None, distribution: dict | None = None,
              watched: dict | None = None, differences: list[dict] | None = None, *, ratings: bool = True) -> dict:
    """The record's headline figures and its targets, each True or False; ``ratings`` False (an implicit log):
    no rating target, since nothing of a rating was measured."""
    def cell(neg, ratio, method, metric):
        row = next((r for r in taste if r["negatives"] == neg and r["ratio"] == ratio and r["method"] == method), None)
        return None if row is None else row[metric]["value"]

    rm = {r["method"]: r["rmse"]["value"] for r in rating if "value" in r.get("rmse", {})}
    out = {
        "twin_accuracy_1to1_uniform": cell("uniform", "1:1", "twin", "accuracy"),
        "twin_auc_1to1_matched": cell("popularity_matched", "1:1", "twin", "auc"),
        "persona_accuracy_1to1_uniform": cell("uniform", "1:1", "persona", "accuracy"),
        "persona_auc_1to1_matched": cell("popularity_matched", "1:1", "persona", "auc"),
        "twin_rmse": rm.get("twin"), "user_mean_rmse": rm.get("user_mean"), "item_mean_rmse": rm.get("item_mean"),
        "twin_matched_rmse": rm.get("twin_matched"),
    }
    for d in differences or []:  # the twin's AUC minus each simple rule's, paired over users
        key = "matched" if d["negatives"] == "popularity_matched" else d["negatives"]
        out[f"twin_minus_{d['rule']}_auc_1to1_{key}"] = d["diff"]
        out.setdefault("targets_simple_rules", {})[f"twin AUC (1:1, {key}) above {d['rule']}'s (paired CI above 0)"] = \
            d["diff"]["ci"][0] > 0
    if distribution:
        tv = distribution["total_variation"]
        out["twin_rating_tv"] = tv["twin_sampled"]["value"]
        out["twin_matched_rating_tv"] = tv["twin_matched_sampled"]["value"]
    if watched:
        out["like_given_watched_ece"], out["like_given_watched_mean_p"] = watched["ece"], watched["mean_p"]
        out["real_like_share"] = watched["real_share"]
    out["targets"] = {
        "accuracy_1to1_uniform >= 0.85": (out["twin_accuracy_1to1_uniform"] or 0) >= 0.85,
        "auc_1to1_matched >= 0.70": (out["twin_auc_1to1_matched"] or 0) >= 0.70,
    }
    if ratings:
        out["targets"]["rmse below user-mean"] = out["twin_rmse"] is not None and \
            out["twin_rmse"] < (out["user_mean_rmse"] or 0)
    out["targets"].update(out.pop("targets_simple_rules", {}))
    if watched:
        out["targets"]["like given watched: ECE <= 0.02"] = watched["ece"] <= 0.02
        null = watched.get("ece_if_calibrated")
        if null:  # can this ECE be told from a perfectly calibrated model's on the same items?
            out["like_given_watched_ece_if_calibrated"] = null["median"]
            out["targets"]["like given watched: ECE within a calibrated model's (p >= 0.05)"] = null["p_value"] >= 0.05
        out["targets"]["like given watched: mean within 0.02 of the real share"] = \
            abs(watched["mean_p"] - watched["real_share"]) <= 0.02
    if ab:
        take = ab["acceptance_against_hit_rate"]
        out["targets"]["acceptance within the real hit rate's CI, every unseen recommender"] = \
            take["unseen_within_ci"] == take["n_unseen"]
        agree = {p["pair"]: p["verdict"] for p in ab["pairs"]}
        out["targets"]["random < pop < mf, every pair agreeing"] = all(
            agree.get(k) == "agrees" for k in ("pop - random", "mf - random", "mf - pop"))
    return out


