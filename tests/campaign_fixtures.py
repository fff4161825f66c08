"""A synthetic campaign folder, as `personasim campaign run` leaves it, without running a model.

`write_campaign(out, users_per_persona=...)` writes campaign.json, personas/ (cards with centroids,
facts and evidence passages, and a real separability report over sampled member vectors) and
events.jsonl (real TurnEvent records: AMP-CF slates attributed to mixture components, grounded
decisions, a few failed turns). The consistency scores are the campaign's own: each line is scored
by `simulator.consistency.score_line` with the structured judge, as a session scores it.
Used by the report tests and benchmarks/report_render.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from evals.campaign.config import CampaignConfig
from evals.campaign.events import SlateItem, TurnEvent
from personas.card import BigFive, Fact, Passage, PersonaCard, read_personas, write_personas
from personas.separability import separability_report

AGES = ["18-24", "25-34", "35-44"]
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Documentary"]
PERSONAS = [  # id, name, likes, dislikes
    ("p0", "Ana: late-night horror", ["Horror", "Thriller"], ["Romance", "Documentary"]),
    ("p1", "Ben: feel-good comedy", ["Comedy", "Romance"], ["Horror", "Thriller"]),
    ("p2", "Cleo: serious drama", ["Drama", "Documentary"], ["Action", "Comedy"]),
]
#: One catalog title that must never be read as markup by the report.
HOSTILE_TITLE = "<img src=x onerror=alert(1)> & Co"
#: What users say: mostly in character; the last two contradict the persona (rule P3).
PHRASES = ["I love {like}, give me more", "I hate {dislike}", "Maybe something with {like} tonight", "These are fine",
           "Nothing caught my eye", "Not in the mood for {like}", "Looking for {dislike} now"]
PHRASE_P = [0.25, 0.2, 0.2, 0.15, 0.1, 0.05, 0.05]
CONTEXT = {"mood": ["curious", "tired", "upbeat"], "companions": ["alone", "with friends", "with kids"],
           "device": ["TV", "phone", "laptop"]}


def _cards(rng: np.random.Generator, dim: int = 16) -> tuple[list[PersonaCard], dict]:
    """The personas, and their separability report over 40 sampled member vectors each."""
    centres = rng.normal(size=(len(PERSONAS), dim)) * 2
    members = np.concatenate([c + rng.normal(size=(40, dim)) for c in centres])
    members /= np.linalg.norm(members, axis=1, keepdims=True)
    labels = np.repeat(np.arange(len(PERSONAS)), 40)
    cards = []
    for i, (pid, name, likes, dislikes) in enumerate(PERSONAS):
        centroid = members[labels == i].mean(0)
        passages = [Passage(doc_id=f"doc-{i}{j}", score=0.9 - 0.05 * j,
                            text=f"Review {j} by a member of {pid}: loved the {likes[0].lower()} parts, "
                                 f"skipped the {dislikes[0].lower()}.") for j in range(3)]
        cards.append(PersonaCard(
            id=pid, name=name, summary=f"{name}. Likes {', '.join(likes)}.", likes=likes, dislikes=dislikes,
            traits=BigFive(openness=0.3 + 0.2 * i), size=int(300 - 60 * i), centroid=centroid.round(5).tolist(),
            passages=passages, facts=[Fact(key="age group", question="How old are you?", value=AGES[i], choices=AGES,
                                           evidence=[p.doc_id for p in passages])],
        ))
    report = separability_report(members, labels, persona_ids={i: p[0] for i, p in enumerate(PERSONAS)})
    return cards, report


def write_personas_folder(folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cards, report = _cards(np.random.default_rng(seed))
    write_personas(cards, folder / "personas.jsonl")
    (folder / "separability.json").write_text(json.dumps(report, indent=2))
    return folder / "personas.jsonl"


def campaign_config(users_per_persona: int, runs: int, turns: int, **kw) -> CampaignConfig:
    # personas "extracted" by the campaign: they live in OUT/personas, so a copied folder keeps them
    return CampaignConfig(name="synthetic", seed=0, personas={"extract": "synthetic-reviews", "holdout": None},
                          users_per_persona=users_per_persona, user_variants=["grounded", "layered"],
                          variants=["mf", "ampcf"], turns=turns, runs_per_user=runs, **kw)


def _session(cfg: CampaignConfig, card: PersonaCard, layers: dict, rng: np.random.Generator, catalog: list[SlateItem],
             fail_rate: float, reasons: dict, **key) -> list[TurnEvent]:
    """One session's events; the judge's reasons of each line go to ``reasons`` under reasons_key."""
    from simulator import Item, StructuredJudge, Turn, score_line

    ampcf, grounded = key["variant"] == "ampcf", key["user_variant"] == "grounded"
    events, lines = [], []
    for t in range(cfg.turns):
        picks = rng.choice(len(catalog), cfg.slate_size, replace=False)
        slate = [catalog[i].model_copy(update={"component": int(rng.integers(2)) if ampcf else None}) for i in picks]
        common = dict(**key, turn=t, layers=layers, slate=slate, config_hash=cfg.config_hash(),
                      model="synthetic-llm", backend="embedded", tokens_in=int(rng.integers(300, 700)),
                      tokens_out=int(rng.integers(10, 60)), latency_s=float(rng.uniform(0.5, 20)))
        if rng.random() < fail_rate:
            events.append(TurnEvent(**common, ok=False, error=f"chosen item id '{10_000 + t}' is not in the slate"))
            continue
        # in character most of the time: liked genres rated up, disliked down, with noise
        taste = [len(set(s.genres) & set(card.likes)) - len(set(s.genres) & set(card.dislikes)) for s in slate]
        ratings = {s.id: int(np.clip(round(3 + 1.5 * k + rng.normal(0, 0.8)), 1, 5)) for s, k in zip(slate, taste)}
        chosen = [i for i, r in ratings.items() if r >= 4][:2]
        phrase = PHRASES[int(rng.choice(len(PHRASES), p=PHRASE_P))]
        utterance = phrase.format(like=rng.choice(card.likes).lower(), dislike=rng.choice(card.dislikes).lower())
        line = Turn(user_id=key["user_id"], persona_id=card.id, turn=t, seed=key["seed"], variant=key["user_variant"],
                    slate=[Item(id=s.id, title=s.title, facets={"genres": s.genres}) for s in slate],
                    chosen=chosen, ratings=ratings, utterance=utterance)
        scores, reasons[reasons_key(**key, turn=t)], _ = asyncio.run(
            score_line(StructuredJudge(), card, layers["subtopic"], line, lines))
        scores["qa"] = float(rng.integers(2)) if t == cfg.turns - 1 else None
        lines.append(line)
        decision = {s.id: {"p_like": float(rng.uniform()), "history": float(rng.normal()), "genre": float(rng.normal()),
                           "llm": float(rng.normal(0, 0.1))} for s in slate} if grounded else {}
        events.append(TurnEvent(**common, ratings=ratings, chosen=chosen, utterance=utterance, consistency=scores,
                                decision=decision))
    return events


def reasons_key(variant: str, user_variant: str, user_id: str, run: int, turn: int, **_) -> str:
    return f"{variant}|{user_variant}|{user_id}|{run}|{turn}"


def write_campaign(out: Path, users_per_persona: int = 2, runs: int = 2, turns: int = 3, seed: int = 0,
                   fail_rate: float = 0.03) -> Path:
    """A campaign folder at ``out``: 3 personas x ``users_per_persona`` users per user variant (grounded,
    layered), each meeting mf and ampcf ``runs`` times for ``turns`` turns (sessions: 3 x users x 2 x 2 x runs).
    The judge's reasons, as the session scorer gave them, go to OUT/judge_reasons.json ({reasons_key: [reason]})."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cards = {c.id: c for c in read_personas(write_personas_folder(out / "personas", seed))}
    cfg = campaign_config(users_per_persona, runs, turns)
    (out / "campaign.json").write_text(json.dumps({"name": cfg.name, "config_hash": cfg.config_hash(),
                                                   "config": cfg.model_dump(mode="json")}))
    catalog = [SlateItem(id=str(i), title=HOSTILE_TITLE if i == 7 else f"Film {i:03d}",
                         genres=sorted({GENRES[i % len(GENRES)], GENRES[(i * 3 + 1) % len(GENRES)]}))
               for i in range(120)]
    reasons: dict[str, list[str]] = {}
    with open(out / "events.jsonl", "w", encoding="utf-8") as fh:
        for uv in cfg.user_variants:
            for u in range(users_per_persona * len(PERSONAS)):
                card = cards[PERSONAS[u % len(PERSONAS)][0]]
                layers = {"variant": uv, "persona_id": card.id, "subtopic": card.likes[u % 2], "twin": str(500 + u)
                          if uv == "grounded" else None, "traits": card.traits.model_dump(),
                          "context": {k: v[(u + i) % len(v)] for i, (k, v) in enumerate(CONTEXT.items())}}
                for variant in cfg.variants:
                    for run in range(runs):
                        key = dict(variant=variant, user_variant=uv, user_id=f"user-{u:04d}", persona_id=card.id,
                                   run=run, seed=int(rng.integers(1 << 30)))
                        for e in _session(cfg, card, layers, rng, catalog, fail_rate, reasons, **key):
                            fh.write(e.model_dump_json() + "\n")
    (out / "judge_reasons.json").write_text(json.dumps(reasons))
    return out
