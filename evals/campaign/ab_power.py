"""Can the campaign's A/B see a difference, and does it see one where there is none? Measured, not argued.

Issue 33 asks two things of the offline A/B (`evals.campaign.ab`) with stochastic users:
- **A/A calibration**: a recommender against itself, run 0 against run 1 (other seeds), many times. The share of
  A/A pairs in which any metric is significant after Holm is the family-wise false-positive rate; it must be
  at most alpha = 0.05.
- **A known effect**: the same recommender *degraded on purpose* (``DEGRADE_SHARE`` of each page replaced by
  random items the user has not rated) must be detected at the campaign's design. The power is the share of
  replicates whose primary metric (like_rate) is significantly lower after Holm.

Both run on the grounded twins alone, at a campaign's design (its users per persona, turns, slate size and runs
per user), with the very code the campaign's report uses (`ab_table`, `aa_false_positive_rate`, one table per
user variant). What differs from a campaign, and why it does not flatter the result:
- no LLM is called: a grounded user's decision does not read it (`grounding.llm_feature: false`, the default
  campaign's setting; a calibration that does read the LLM is refused), and the voice it writes is not a
  metric of this table;
- slates are the pages of a static MF ranking trained on the campaign's train part (as
  `evals.validity.fidelity_ab` shows them), not refolded after each choice;
- the layers are off unless asked (``layers``): with 'subtopic' each user gets one of its persona card's likes as
  its session focus (`simulator.choice.FOCUS_SHIFT`), with 'context' a context drawn as a campaign draws it
  (`simulator.layers.sample_context`), each anew per user and pair, the same in both arms and runs of a user;
- users are drawn at random among each persona's members that have a twin, ``users_per_persona`` a persona, anew
  in each replicate: the power is over the population the campaign samples from, not over one draw of it.
The replicates are independent draws, so each rate gets an exact (Clopper-Pearson) binomial interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from evals.campaign.ab import aa_false_positive_rate, ab_table
from evals.stats.testing import ALPHA

#: The share of each page the degraded recommender replaces with random unrated items.
DEGRADE_SHARE = 0.3
#: The metric the known-effect check reads (it cannot saturate at the page cap: `evals.campaign.ab`).
PRIMARY = "like_rate"
USER_VARIANT = "grounded"


@dataclass(frozen=True)
class Design:
    """A campaign's design: how many users a persona, pages a session, items a page, runs a user."""

    users_per_persona: int = 4
    turns: int = 3
    slate_size: int = 5
    runs: int = 2


#: The layers `ab_power` can turn on.
LAYERS = ("subtopic", "context")


@dataclass
class Twins:
    """What the grounded twins decide with: the item space, memories, the twin choice model, the personas'
    members (raw user ids that have a twin), each member's train-rated items (never shown again) and each
    persona's likes (the subtopics its users may focus on)."""

    space: object
    mems: dict
    model: object
    members: dict[str, list[str]]
    seen: dict[str, np.ndarray]
    likes: dict[str, list[str]]


def load_twins(ds, split, personas_path) -> Twins:
    """The twins of ``personas_path``'s personas and calibration (both of ``split``'s train part). ValueError
    of one line when the calibration reads the LLM (this check calls none) or is of another split."""
    from evals.validity.calibration import read_calibration
    from evals.validity.grounding import item_space, memories, persona_members, read_assignments
    from personas.card import read_personas

    record, models = read_calibration(personas_path)
    if record["split"] != split.key:
        raise ValueError(f"{personas_path.parent / 'calibration.json'}: fitted on {record['split']}, not {split.key}")
    if "llm" in record["features"]:
        raise ValueError(f"{personas_path.parent / 'calibration.json'}: its decisions read the LLM; the A/B power "
                         "check calls no LLM (calibrate with llm_feature: false)")
    space = item_space(ds, split.train)
    mems = memories(ds, split.train, read_assignments(personas_path.parent), space)
    members = {pid: [d for d in docs if f"twin:{d}" in mems] for pid, docs in persona_members(personas_path.parent).items()}
    uid = ds.users["user_id"].astype(str).to_numpy()
    seen = {uid[u]: g["item"].to_numpy() for u, g in split.train.groupby("user")}
    likes = {c.id: list(c.likes) for c in read_personas(personas_path)}
    return Twins(space, mems, models["twin"], {p: m for p, m in members.items() if m}, seen, likes)


