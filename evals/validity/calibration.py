"""`personasim calibrate`: fit the grounded users' decision weights on the TRAINING split only.

Protocol (nothing of the outer test part is read):
1. the outer split's train ratings are split again by the same per-user time rule
   (`TimeSplit.inner`): evidence (item space, memories) from the inner train part,
   targets from the inner validation part;
2. per sampled user, like targets: up to ``per_user`` validation positives (rating >= 4),
   each with one uniform and one popularity-matched negative drawn from items the user
   has not rated in train (with ``hard_negatives`` h > 0, also h drawn from the top of the twin's own
   evidence rankings: `hard_negatives`); rating targets: up to ``per_user`` validation ratings;
3. per memory kind (twin: the user's own history; persona: the persona's canon) a
   class-balanced logistic regression of like on the standardised features (so the
   decision threshold p = 0.5 weighs both errors the same) and a ridge regression of
   the rating on [user mean, item mean, features];
4. what each source contributes: its coefficients, and the drop in 5-fold cross-validated
   AUC (like) when that source is left out (an item feature with its products; n_rated with every
   product with it; recent_pop with its product: `simulator.evidence.sources`);
5. the base rates a sampled decision needs (`simulator.selector`): like given watched, an unweighted
   logistic regression of "rated >= 4" on the features of up to WATCHED_PER_USER validation *rated*
   items a user (its 5-fold
   cross-validated reliability, ECE, is in the report); and the no-choice take level, fitted so
   that the expected takes of a popularity recommender's top TAKE_K (the most-rated items of the
   inner training part, the user's own rated ones left out) equal the number the user went on to
   rate in the inner validation part (its hit rate). The level is checked on other recommenders,
   on the outer test part, by `personasim validate fidelity`;
6. the person's own level (`simulator.selector.fit_person_spread`): the spread over users of their like rate and
   mean rating on the same validation rated items, which the features leave out (a fitted model regresses users
   to the mean), as the sd of a random intercept each simulated person draws once.
On an implicit log (`evals.validity.grounding.implicit_log`: purchases or clicks, every interaction a positive) the
targets of 2 are the validation interactions, and steps 1-2, the like fit of 3, 4 and the take level of 5 run as
above; the rating regression, like given watched and the person's own level of 6 are not fitted (the log records no
rating and no dislike; `simulator.choice.ChoiceModel.implicit`), and the report says so ('not_fitted'). The
person's own level moves the take instead: the spread over users of their hits in 5, simulated against real
(`simulator.selector.fit_take_spread`, the report's 'take_spread').
The result is `calibration.json` beside the personas, stamped with the personas file's
content hash and the split it was fitted on; a grounded user refuses a calibration
that does not match its personas.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from evals.validity.grounding import LIKED_MIN, file_hash, item_space, memories
from personas.infra.files import write_whole
from simulator.choice import ChoiceModel, rating_cuts
from simulator.selector import fit_level, fit_person_spread, fit_take_spread, reliability
from simulator.evidence import EVIDENCE, ITEM_EVIDENCE, ItemSpace, Memory, evidence_features, sources
from simulator.grounded import grounded_features

log = logging.getLogger(__name__)

KINDS = ("twin", "persona")
CALIBRATION_VERSION = 7  # 2: the cf evidence feature; 3: the ease feature; 4: n_rated and its products;
#                          5: recent_pop and its product with popularity; 6: base rates (take level, like|watched);
#                          7: the person's own level (like_spread, rating_spread)
#: Depth of the recommender's list the take level is fitted on (3 pages of 5, the campaign's default).
TAKE_K = 15
#: Validation ratings a user gives the like-given-watched fit (its probabilities need more rows than the
#: rating regression's per_user to be calibrated within a few points).
WATCHED_PER_USER = 30
#: Popularity bins for matched negatives (quantiles of log popularity).
POP_BINS = 20
#: Hard negatives (`hard_negatives`, off by default): the evidence families whose rankings they are drawn from, and
#: how deep into each ranking (a recommender of that kind shows its top 10 as pages of 5: 20 is its next page too).
HARD_FAMILIES = ("history", "popularity", "cf", "ease")
HARD_TOP = 20


class CalibrationError(ValueError):
    """A calibration that cannot be fitted or does not match its personas; the message names the file."""


class StaleCalibration(CalibrationError):
    """A calibration written by another personasim version (other evidence features). ``what``: the
    message without its advice, for a caller whose advice differs (a campaign folder cannot be recalibrated)."""

    def __init__(self, what: str, advice: str):
        super().__init__(f"{what}; {advice}")
        self.what = what


def pop_bins(space: ItemSpace, n_bins: int = POP_BINS) -> np.ndarray:
    """Popularity bin [N] of every item (quantiles of log popularity; ties share a bin)."""
    edges = np.unique(np.quantile(space.log_pop, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, space.log_pop, side="right")


def draw_negatives(rng: np.random.Generator, rated: set[int], positives: np.ndarray, n_per: int, bins: np.ndarray,
                   matched: bool) -> np.ndarray:
    """``n_per`` never-rated items per positive [P * n_per]: uniform over the catalog, or from the
    positive's popularity bin (widening to neighbour bins when a bin runs out); no repeats."""
    n_items = len(bins)
    taken = set(rated)
    out = []
    for p in positives:
        for _ in range(n_per):
            if matched:
                width = 0
                while True:
                    pool = np.flatnonzero(np.abs(bins - bins[p]) <= width)
                    pool = [int(i) for i in pool if int(i) not in taken]
                    if pool or width > n_items:
                        break
                    width += 1
            else:
                pool = None
            if pool is not None:
                if not pool:
                    raise CalibrationError("no never-rated item left to draw a negative from")
                j = pool[int(rng.integers(len(pool)))]
            else:
                while True:
                    j = int(rng.integers(n_items))
                    if j not in taken:
                        break
            taken.add(j)
            out.append(j)
    return np.asarray(out, dtype=np.int64)


