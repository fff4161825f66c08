"""`personasim validate fidelity`: do simulated users do what the real people did, on data they never saw?

Protocol (MovieLens-100k; every number with a 95% bootstrap CI over users):
1. a time split (`recsys.time_splits.make_split`): 'global' (the default, leave-future-out: one cut time, the latest
   ``holdout`` share of all ratings after it; test users have history before it and a positive after it) or
   'per-user' (each user's latest ``holdout`` share; its train holds other users' later ratings). Development
   reads the validation split (the same rule on train alone: `TimeSplit.inner`); only ``final`` reads test;
2. personas are extracted from documents rendered from TRAIN ratings only, and the
   grounded users are calibrated on TRAIN only (`evals.validity.calibration`);
3. taste alignment (Agent4Rec's test): per test user, up to ``positives`` held-out
   positives (rating >= 4) against never-rated items at 1:1, 1:3 and 1:9, negatives
   drawn uniformly (Agent4Rec's choice; popularity leaks through it) and matched to
   each positive's popularity bin. Each method says like / not like per item:
   accuracy, precision, recall, F1 per user, averaged; AUC of its scores (pooled; the targets read it), and
   at 1:1 the AUC within each user, averaged ('taste_within_users': a user's shift of all its items alike leaves it);
4. rating error: RMSE / MAE on held-out rated items against the user-mean and
   item-mean baselines, for both rating rules of `simulator.choice` ('expected', the
   campaign default, and 'matched'), and how far each rule's histogram of 1-5 lies
   from the real one (total variation distance);
5. A/B fidelity: the twins meet random, popularity, MF and AMP-CF (trained on TRAIN)
   for ``ab_turns`` pages of ``slate_size``; the order of their acceptance rates is
   compared with the order of held-out Recall@10 over every test user (Kendall tau;
   per pair: agrees, disagrees, or a tie when either CI covers 0). The simulated measure is
   the twin's like rate (the share of shown items it takes and likes, sampled); its acceptance
   (taken / shown) is checked against each recommender's real hit rate on the same pages (the
   share the user went on to rate), with CIs: the take level was fitted on popularity on the
   validation part, so random, MF and AMP-CF check it on recommenders it never saw;
6. like given watched: the reliability of the twins' P(like | watched) on their held-out rated
   items (ECE, mean against the real like share, the diagram's rows);
7. population realism: per-user behaviour statistics of the twins, the persona-level users and copies of
   one average user against the real users', on the same held-out rated items (Wasserstein distances,
   `evals.validity.population`);
8. the layers' spread: how much a session's subtopic and context may vary a genre's share, against how much
   real sittings of the train part vary it (`evals.validity.sittings.layers_against_sittings`).
The measured users play the campaign's layers (``layers``, both by default): each draws a subtopic among its persona
card's likes and a context as a campaign does (`_Scorer.layers_of`), and its affinity carries their shifts
(`simulator.choice`), so fidelity.json describes the users a campaign plays. The twin without them
('twin_without_layers', its affinity alone) is scored beside, and ``taste_with_layers_minus_without`` is the paired
AUC difference: what the layers cost or add. The layers shift the take, not P(like | watched) or a watched
item's rating, so the rating error, the reliability and the population statistics do not read them.
A held-out rated item was watched, so its simulated rating is drawn as a decision draws a taken item's: liked
with P(like | watched), then within 4-5 or 1-3 (`simulator.selector.watched_distribution`). The rating error
reads the mean of that distribution; the histograms and the population statistics one draw of it.
On an implicit log (a campaign's own data: `simulator.choice.ChoiceModel.implicit`) the positives are the held-out
interactions, and steps 4, 6 and 7 are not measured (the record's 'not_measured' says why): taste alignment and
A/B fidelity remain.
Methods: the grounded twin (the user's own history) and persona-level user (the
persona's canon), sampling from their calibrated probabilities (`simulator.selector`); baselines random, popularity,
persona-CF (share of the persona's members who liked the item) and llm-only (the
LLM's yes-probability alone), each deciding by a one-feature logistic fitted on the
same calibration rows; and user-level ALS (`implicit`'s ALS trained on the train part's
positives, tuned on that part's own validation split: `user_level_als`; the user's own factor against the
item's): a ranking with no like/not-like rule of its own, so only its AUC is reported.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm import tqdm

from evals.validity.calibration import draw_negatives, most_rated, pop_bins, popularity_list
from evals.validity.fidelity_ab import ab_fidelity, ab_models
from evals.validity.fidelity_tables import (auc_differences, headline_of, like_given_watched, rating_histograms,
                                            rating_table, taste_table, within_user_taste)
from evals.validity.grounding import LIKED_MIN, extract_train_personas, item_space, memories, read_assignments, split_of
from evals.validity.population import AverageUser, population_realism, take_realism
from evals.validity.sittings import layers_against_sittings
from evals.validity.read_ledger import part_read, record_test_read, test_reads_path
from personas.infra.files import write_whole
from simulator.choice import DECISION_HELP, ChoiceModel, DecisionMode, decide, refuse_temperature
from simulator.selector import person_level, rating_distribution, sample_ratings, watched_distribution
from simulator.grounded import focus_genres, grounded_features
from simulator.layers import derive_seed, sample_context

log = logging.getLogger(__name__)

RATIOS = (1, 3, 9)
#: What a fidelity record of an implicit log leaves out (`simulator.choice.ChoiceModel.implicit`), and why.
IMPLICIT_NOT_MEASURED = {
    "rating_error": "an implicit log records no rating", "rating_distribution": "ditto",
    "like_given_watched": "an implicit log records no dislike: a taken item is kept",
    "population_realism": "its rating statistics (like rate, mean rating, their spread); in their place how much "
                          "users take (population_realism.takes)",
}
NEGATIVES = ("uniform", "popularity_matched")


#: FidelityConfig's fields added after its hash was first cited, with their defaults (left out of the hash there).
LATER_FIELDS = {"hard_negatives": 0, "pool_draws": 1, "calibration_per_user": 3}


class FidelityConfig(BaseModel):
    """Everything that shapes a fidelity run (hashed into every output)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = "ml-100k"
    split: Literal["global", "per-user"] = Field("global", description="leave-future-out ('global') or each user's "
                                                 "latest ratings ('per-user'); `recsys.time_splits.make_split`")
    holdout: float = Field(0.2, gt=0, lt=1, description="share of ratings held out: of all (global), of each user's "
                                                        "(per-user)")
    cut: str | None = Field(None, description="global split only: the cut time, an ISO date or time (UTC); None: the "
                                              "time after which the latest `holdout` share of ratings lies")
    final: bool = Field(False, description="read the test part (counted in test_reads.jsonl); else the validation "
                                           "split, the same rule applied to the test split's train part")
    n_personas: int = Field(8, ge=2, description="personas (cards) extracted from the train documents")
    users: int = Field(300, ge=5, description="test users scored for taste alignment and rating error (300: the "
                                               "accuracy CI is +-0.023, narrow enough to read a 0.85 target; 60 gave "
                                               "+-0.05)")
    positives: int = Field(2, ge=1, description="held-out positives per user (each with up to 9 negatives per kind)")
    rated: int = Field(20, ge=1, description="held-out rated items per user for the rating error and the reliability of "
                                             "like given watched (20: about 6,000 items on 300 users, so the ECE is not "
                                             "mostly the noise of its bins)")
    calibration_users: int = Field(300, ge=10, description="training users the grounded users are calibrated on "
                                   "(300: n_rated's products have more weights to fit; on validation they add "
                                   "+0.001 uniform accuracy fitted on 150 users, +0.007 on 300, "
                                   "benchmarks/twin_ceiling.py)")
    calibration_per_user: int = Field(3, ge=1, description="later positives (and rated items) per calibration user "
                                      "the like and rating models are fitted on (`calibration.calibrate`'s per_user)")
    decision: DecisionMode = Field("sampled", description=DECISION_HELP)
    use_llm: bool = Field(False, description="the LLM judgement is a feature of the decision (about 4 s a user on "
                                             "2 cores: off by default, `validate fidelity --llm`)")
    layers: list[Literal["subtopic", "context"]] = Field(
        ["subtopic", "context"], description="the layers the measured users play, drawn per user as a campaign draws "
        "them (a subtopic among the persona card's likes, a context by `simulator.layers.sample_context`); [] = none: "
        "the decision without the session's focus and context shifts")
    ab_users: int = Field(30, ge=0, description="twins that meet each recommender (A/B fidelity); 0 = skip")
    ab_turns: int = Field(3, ge=1)
    slate_size: int = Field(5, ge=1)
    seed: int = 0
    n_boot: int = Field(1000, ge=100)
    hard_negatives: int = Field(0, ge=0, description="per positive, more negatives for the calibration's like model "
                                "drawn from the top of the twin's own evidence rankings "
                                "(`evals.validity.calibration.hard_negatives`); 0: none, the default")
    pool_draws: int = Field(1, ge=1, description="sampled decisions each twin makes on each list of the A/B pool "
                            "(`evals.validity.pool`), averaged into its like rate: more draws, less Monte Carlo noise "
                            "in the simulated order; the first draw is the one-draw run's")

    @model_validator(mode="before")
    @classmethod
    def _no_temperature(cls, data):
        return refuse_temperature(data)

    def config_hash(self) -> str:
        """12 hex chars over the settings and, when the LLM is asked (``use_llm``), the prompt templates."""
        import hashlib

        from simulator.prompts import templates_digest

        # fields that came later: at their default, a config keeps the hash it had before they existed
        later = {name for name, default in LATER_FIELDS.items() if getattr(self, name) == default}
        blob = (self.model_dump_json(exclude=later)
                + (f"|prompt_templates={templates_digest()}" if self.use_llm else ""))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---- statistics --------------------------------------------------------------------------------