@dataclass
class CampaignTwins:
    """A campaign folder's config, data, split, twins and design, as `campaign_twins` reads them."""

    cfg: object
    ds: object
    split: object
    twins: Twins
    design: Design

    def rankings(self) -> dict[str, np.ndarray]:
        """MF's ranking of each twin, trained as the campaign trains its models (`mf_rankings`)."""
        from evals.campaign.world import train_config_of

        return mf_rankings(self.ds, self.split, self.twins, self.design, train_config_of(self.cfg))


def campaign_twins(run, users_per_persona: int | None = None) -> CampaignTwins:
    """The twins of the campaign folder ``run`` (its personas and calibration, on their split) and its design: its
    grounded users a persona (or ``users_per_persona``), turns, slate size and runs per user."""
    from evals.campaign.driver import load_campaign
    from evals.campaign.world import personas_path_of
    from evals.validity.grounding import split_for
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens

    cfg = load_campaign(run)
    personas_path = personas_path_of(cfg, run)
    ds = load_movielens(ml100k_dir())
    split = split_for(ds, personas_path)
    design = Design(users_per_persona=users_per_persona or cfg.users_for("grounded"), turns=cfg.turns,
                    slate_size=cfg.slate_size, runs=cfg.runs_per_user)
    return CampaignTwins(cfg, ds, split, load_twins(ds, split, personas_path), design)


def check_design(twins: Twins, design: Design) -> None:
    """ValueError of one line when a persona has fewer twins than the design draws."""
    for pid, members in sorted(twins.members.items()):
        if len(members) < design.users_per_persona:
            raise ValueError(f"users_per_persona {design.users_per_persona}: persona {pid!r} has only "
                             f"{len(members)} members with a twin")