def hard_negatives(rng: np.random.Generator, space: ItemSpace, memory: Memory, taken: set[int], n: int) -> np.ndarray:
    """Up to ``n`` items [<= n] the user never rated, drawn without repeats from the top ``HARD_TOP`` of the memory's
    own ranking of the catalog by each evidence family of ``HARD_FAMILIES`` (item-kNN cosines, popularity, PureSVD,
    EASE): the items a recommender of that kind would show. ``taken``: rated items and negatives drawn already.
    With only uniform and popularity-matched negatives the like model never sees a top-ranked item the user passed
    over, so it extrapolates each family's weight to the top of that family's ranking, where the recommenders of its
    kind live (issue 36's circularity check measured the lift that gives)."""
    F = evidence_features(space, memory, np.arange(len(space.ids)))
    pool: set[int] = set()
    for family in HARD_FAMILIES:
        order = np.argsort(-F[:, ITEM_EVIDENCE.index(family)], kind="stable")
        pool.update([int(i) for i in order if int(i) not in taken][:HARD_TOP])
    pool = sorted(pool)
    if not pool or n <= 0:
        return np.zeros(0, np.int64)
    return rng.choice(np.asarray(pool, np.int64), size=min(n, len(pool)), replace=False)


def most_rated(train: pd.DataFrame, n_items: int) -> np.ndarray:
    """Item indices [N], the most rated in ``train`` first (any rating; ties by index): the popularity recommender
    the take level is fitted on."""
    return np.argsort(-np.bincount(train["item"].to_numpy(), minlength=n_items), kind="stable")


def popularity_list(order: np.ndarray, own: set[int], k: int = TAKE_K) -> np.ndarray:
    """The first ``k`` of ``order`` (`most_rated`) that are not in ``own`` (the user's rated items)."""
    return np.array([i for i in order[:k + len(own)] if int(i) not in own][:k], dtype=np.int64)


@dataclass
class Rows:
    """Fit rows of one memory kind: like X [n, F], y [n]; rating Xr [m, F], r [m], user mean, item mean [m];
    take: per user the features [TAKE_K, F] of the popularity list, and the hits among them; like given
    watched: Xw [w, F] of rated items, w [w] 1 when rated >= 4, with their ratings wr, users wg, the user's mean
    rating wum and the items' mean ratings wim (the person's spread is fitted on them)."""

    X: list
    y: list
    Xr: list
    r: list
    um: list
    im: list
    Xt: list
    hits: list
    Xw: list
    w: list
    wr: list
    wg: list
    wum: list
    wim: list