def _classification(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp = float((pred & (y == 1)).sum())
    prec = tp / pred.sum() if pred.sum() else 0.0
    rec = tp / (y == 1).sum()
    return {"accuracy": float((pred == (y == 1)).mean()), "precision": prec, "recall": rec,
            "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}


# ---- scoring ------------------------------------------------------------------------------------

class _Scorer:
    """Scores and like/not-like decisions of every method for one user's items."""

    def __init__(self, llm, cards, space, mems, models: dict[str, ChoiceModel], baselines: dict, cfg: FidelityConfig,
                 als=None, verb: str = "watch"):
        self.llm, self.cards, self.space, self.mems = llm, cards, space, mems
        self.models, self.baselines, self.cfg, self.als = models, baselines, cfg, als
        self.verb = verb  # the calibration's LLM judgement verb (`evals.validity.calibration.judgement_verb`)

    def layers_of(self, user_key: str) -> tuple[dict[str, str], list[str]]:
        """(context, focus genres) of the user ``user_key`` plays (FidelityConfig.layers), drawn with the run's seed as a
        campaign draws them: a subtopic among its persona card's likes, a context by `sample_context`."""
        rng = np.random.default_rng(derive_seed("fidelity layers", self.cfg.seed, user_key))
        likes = self.cards[self.mems[user_key].persona_id].likes
        subtopic = likes[int(rng.integers(len(likes)))] if likes else None
        context = sample_context(rng)
        return (context if "context" in self.cfg.layers else {},
                focus_genres(self.space, subtopic) if "subtopic" in self.cfg.layers else [])

    async def score(self, user_key: str, items: np.ndarray, seed: int, user: int | None = None) -> dict[str, dict]:
        """{method: {"score": [M], "like": [M] bool or None (a ranking only), "rating": [M] or None}}; ``user``: the
        user's row index, for the user-level ALS baseline (when the scorer has one)."""
        twin = self.mems[user_key]
        canon = self.mems[f"persona:{twin.persona_id}"]
        out = {}
        both = await grounded_features(self.llm, self.cards[twin.persona_id], [twin, canon], canon, self.space, items,
                                       self.models["twin"].features, seed=self.cfg.seed, verb=self.verb)
        level = person_level("fidelity", self.cfg.seed, user_key)  # this person's own level, both kinds alike
        context, focus = self.layers_of(user_key)  # the session it plays, both kinds alike
        for kind, memory, X in zip(("twin", "persona"), (twin, canon), both):
            model = self.models[kind]
            item_mean = self.space.mean_rating[items]
            d = decide(model, X, user_mean=memory.mean_rating, item_mean=item_mean,
                       genres=[self.space.genres[i] for i in items], context=context, focus=focus,
                       sampled=self.cfg.decision == "sampled", rng=np.random.default_rng(seed), level=level)
            if kind == "twin":
                feats = dict(zip(model.features, X.T))
            if model.implicit:  # an implicit log's model has no rating to score: taste alignment only
                out[kind] = {"score": d.logits, "like": d.logits > 0, "rating": None}
                continue
            expected = model.expected_rating(X, memory.mean_rating, item_mean)
            # Taste alignment asks "would this user like it?": the affinity's own decision (logit > 0, the
            # class-balanced threshold), not whether a shown item is taken (which depends on the page).
            # A rated item was watched: its rating is drawn as a decision draws a taken item's (liked with
            # P(like | watched), then within 4-5 or 1-3: `watched_distribution`). The rating error and the
            # reliability read the population's distribution (the mean over persons: the person's own level is
            # a draw, not a prediction); the histogram and the population statistics one draw of this person's
            # ('sampled'), and, for the paired check of what the level adds, one of the population's ('flat').
            p_like = model.p_like_watched(X)
            P = watched_distribution(rating_distribution(expected, model.rating_sd,
                                                         model.rating_cutpoints("expected")), p_like)
            P_own = watched_distribution(rating_distribution(model.expected_rating(X, memory.mean_rating, item_mean,
                                                                                   level),
                                                             model.rating_sd, model.rating_cutpoints("expected")),
                                         model.p_like_watched(X, level))
            rng = np.random.default_rng([seed, 1])
            if kind == "twin" and self.cfg.layers:  # the ablation, paired: the same twin playing no layer
                bare = model.like_logit(X)
                out["twin_without_layers"] = {"score": bare, "like": bare > 0, "rating": None}
            out[kind] = {"score": d.logits, "like": d.logits > 0, "rating": P @ np.arange(1, 6),
                         "rating_sampled": sample_ratings(P_own, np.full(len(items), -1), rng).astype(float),
                         "rating_flat": sample_ratings(P, np.full(len(items), -1), rng).astype(float),
                         "expected": expected, "p_like_watched": p_like}
            if kind == "twin":
                Pm = watched_distribution(rating_distribution(expected, model.rating_sd,
                                                              model.rating_cutpoints("matched")), p_like)
                out[kind]["rating_matched"] = Pm @ np.arange(1, 6)
                out[kind]["rating_matched_sampled"] = sample_ratings(Pm, np.full(len(items), -1), rng).astype(float)
        rng = np.random.default_rng(seed + 1)
        base = {"random": rng.random(len(items)), "popularity": feats["popularity"], "persona_cf": feats["persona"]}
        if "llm" in feats:
            base["llm_only"] = feats["llm"]
        for name, s in base.items():
            b = self.baselines.get(name)
            like = s > 0.5 if name == "random" else (b["intercept"] + b["coef"] * s) > 0
            out[name] = {"score": s, "like": np.asarray(like), "rating": None}
        if self.als is not None and user is not None:
            out["user_als"] = {"score": self.als.score_all(np.array([user]))[0][items], "like": None, "rating": None}
        return out


def _sample_items(rng, pos: np.ndarray, rated: set[int], bins: np.ndarray) -> dict[str, np.ndarray]:
    n = max(RATIOS)
    return {"uniform": draw_negatives(rng, rated, pos, n, bins, matched=False).reshape(len(pos), n),
            "popularity_matched": draw_negatives(rng, rated, pos, n, bins, matched=True).reshape(len(pos), n)}


async def _taste_and_rating(scorer: _Scorer, ds, split, users: np.ndarray, cfg: FidelityConfig, show_progress: bool):
    uid = ds.users["user_id"].astype(str).to_numpy()
    bins = pop_bins(scorer.space)
    rated_all = {u: set(g["item"].tolist()) for u, g in ds.ratings.groupby("user")}
    average = AverageUser(split.train, ds.n_items)
    test_by = {u: g for u, g in split.test.groupby("user")}
    taste: dict[tuple, list] = {}
    ratings: list[dict] = []
    takes: list[dict] = []
    implicit = scorer.models["twin"].implicit
    if implicit:  # the popularity lists how much users take is read on (`_take_row`)
        popular = most_rated(split.train, ds.n_items)
        rated_train = {u: set(g["item"].tolist()) for u, g in split.train.groupby("user")}
    for u in tqdm(users, desc="fidelity users", unit="user", disable=not show_progress):
        rng = np.random.default_rng([cfg.seed, int(u)])
        g = test_by[u]
        pos = rng.permutation(np.array(g.loc[g["rating"] >= LIKED_MIN, "item"]))[: cfg.positives]
        negs = _sample_items(rng, pos, rated_all[u], bins)
        rt = g.iloc[rng.permutation(len(g))[: cfg.rated]]
        items = np.unique(np.concatenate([pos, negs["uniform"].ravel(), negs["popularity_matched"].ravel(),
                                          rt["item"].to_numpy()])).astype(np.int64)
        at = {int(i): j for j, i in enumerate(items)}
        res = await scorer.score(f"twin:{uid[u]}", items, seed=int(rng.integers(2**31)), user=int(u))
        for kind in NEGATIVES:
            for ratio in RATIOS:
                sel = np.array([at[int(i)] for i in np.concatenate([pos, negs[kind][:, :ratio].ravel()])])
                y = np.array([1] * len(pos) + [0] * (len(pos) * ratio))
                for method, r in res.items():
                    taste.setdefault((kind, ratio, method), []).append(
                        (y, r["score"][sel], None if r["like"] is None else _classification(y, r["like"][sel])))
        if implicit:  # an implicit log: no rating to compare; how much it takes instead
            takes.append(await _take_row(scorer, f"twin:{uid[u]}", popular, rated_train.get(u, set()),
                                         set(g["item"].tolist()), seed=int(rng.integers(2**31))))
            continue
        sel = np.array([at[int(i)] for i in rt["item"]])
        truth = rt["rating"].to_numpy(float)
        twin_mem = scorer.mems[f"twin:{uid[u]}"]
        ratings.append({
            "truth": truth,
            "twin": res["twin"]["rating"][sel], "twin_expected": res["twin"]["expected"][sel],
            "twin_matched": res["twin"]["rating_matched"][sel],
            "twin_sampled": res["twin"]["rating_sampled"][sel],
            "twin_flat": res["twin"]["rating_flat"][sel],
            "twin_matched_sampled": res["twin"]["rating_matched_sampled"][sel],
            "p_like_watched": res["twin"]["p_like_watched"][sel],
            "persona": res["persona"]["rating"][sel],
            "persona_sampled": res["persona"]["rating_sampled"][sel],
            "average_sampled": average.sample(items[sel], np.random.default_rng([cfg.seed, int(u), 2])),
            "items": items[sel],
            "user_mean": np.full(len(sel), twin_mem.mean_rating),
            "item_mean": scorer.space.mean_rating[items[sel]],
        })
    return taste, ratings, takes


async def _take_row(scorer: _Scorer, user_key: str, popular: np.ndarray, own: set[int], later: set[int], *,
                    seed: int) -> dict:
    """One implicit-log user's row of `population.take_realism`: the popularity list the take level was fitted on
    (`calibration.popularity_list`: the train part's most taken items it had not taken), how many of them it took
    later, and the twin's take probabilities of them (its own level, and none)."""
    from simulator.selector import take_probability

    shown = popularity_list(popular, own)
    model = scorer.models["twin"]
    logits = (await scorer.score(user_key, shown, seed=seed))["twin"]["score"]  # the affinity, layers played
    level = person_level("fidelity", scorer.cfg.seed, user_key)
    return {"hits": len(set(shown.tolist()) & later),
            "p_own": take_probability(logits, model.take_level, model.take_spread, level),
            "p_flat": take_probability(logits, model.take_level)}


def prepare_personas(ds, split, out: Path, cfg: FidelityConfig, show_progress: bool) -> Path:
    """Personas from TRAIN-only documents under OUT/personas (reused when present and of this split)."""
    ppath = out / "personas" / "personas.jsonl"
    if ppath.exists():
        if split_of(ppath)["split"] != split.key:
            raise FidelityError(f"{ppath}: personas of another split or data set; use a fresh --out")
        return ppath
    return extract_train_personas(ds, split, ppath.parent, k=cfg.n_personas, seed=cfg.seed,
                                  cache_dir=out / "embeddings", show_progress=show_progress)


class FidelityError(ValueError):
    """A fidelity run that cannot start; the message names the file."""


def cut_time(cut: str | None) -> float | None:
    """An ISO date or time (UTC) as a Unix time; FidelityError of one line when it is not one."""
    if cut is None:
        return None
    import pandas as pd

    try:
        stamp = pd.Timestamp(cut)
    except ValueError:
        raise FidelityError(f"--cut {cut!r}: not an ISO date or time (e.g. 1998-03-07)") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.timestamp()


def run_fidelity(cfg: FidelityConfig, out: str | Path, llm, *, show_progress: bool = True,
                 reads: Path | None = None) -> dict:
    """Run the whole protocol (module docstring) on the validation split, or with ``cfg.final`` on the test split
    (one line appended to ``reads``); writes OUT/fidelity.json and returns it."""
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens
    from recsys.time_splits import make_split

    from recsys import DataError

    started = time.perf_counter()
    out = Path(out)
    ds = load_movielens(ml100k_dir())
    try:
        split = make_split(ds, cfg.split, cfg.holdout, cut_time(cfg.cut))
    except DataError as exc:  # before OUT is made: a refused run changes no file
        raise FidelityError(f"--split {cfg.split}" + (f" --cut {cfg.cut}" if cfg.cut else "") + f": {exc}") from None
    split = split if cfg.final else split.inner()  # development never reads the test part
    out.mkdir(parents=True, exist_ok=True)
    ppath = prepare_personas(ds, split, out, cfg, show_progress)
    ensure_calibration(ds, split, ppath, cfg, llm, show_progress)
    result = measure_fidelity(ds, split, ppath, cfg, llm, show_progress=show_progress, started=started)
    result["read"] = part_read(split)
    write_whole(out / "fidelity.json", json.dumps(result, indent=2, default=float) + "\n")
    if cfg.final:
        record_test_read(reads or test_reads_path(), result, out)
    return result


def ensure_calibration(ds, split, ppath: Path, cfg: FidelityConfig, llm, show_progress: bool = True) -> None:
    """Fit the calibration beside the personas at ``ppath`` as ``cfg`` asks, unless one is there (a run resumed in
    its --out keeps it; `check_calibration` then refuses one fitted otherwise)."""
    from evals.validity.calibration import calibrate, write_calibration

    if not (ppath.parent / "calibration.json").exists():
        write_calibration(calibrate(ds, split, ppath, llm, n_users=cfg.calibration_users, use_llm=cfg.use_llm,
                                    per_user=cfg.calibration_per_user, seed=cfg.seed, show_progress=show_progress,
                                    hard_negatives=cfg.hard_negatives), ppath)


def check_calibration(record: dict, split, cfg: FidelityConfig, ppath: Path) -> None:
    """FidelityError unless the calibration ``record`` beside ``ppath`` was fitted as ``cfg`` asks: on ``split``, with
    the LLM feature or without it as ``cfg.use_llm`` says, with ``cfg.hard_negatives`` and
    ``cfg.calibration_per_user``."""
    hard = record.get("hard_negatives", 0)
    if (record["split"] != split.key or ("llm" in record["features"]) != cfg.use_llm or hard != cfg.hard_negatives
            or record["per_user"] != cfg.calibration_per_user):
        raise FidelityError(f"{ppath.parent / 'calibration.json'}: fitted on {record['split']} with features "
                            f"{record['features']}, {hard} hard negatives a positive and {record['per_user']} rows a "
                            "user, not this run's; delete it or use a fresh --out")


def user_level_als(split, seed: int):
    """`implicit`'s ALS fitted on ``split``'s train positives, its factors, regularization and alpha tuned on
    ``split``'s own validation split as the pool's ALS is (`pool_members.tuned_als`: best Recall@10 there; the
    held-out part is never read): the user-level ALS baseline of taste alignment. The bench's settings, fixed on
    the per-user protocol, ranked 13th of 14 under leave-future-out, too weak a rule to be measured against.
    Its choice is the model's ``tuned`` record."""
    from dataclasses import replace

    from evals.validity.pool_members import PoolInputs, tuned_als
    from recsys.offline import DEFAULT_TRAIN
    from recsys.registry import Settings

    settings = Settings(replace(DEFAULT_TRAIN, seed=seed), seed=seed)
    return tuned_als(PoolInputs(split.train_positives(), split.train, None, settings, split=split))


def measure_fidelity(ds, split, ppath: Path, cfg: FidelityConfig, llm, *, show_progress: bool = True,
                     started: float | None = None, train_config=None, mixture_k: int = 4) -> dict:
    """Steps 3-5 of the protocol for the personas at ``ppath`` and the calibration beside them (both of
    ``split``'s TRAIN part): the fidelity record, not written. `run_fidelity` calls it on the personas it
    extracted; a campaign (`evals.campaign.world.prepare`) on its own, with its recommenders' ``train_config`` and
    AMP-CF's ``mixture_k``."""
    from evals.validity.calibration import judgement_verb, read_calibration
    from personas.card import read_personas

    started = time.perf_counter() if started is None else started
    record, models = read_calibration(ppath)
    check_calibration(record, split, cfg, ppath)
    t_prep = time.perf_counter() - started
    cards = {c.id: c for c in read_personas(ppath)}
    space = item_space(ds, split.train)
    mems = memories(ds, split.train, read_assignments(ppath.parent), space)
    uid = ds.users["user_id"].astype(str).to_numpy()
    pos_users = sorted(u for u, g in split.test.groupby("user")
                       if (g["rating"] >= LIKED_MIN).any() and f"twin:{uid[u]}" in mems)
    users = np.random.default_rng([cfg.seed, 1]).permutation(pos_users)[: cfg.users]
    als = user_level_als(split, cfg.seed)
    scorer = _Scorer(llm, cards, space, mems, models, record.get("baselines", {}), cfg, als=als,
                     verb=judgement_verb(record))
    taste, ratings, takes = asyncio.run(_taste_and_rating(scorer, ds, split, users, cfg, show_progress))
    t_taste = time.perf_counter() - started - t_prep
    ab = None
    if cfg.ab_users:
        models = ab_models(split, cfg.seed, train_config, mixture_k)
        ab = asyncio.run(ab_fidelity(scorer, ds, split, users[: cfg.ab_users], cfg, show_progress, models))
    taste_rows = taste_table(taste, cfg)
    implicit = scorer.models["twin"].implicit
    if not implicit:
        rating_rows, distribution, watched = rating_table(ratings, cfg), rating_histograms(ratings, cfg), \
            like_given_watched(ratings)
        population = population_realism(
            [{"items": r["items"], "truth": r["truth"], "twin": r["twin_sampled"], "persona": r["persona_sampled"],
              "average_user": r["average_sampled"], "twin_flat": r["twin_flat"]} for r in ratings],
            space.genres, space.log_pop, n_boot=cfg.n_boot, seed=cfg.seed)
    else:  # an implicit log (`simulator.choice.ChoiceModel.implicit`): nothing of a rating to read; how much users take
        rating_rows, distribution, watched = [], None, None
        population = {"takes": take_realism(takes, n_boot=cfg.n_boot, seed=cfg.seed)}
        population["targets"] = population["takes"].pop("targets")
    differences = auc_differences(taste, cfg)
    layers_cost = auc_differences(taste, cfg, rules=("twin_without_layers",))  # [] when the users play no layer
    bare = auc_differences(taste, cfg, method="twin_without_layers")  # the bare twins against the same rules
    headline = headline_of(taste_rows, rating_rows, ab, distribution, watched, differences, ratings=not implicit)
    headline["targets"].update({f"population: {k}": v for k, v in population["targets"].items()})
    spread = layers_against_sittings(split.train, space.genres, n_boot=cfg.n_boot, seed=cfg.seed)
    if "within_real" in spread:
        headline["targets"]["layers: a session's genre mix varies less than real sittings' (evals.validity.sittings)"] \
            = spread["within_real"]
    return {
        "config": cfg.model_dump(), "config_hash": cfg.config_hash(), "seed": cfg.seed,
        "model": getattr(llm, "model", ""), "split": split.key, "n_users": int(len(users)),
        "headline": headline,
        "like_given_watched": watched, "population_realism": population,
        "calibration": record["report"], "calibration_features": record["features"],
        "taste_alignment": taste_rows, "taste_against_simple_rules": differences,
        "taste_against_simple_rules_without_layers": bare, "user_als": als.tuned,
        "taste_with_layers_minus_without": layers_cost, "taste_within_users": within_user_taste(taste, cfg),
        "layers_spread": spread,
        "rating_error": rating_rows,
        "rating_distribution": distribution, "ab_fidelity": ab,
        **({"not_measured": IMPLICIT_NOT_MEASURED} if implicit else {}),
        "timings_s": {"prepare": round(t_prep, 1), "taste_and_rating": round(t_taste, 1),
                      "total": round(time.perf_counter() - started, 1)},
        "llm_usage": llm.usage.model_dump() if hasattr(llm, "usage") else None,
    }