def degrade(page: np.ndarray, pool: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """``page`` with round(share * len) positions, chosen at random, replaced by random items of ``pool`` not in it."""
    page = page.copy()
    n = int(round(share * len(page)))
    if n:
        where = rng.choice(len(page), size=n, replace=False)
        fresh = rng.choice(np.setdiff1d(pool, page), size=n, replace=False)
        page[where] = fresh
    return page


def _key(user: str) -> int:
    """A seed part of a raw user id (MovieLens ids are digits; any other id is hashed)."""
    import zlib

    return int(user) if user.isdigit() else zlib.crc32(user.encode())


def _session_rows(twins: Twins, user: str, pages: list[np.ndarray], variant: str, run: int,
                  rng: np.random.Generator, context: dict, focus: list[str], level: float) -> list[dict]:
    from simulator.choice import decide
    from simulator.evidence import evidence_features
    from simulator.turn import MAX_CHOICES

    memory, space = twins.mems[f"twin:{user}"], twins.space
    rows = []
    for t, page in enumerate(pages):
        d = decide(twins.model, evidence_features(space, memory, page), user_mean=memory.mean_rating,
                   item_mean=space.mean_rating[page], genres=[space.genres[i] for i in page], context=context,
                   rng=rng, max_choices=MAX_CHOICES, focus=focus, level=level)
        slate = [{"id": str(i), "genres": list(space.genres[i]), "component": None} for i in page]
        rows.append({"user_variant": USER_VARIANT, "user_id": user, "persona_id": memory.persona_id,
                     "variant": variant, "run": run, "turn": t, "ok": True, "slate": slate,
                     "chosen": [str(page[j]) for j in d.chosen],
                     "ratings": {str(i): int(r) for i, r in zip(page, d.ratings)}, "consistency": None})
    return rows


def replicate_events(twins: Twins, ranked: dict[str, np.ndarray], design: Design, seed: int,
                     degrade_share: float = DEGRADE_SHARE, layers: tuple[str, ...] = ()) -> pd.DataFrame:
    """One replicate: users drawn at random (``design.users_per_persona`` a persona), each meeting 'mf' (its pages)
    and 'mf_degraded' in every run, with the ``layers`` on (module docstring). The decisions of a (user, run) share
    their seeds across the two recommenders (common random numbers, as a campaign's sessions do); the runs have
    their own."""
    from simulator.grounded import focus_genres
    from simulator.layers import sample_context
    from simulator.selector import person_level

    unknown = sorted(set(layers) - set(LAYERS))
    if unknown:
        raise ValueError(f"layers {unknown}: unknown; choose among {list(LAYERS)}")
    rng = np.random.default_rng(seed)
    n_items = len(twins.space.mean_rating)
    rows: list[dict] = []
    for pid in sorted(twins.members):
        for user in rng.choice(twins.members[pid], size=design.users_per_persona, replace=False):
            top = ranked[user]
            pool = np.setdiff1d(np.arange(n_items), np.concatenate([twins.seen.get(user, np.array([], int)), top]))
            layer_rng = np.random.default_rng([seed, _key(user), 2])
            context = sample_context(layer_rng) if "context" in layers else {}
            likes = twins.likes.get(pid) or []
            subtopic = likes[int(layer_rng.integers(len(likes)))] if "subtopic" in layers and likes else None
            focus = focus_genres(twins.space, subtopic)
            level = person_level("ab power", seed, user)  # the person's own level, the same in both arms and runs
            for run in range(design.runs):
                pages = [top[t * design.slate_size:(t + 1) * design.slate_size] for t in range(design.turns)]
                bad_rng = np.random.default_rng([seed, _key(user), run, 1])
                worse = [degrade(p, pool, degrade_share, bad_rng) for p in pages]
                for variant, shown in (("mf", pages), ("mf_degraded", worse)):
                    rows += _session_rows(twins, user, shown, variant, run,
                                          np.random.default_rng([seed, _key(user), run]), context, focus, level)
    return pd.DataFrame(rows)


def mf_rankings(ds, split, twins: Twins, design: Design, train_config) -> dict[str, np.ndarray]:
    """{raw user id: top turns * slate_size items of MF (trained on the train part), train-rated items excluded}
    for every twin."""
    from evals.validity.fidelity_ab import rank_unseen
    from recsys.registry import Settings, train

    model = train("mf", Settings(train_config, seed=train_config.seed), split.train_positives())
    uid = ds.users["user_id"].astype(str).to_numpy()
    index = {u: i for i, u in enumerate(uid)}
    users = sorted({u for m in twins.members.values() for u in m})
    seen = {index[u]: twins.seen.get(u, ()) for u in users}
    ranked = rank_unseen({"mf": model}, np.array([index[u] for u in users]), seen, split.n_items,
                         design.turns * design.slate_size, seed=0)["mf"]  # seed: for the random recommender only
    return {u: ranked[index[u]] for u in users}


def _rate(k: int, n: int) -> dict:
    from scipy.stats import binomtest

    lo, hi = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="exact")  # Clopper-Pearson
    return {"rate": round(k / n, 4), "k": int(k), "n": int(n), "ci": [round(float(lo), 4), round(float(hi), 4)]}