async def _collect(llm, cards: dict, space: ItemSpace, mems: dict[str, Memory], train: pd.DataFrame,
                   targets: pd.DataFrame, users: np.ndarray, uid: np.ndarray, features: list[str], per_user: int,
                   seed: int, show_progress: bool, verb: str = "watch", hard: int = 0) -> dict[str, Rows]:
    rng = np.random.default_rng(seed)
    bins = pop_bins(space)
    rows = {k: Rows(*([] for _ in range(14))) for k in KINDS}
    rated_by = {u: set(g["item"].tolist()) for u, g in train.groupby("user")}
    tgt_by = {u: g for u, g in targets.groupby("user")}
    popular = most_rated(train, len(space.ids))
    for u in tqdm(users, desc="calibration users", unit="user", disable=not show_progress):
        twin = mems.get(f"twin:{uid[u]}")
        g = tgt_by.get(u)
        if twin is None or g is None:
            continue
        pos = g.loc[g["rating"] >= LIKED_MIN, "item"].to_numpy()
        pos = rng.permutation(np.array(pos))[:per_user]
        rated = rated_by.get(u, set()) | set(g["item"].tolist())
        negs = np.concatenate([draw_negatives(rng, rated, pos, 1, bins, matched=False),
                               draw_negatives(rng, rated, pos, 1, bins, matched=True)]) if len(pos) else np.zeros(0, int)
        if hard and len(pos):  # their own generator: without them every other draw is as before
            negs = np.concatenate([negs, hard_negatives(np.random.default_rng([seed, 2, int(u)]), space, twin,
                                                        rated | set(negs.tolist()), hard * len(pos))])
        order = rng.permutation(len(g))
        rt = g.iloc[order[:per_user]]
        rw = g.iloc[order[:WATCHED_PER_USER]]  # like given watched: more rated rows (its rt ones among them)
        like_items = np.concatenate([pos, negs]).astype(np.int64)
        labels = [1] * len(pos) + [0] * len(negs)
        r_items = rt["item"].to_numpy(np.int64)
        own = rated_by.get(u, set())
        shown = popularity_list(popular, own)
        hits = len(set(shown.tolist()) & set(g["item"].tolist()))
        w_items = rw["item"].to_numpy(np.int64)
        items = np.concatenate([like_items, r_items, shown, w_items])
        if not len(items):
            continue
        canon = mems[f"persona:{twin.persona_id}"]
        both = await grounded_features(llm, cards[twin.persona_id], [twin, canon], canon, space, items, features,
                                       seed=seed, verb=verb)
        for kind, memory, X in zip(KINDS, (twin, canon), both):
            R = rows[kind]
            R.X += list(X[: len(like_items)])
            R.y += labels
            R.Xr += list(X[len(like_items):len(like_items) + len(r_items)])
            R.r += rt["rating"].tolist()
            R.Xt.append(X[len(like_items) + len(r_items):len(like_items) + len(r_items) + len(shown)])
            R.hits.append(hits)
            R.Xw += list(X[len(like_items) + len(r_items) + len(shown):])
            R.w += (rw["rating"].to_numpy() >= LIKED_MIN).astype(int).tolist()
            R.wr += rw["rating"].tolist()
            R.wg += [int(u)] * len(w_items)
            R.wum += [memory.mean_rating] * len(w_items)
            R.wim += space.mean_rating[w_items].tolist()
            R.um += [memory.mean_rating] * len(r_items)  # the twin's own mean rating, or the persona members'
            R.im += space.mean_rating[r_items].tolist()
    return rows


#: What a calibration of an implicit log leaves out, and why (its report's 'not_fitted').
IMPLICIT_NOT_FITTED = {
    "rating": "an implicit log records no rating",
    "like_given_watched": "an implicit log records no dislike: a taken item is kept",
    "person_spread": "fitted on users' like rates and mean ratings, which an implicit log does not record (the "
                     "person's level moves the take instead: 'take_spread')",
}


def fit_kind(kind: str, R: Rows, features: list[str], seed: int, *,
             implicit: bool = False) -> tuple[ChoiceModel, dict, dict]:
    """The `ChoiceModel` of memory kind ``kind`` fitted on its rows, its report, and the one-feature baselines;
    ``implicit``: an implicit log's model (module docstring), affinity and take level only."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X, y = np.asarray(R.X, float), np.asarray(R.y, int)
    if len(set(y.tolist())) < 2 or (len(R.r) < 3 and not implicit):
        raise CalibrationError(f"too little training data to calibrate {kind} users ({len(y)} like rows, "
                               f"{len(R.r)} rating rows)")
    mean, scale = X.mean(0), X.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    Z = (X - mean) / scale
    # balanced: liking and not liking weigh the same whatever the sampled ratio (decision at p = 0.5)
    clf = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced").fit(Z, y)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    auc_all = roc_auc_score(y, cross_val_predict(LogisticRegression(max_iter=1000), Z, y, cv=cv, method="decision_function"))
    drop = {}
    for name, cols in sources(features).items():
        Zf = np.delete(Z, cols, axis=1)
        s = cross_val_predict(LogisticRegression(max_iter=1000), Zf, y, cv=cv, method="decision_function")
        drop[name] = round(float(auc_all - roc_auc_score(y, s)), 4)
    affinity = [clf.decision_function((np.asarray(x, float) - mean) / scale) for x in R.Xt]
    level = fit_level(affinity, np.asarray(R.hits))
    baselines = _one_feature_rules(X, y, features)
    report = {"n_like_rows": int(len(y)), "cv_auc": round(float(auc_all), 4), "auc_drop_without": drop,
              "like_coef": {n: round(float(c), 4) for n, c in zip(features, clf.coef_[0])},
              "mean_p_like": round(float(clf.predict_proba(Z)[:, 1].mean()), 4),
              "real_like_rate": round(float(y.mean()), 4),
              "take": {"level": round(level, 4), "recommender": "popularity (most rated in the inner training part)",
                       "k": TAKE_K, "n_users": len(R.hits),
                       "real_hit_rate": round(float(np.sum(R.hits)) / (TAKE_K * len(R.hits)), 4)}}
    if implicit:  # the person's own level on the take: the spread over users of their hits on the same lists
        spread = fit_take_spread(affinity, np.asarray(R.hits), level, seed=seed)
        model = ChoiceModel(kind=kind, features=list(features), mean=mean.tolist(), scale=scale.tolist(),
                            like_coef=clf.coef_[0].tolist(), like_intercept=float(clf.intercept_[0]),
                            rating_coef=[], rating_intercept=0.0, rating_sd=0.0, take_level=level, implicit=True,
                            take_spread=spread["take_spread"])
        return model, {**report, "take_spread": spread, "not_fitted": dict(IMPLICIT_NOT_FITTED)}, baselines
    Xr = (np.asarray(R.Xr, float) - mean) / scale
    base = np.column_stack([np.asarray(R.um), np.asarray(R.im), Xr])
    r = np.asarray(R.r, float)
    reg = Ridge(alpha=1.0).fit(base, r)
    fitted = reg.predict(base)
    resid = r - fitted
    # like given watched: unweighted, on rated items, so its probabilities are the real like shares
    Xw = (np.asarray(R.Xw, float) - mean) / scale
    watched_y = np.asarray(R.w, int)
    if len(set(watched_y.tolist())) < 2:
        raise CalibrationError(f"too little training data to calibrate {kind} users: every rated item is "
                               f"{'liked' if watched_y[0] else 'not liked'}")
    watched = LogisticRegression(C=1.0, max_iter=1000).fit(Xw, watched_y)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    watched_cv = cross_val_predict(LogisticRegression(C=1.0, max_iter=1000), Xw, watched_y, cv=folds,
                                   method="predict_proba")[:, 1]
    # the person's own level: the spread over users the features do not see (simulator.selector), on the same rated
    # items, from the cross-validated like logits (not fitted to these rows) and the rating fit's expected ratings
    p_cv = np.clip(watched_cv, 1e-6, 1 - 1e-6)
    mu_w = reg.predict(np.column_stack([np.asarray(R.wum), np.asarray(R.wim), Xw]))
    spread = fit_person_spread(np.log(p_cv / (1 - p_cv)), watched_y, mu_w, np.asarray(R.wr, float), np.asarray(R.wg),
                               rating_sd=float(resid.std()), seed=seed)
    model = ChoiceModel(kind=kind, features=list(features), mean=mean.tolist(), scale=scale.tolist(),
                        like_coef=clf.coef_[0].tolist(), like_intercept=float(clf.intercept_[0]),
                        rating_coef=reg.coef_.tolist(), rating_intercept=float(reg.intercept_),
                        rating_sd=float(resid.std()), rating_cuts=rating_cuts(fitted, r), take_level=level,
                        watched_coef=watched.coef_[0].tolist(), watched_intercept=float(watched.intercept_[0]),
                        like_spread=spread["like_spread"], rating_spread=spread["rating_spread"])
    report.update({
        "n_rating_rows": int(len(r)), "n_watched_rows": int(len(watched_y)),
        "rating_coef": {n: round(float(c), 4) for n, c in zip(["user_mean", "item_mean", *features], reg.coef_)},
        "rating_hist_real": np.bincount(r.astype(int), minlength=6)[1:].tolist(),
        "rating_hist_fitted": np.bincount(model.rating(fitted), minlength=6)[1:].tolist(),
        "rating_hist_matched": np.bincount(model.rating(fitted, "matched"), minlength=6)[1:].tolist(),
        "like_given_watched_cv": reliability(watched_cv, watched_y),
        "person_spread": spread,
    })
    return model, report, baselines


def _one_feature_rules(X: np.ndarray, y: np.ndarray, features: list[str]) -> dict:
    """One-feature rules on the like rows: the fidelity benchmark's baselines decide with these."""
    from sklearn.linear_model import LogisticRegression

    baselines = {}
    for name, feat in (("popularity", "popularity"), ("persona_cf", "persona"), ("llm_only", "llm")):
        if feat in features:
            one = LogisticRegression(max_iter=1000, class_weight="balanced").fit(X[:, [features.index(feat)]], y)
            baselines[name] = {"coef": float(one.coef_[0][0]), "intercept": float(one.intercept_[0])}
    return baselines