def ab_power(twins: Twins, ranked: dict[str, np.ndarray], design: Design, *, pairs: int = 100, seed: int = 0,
             degrade_share: float = DEGRADE_SHARE, n_perm: int = 2000, show_progress: bool = True,
             layers: tuple[str, ...] = ()) -> dict:
    """``pairs`` independent replicates (module docstring): the A/A false-positive rates and the power against the
    degraded recommender, each with its Clopper-Pearson CI, and the median MDE of every metric."""
    check_design(twins, design)
    aa_any = aa_raw = aa_tests = 0
    aa_by: dict[str, int] = {}
    found_by: dict[str, int] = {}
    mdes: dict[str, list] = {}
    diffs: dict[str, list] = {}
    for rep in tqdm(range(pairs), desc="A/A and degraded pairs", unit="pair", disable=not show_progress):
        events = replicate_events(twins, ranked, design, seed=int(np.random.default_rng([seed, rep]).integers(2**31)),
                                  degrade_share=degrade_share, layers=layers)
        aa = aa_false_positive_rate(events, "mf", seed=rep, n_boot=0, n_perm=n_perm, user_variant=USER_VARIANT)
        significant = [r["metric"] for r in aa["rows"] if r["p_holm"] is not None and r["p_holm"] <= ALPHA]
        aa_any += bool(significant)
        for r in aa["rows"]:
            if r["p_value"] is not None:
                aa_tests += 1
                aa_raw += r["p_value"] <= ALPHA
        for m in significant:
            aa_by[m] = aa_by.get(m, 0) + 1
        for r in ab_table(events, "mf", "mf_degraded", seed=rep, n_boot=0, n_perm=n_perm, user_variant=USER_VARIANT):
            if r["p_value"] is None:
                continue
            mdes.setdefault(r["metric"], []).append(r["mde"])
            diffs.setdefault(r["metric"], []).append(r["diff"])
            if r["p_holm"] <= ALPHA and r["diff"] < 0:
                found_by[r["metric"]] = found_by.get(r["metric"], 0) + 1
    n_users = design.users_per_persona * len(twins.members)
    return {
        "design": {**design.__dict__, "personas": len(twins.members), "paired_users": n_users},
        "pairs": pairs, "seed": seed, "alpha": ALPHA, "degrade_share": degrade_share, "primary": PRIMARY,
        "layers": list(layers),
        "aa": {"familywise": _rate(aa_any, pairs), "per_test": _rate(aa_raw, max(aa_tests, 1)),
               "significant_by_metric": aa_by,
               "meaning": "share of A/A pairs (mf run 0 against run 1) with any metric significant after Holm "
                          "(familywise); per_test: share of all raw tests with p <= alpha"},
        "degraded": {"power": _rate(found_by.get(PRIMARY, 0), pairs),
                     "power_by_metric": {m: _rate(found_by.get(m, 0), pairs) for m in mdes},
                     "median_diff": {m: round(float(np.median(v)), 4) for m, v in diffs.items()},
                     "median_mde": {m: (None if not [x for x in v if x is not None] else
                                        round(float(np.median([x for x in v if x is not None])), 4))
                                    for m, v in mdes.items()},
                     "meaning": f"share of replicates whose {PRIMARY} is significantly lower (p_holm <= alpha) for MF "
                                f"with {degrade_share:.0%} of each page replaced by random unrated items"},
        "targets": {"A/A family-wise false-positive rate <= 0.05": aa_any / pairs <= ALPHA,
                    f"degraded recommender detected with power >= 0.8 ({PRIMARY})":
                        found_by.get(PRIMARY, 0) / pairs >= 0.8},
    }


def drift_draws(twins: Twins, ranked: dict[str, np.ndarray], design: Design, *, draws: int = 100, seed: int = 0,
                layers: tuple[str, ...] = (), show_progress: bool = True) -> dict:
    """The grounded users' within/between ratio (`evals.validity.drift.variance_ratio`, the campaign's headline
    features) at the campaign's design, over ``draws`` independent draws: each draws its users per persona at random
    anew (and their layers), and they meet MF's pages ``design.runs`` times with their own decisions. One recommender,
    as a real user has one record: the same shape as real users' two halves (`evals.validity.real_drift`), whose
    distribution over draws this one is read against. One campaign's ratio is one draw of it. Returns JSON-ready
    {draws, ratios_defined, median, q025, q975, q05, q95, ratios}."""
    from evals.validity.drift import HEADLINE, variance_ratio
    from evals.validity.drift_features import feature_blocks, session_features

    check_design(twins, design)
    ratios = []
    for d in tqdm(range(draws), desc="drift draws", unit="draw", disable=not show_progress):
        events = replicate_events(twins, ranked, design, seed=int(np.random.default_rng([seed, d, 3]).integers(2**31)),
                                  degrade_share=0.0, layers=layers)
        events = events[events["variant"] == "mf"].assign(utterance=None)
        features = session_features(events)
        blocks = feature_blocks(features)
        X = np.concatenate([blocks[b] for b in HEADLINE], axis=1)
        unit = (features["variant"] + "|" + features["user_id"]).to_numpy()
        r = variance_ratio(X, features["persona_id"].to_numpy(), unit)["ratio_within_over_between"]
        if r is not None:
            ratios.append(float(r))
    q = (lambda p: round(float(np.quantile(ratios, p)), 4)) if ratios else (lambda p: None)
    return {"draws": draws, "ratios_defined": len(ratios), "median": q(0.5), "q025": q(0.025), "q975": q(0.975),
            "q05": q(0.05), "q95": q(0.95), "ratios": [round(r, 4) for r in ratios], "layers": list(layers),
            "design": {**design.__dict__, "personas": len(twins.members)}}