def collect_rows(ds, split, personas_path: Path, llm, *, features: list[str], n_users: int, per_user: int, seed: int,
                 show_progress: bool = False, verb: str = "watch",
                 hard_negatives: int = 0) -> tuple[dict[str, Rows], np.ndarray, object]:
    """({kind: the rows a calibration fits}, the users they come from, ``split``'s inner split they were read
    on): ``n_users`` users of that inner split drawn with ``seed``, ``per_user`` items each. A calibration record's own users, seed and counts give its
    rows back (the circularity check refits on them, `evals.validity.pool`)."""
    from evals.validity.grounding import read_assignments
    from personas.card import read_personas

    cards = {c.id: c for c in read_personas(personas_path)}
    inner = split.inner()
    space = item_space(ds, inner.train)
    mems = memories(ds, inner.train, read_assignments(personas_path.parent), space)
    uid = ds.users["user_id"].astype(str).to_numpy()
    candidates = np.array(sorted(u for u in inner.test["user"].unique() if f"twin:{uid[u]}" in mems))
    if not len(candidates):
        raise CalibrationError(f"{personas_path}: no user of the split belongs to these personas "
                               "(personas from another dataset?)")
    users = np.random.default_rng(seed).permutation(candidates)[:n_users]
    rows = asyncio.run(_collect(llm, cards, space, mems, inner.train, inner.test, users, uid, features, per_user, seed,
                                show_progress, verb, hard_negatives))
    return rows, users, inner


def calibrate(ds, split, personas_path: str | Path, llm, *, n_users: int = 300, per_user: int = 3, use_llm: bool = True,
              seed: int = 0, show_progress: bool = True, verb: str = "watch", hard_negatives: int = 0) -> dict:
    """Fit the twin and persona choice models (module docstring) and return the calibration record. ``verb``: what
    the LLM judgement asks a user would do with an item (`simulator.grounded.llm_judgement`; recorded when it is
    not MovieLens's 'watch', and every later judgement is asked with it). ``hard_negatives``: per positive, that many
    more negatives from the top of the twin's own evidence rankings (`hard_negatives`; recorded when > 0; the
    persona kind's rows are the same items)."""
    if hard_negatives < 0:
        raise CalibrationError(f"hard_negatives must be >= 0, got {hard_negatives}")
    from evals.validity.grounding import implicit_log, split_of

    personas_path = Path(personas_path)
    seen = split_of(personas_path)["split"]
    if seen != split.key:
        raise CalibrationError(f"{personas_path}: these personas were extracted for split {seen!r}, "
                               f"not {split.key!r}")
    features = list(EVIDENCE) + (["llm"] if use_llm else [])
    rows, users, inner = collect_rows(ds, split, personas_path, llm, features=features, n_users=n_users,
                                      per_user=per_user, seed=seed, show_progress=show_progress, verb=verb,
                                      hard_negatives=hard_negatives)
    models, reports, baselines = {}, {}, {}
    implicit = implicit_log(ds)
    for kind in KINDS:
        models[kind], reports[kind], fitted = fit_kind(kind, rows[kind], features, seed, implicit=implicit)
        if kind == "twin":
            baselines = fitted
    return {
        "version": CALIBRATION_VERSION,
        "split": split.key, "inner_split": inner.key,
        "personas_hash": file_hash(personas_path), "personas_file": personas_path.name,
        "llm": getattr(llm, "model", "") if use_llm else None, "seed": seed, "n_users": int(len(users)),
        "per_user": per_user, "features": features,
        **({"implicit": True} if implicit else {}), **({"verb": verb} if verb != "watch" else {}),
        **({"hard_negatives": hard_negatives} if hard_negatives else {}),
        "models": {k: m.model_dump() for k, m in models.items()},
        "report": reports,
        "baselines": baselines,
    }


def judgement_verb(record: dict) -> str:
    """The verb a calibration's LLM judgement was asked with ('watch' when the record names none)."""
    return record.get("verb") or "watch"


def write_calibration(record: dict, personas_path: str | Path) -> Path:
    path = Path(personas_path).parent / "calibration.json"
    return write_whole(path, json.dumps(record, indent=2) + "\n")


def read_calibration(personas_path: str | Path, rating_rule: str = "expected") -> tuple[dict, dict[str, ChoiceModel]]:
    """The calibration beside ``personas_path``, checked against that file's content and able to serve
    ``rating_rule`` (`simulator.rating_rules.RATING_RULES`)."""
    personas_path = Path(personas_path)
    path = personas_path.parent / "calibration.json"
    if not path.is_file():
        raise CalibrationError(f"{path}: no calibration; run `personasim calibrate --personas {personas_path}`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        models = {k: ChoiceModel.model_validate(v) for k, v in record["models"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{path}: not a personasim calibration ({str(exc).splitlines()[0]})") from None
    if type(record.get("seed")) is not int:  # grounded users ask their LLM judgements with it (simulator.grounded)
        raise CalibrationError(f"{path}: field 'seed' must be an integer, got {record.get('seed')!r}")
    features = record.get("features")
    have = [f for f in features if f != "llm"] if isinstance(features, list) else []
    if record.get("version") != CALIBRATION_VERSION or have != list(EVIDENCE):
        lacks, gone = [f for f in EVIDENCE if f not in have], [f for f in have if f not in EVIDENCE]
        diff = "; ".join(part for part in (lacks and f"lacks {', '.join(lacks)}",
                                            gone and f"has {', '.join(gone)}, no longer used") if part)
        raise StaleCalibration(f"{path}: fitted with other evidence features (calibration version "
                               f"{record.get('version')}, this personasim reads {CALIBRATION_VERSION}"
                               f"{'; ' + diff if diff else ''})",
                               f"rerun `personasim calibrate --personas {personas_path}`")
    if record.get("personas_hash") != file_hash(personas_path):
        raise CalibrationError(f"{path}: fitted for another personas file (hash {record.get('personas_hash')}, "
                               f"{personas_path} is {file_hash(personas_path)}); rerun `personasim calibrate`")
    if not all(m.calibrated() for m in models.values()):
        raise StaleCalibration(f"{path}: no base rates (take level, like given watched) for a sampled decision",
                               f"rerun `personasim calibrate --personas {personas_path}`")
    if rating_rule == "matched" and any(len(m.rating_cuts) != 4 for m in models.values()):
        raise CalibrationError(f"{path}: no rating cutpoints for the 'matched' rating rule (fitted before they "
                               f"existed); rerun `personasim calibrate --personas {personas_path}`")
    return record, models
