"""The grounded simulated user: its decisions carry its persona; the LLM voices them.

    grounding = Grounding(space, models={"twin": m1, "persona": m2}, memories={...})
    user = GroundedUser(llm, grounding=grounding)
    user.reset(profile)                      # profile.twin = a real user id, or None (persona-level)
    turn = await user.step(slate, turn=0, seed=7)

Per turn (see `simulator.choice` for the formula):
1. features of every slate item: the evidence of `simulator.evidence` from the
   user's memory (a twin's own training history, or the persona's canon) and
   ``llm``: logit P(yes) of "Would you enjoy watching X?", read from the
   first-token log-probabilities (`LLMClient.option_probs`), not one sample;
2. the fitted `ChoiceModel` plus the context shifts give calibrated probabilities
   (take given shown, like given watched, a rating distribution), and the choices,
   ratings and stop are drawn from them; the draws are seeded by the session
   and the turn only, so best-of-N candidates share one decision and differ
   only in how the LLM voices it (the reward cannot select behaviour);
3. the LLM says one sentence about the decision (the utterance), which the
   consistency judge scores like any other line.
``Turn.decision`` records, per item, the take and like-given-watched
probabilities and what each source added to its affinity.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from simulator.catalog import Item
from simulator.choice import ChoiceModel, decide
from simulator.evidence import Memory, ItemSpace, evidence_features
from simulator.layers import UserProfile, derive_seed, describe_traits
from simulator import recall
from simulator.prompts import render
from simulator.selector import person_level
from simulator.turn import Onboarding, Turn, utterance_schema
from simulator.user import Candidate, SimulatedUser
from simulator.voice import PLAN_MAX_TOKENS, VOICES, clean, make_plan, plan_messages, short_title

#: Clip of the LLM feature: logit P(yes) in [-LLM_CLIP, LLM_CLIP].
LLM_CLIP = 8.0
#: Most of a twin's latest liked training items it onboards with.
TWIN_ONBOARDING = 10


@dataclass
class Grounding:
    """Everything a grounded user needs, fitted on training data only (`personasim calibrate`).

    models: one `ChoiceModel` per memory kind ('twin', 'persona'); memories: by key
    ('persona:<id>', 'twin:<user id>'); sampled: draw the decision from its calibrated probabilities
    (True, the default) or take the deterministic one (False, for debugging); rating_rule:
    'expected' or 'matched' (`simulator.rating_rules.RATING_RULES`); judge_seed: the seed every LLM judgement
    is asked with, the calibration's own, so the LLM feature is read as it was when the weights were fitted;
    layers: which of the profile's 'subtopic' and 'context' the decision plays (the prompt still names both).

    An item's judgement depends on its persona alone (`llm_judgement`), so it is asked once per persona
    and item and kept in ``judged`` for every session of that persona's users: in a campaign of 4 twins a
    persona meeting MF and AMP-CF twice, 290 distinct judgements instead of 960.
    """

    space: ItemSpace
    models: dict[str, ChoiceModel]
    memories: dict[str, Memory]
    sampled: bool = True
    rating_rule: str = "expected"
    judge_seed: int = 0
    layers: tuple[str, ...] = ("subtopic", "context")  # what the decision plays of the profile's subtopic and context
    verb: str = "watch"  # what the LLM judgement asks a user would do with an item (the calibration's own)
    judged: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)  # (persona id, item id) -> logit

    def memory_for(self, profile: UserProfile) -> Memory | None:
        key = f"twin:{profile.twin}" if profile.twin else f"persona:{profile.persona.id}"
        return self.memories.get(key)


async def llm_judgement(llm, persona, canon: Memory, space: ItemSpace, items: np.ndarray, *, seed: int,
                        verb: str = "watch") -> np.ndarray:
    """logit P(yes) [M] of "Would you enjoy watching X?" (``verb`` 'watch', MovieLens's; else "Would you <verb> X?")
    for item indices ``items`` [M], asked of the
    persona (its card and its canon's titles); clipped to +-LLM_CLIP. Twins of one persona share
    the persona's judgement: their own history enters through the evidence features, and one
    shared prompt is evaluated once for all items (`EmbeddedBackend._eval_blocks`).
    Raises RuntimeError naming the item when a call fails (never a silent default)."""
    liked, disliked = canon.titles(space)
    system = render("grounded_judge", persona=persona, liked=liked, disliked=disliked, verb=verb)
    items = np.asarray(items, dtype=np.int64)
    results = await llm.option_probs_many(
        [[{"role": "system", "content": system}, {"role": "user", "content": render("grounded_item", item=space.describe(i), verb=verb)}]
         for i in items], ["yes", "no"], seed=seed)
    out = np.zeros(len(items))
    for j, (i, res) in enumerate(zip(items, results)):
        if not res.ok:
            raise RuntimeError(f"LLM judgement of item {space.ids[i]!r} failed: {res.error}")
        p = min(max(res.probs["yes"], 1e-12), 1 - 1e-12)
        out[j] = float(np.clip(math.log(p / (1 - p)), -LLM_CLIP, LLM_CLIP))
    return out


async def grounded_features(llm, persona, memories: list[Memory], canon: Memory, space: ItemSpace, items: np.ndarray,
                            features: list[str], *, seed: int, verb: str = "watch") -> list[np.ndarray]:
    """For each memory, the [M, F] features of item indices ``items`` in the order of ``features``
    (EVIDENCE [+ 'llm']). ``canon``: the persona's memory, which the LLM judgement is asked with, once
    for all the memories (the twin and the persona-level user of one persona share it)."""
    judged = await llm_judgement(llm, persona, canon, space, items, seed=seed, verb=verb) if "llm" in features else None
    return [evidence_features(space, m, items) if judged is None else
            np.column_stack([evidence_features(space, m, items), judged]) for m in memories]


def focus_genres(space: ItemSpace, subtopic: str | None) -> list[str]:
    """The genres a subtopic focuses a session on (`simulator.choice.FOCUS_SHIFT`): itself when it names a genre,
    a film's genres when it names a film of the catalog (its title without the year), none otherwise."""
    if not subtopic:
        return []
    if any(subtopic in gs for gs in space.genres):
        return [subtopic]
    for title, gs in zip(space.titles, space.genres):
        if title == subtopic or title.rsplit(" (", 1)[0] == subtopic:
            return list(gs)
    return []


class GroundedUser(SimulatedUser):
    """A simulated user whose decisions are a fitted function of grounded evidence (module docstring)."""

    variant = "grounded"
    system_template = "layered_system"

    def __init__(self, llm, *, grounding: Grounding | None = None, voice: str = "planned", **settings):
        super().__init__(llm, **settings)
        if voice not in VOICES:
            raise ValueError(f"voice {voice!r}: choose one of {', '.join(VOICES)}")
        self.grounding = grounding
        self.voice = voice

    def profile_problem(self, profile: UserProfile) -> str | None:
        g = self.grounding
        if g is None:
            return "a grounded user needs a calibration (run `personasim calibrate`)"
        memory = g.memory_for(profile)
        if memory is None:
            who = f"twin {profile.twin!r}" if profile.twin else f"persona {profile.persona.id!r}"
            return f"the calibration has no memory for {who}"
        if memory.kind not in g.models:
            return f"the calibration has no choice model for {memory.kind} users"
        return super().profile_problem(profile)

    def _parts(self) -> tuple[UserProfile, Memory, ChoiceModel]:
        p = self._profile()
        memory = self.grounding.memory_for(p)
        return p, memory, self.grounding.models[memory.kind]

    async def features(self, items: list[Item]) -> np.ndarray:
        """[M, F] in the model's feature order."""
        p, memory, model = self._parts()
        g = self.grounding
        idx = g.space.index([it.id for it in items])
        X = evidence_features(g.space, memory, idx)
        if "llm" in model.features:
            key = [(memory.persona_id, g.space.ids[i]) for i in idx]
            todo = list(dict.fromkeys(i for i, k in zip(idx, key) if k not in g.judged))
            if todo:
                canon = g.memories[f"persona:{memory.persona_id}"]
                vals = await llm_judgement(self.llm, p.persona, canon, g.space, np.asarray(todo), seed=g.judge_seed,
                                           verb=g.verb)
                g.judged.update({(memory.persona_id, g.space.ids[i]): float(v) for i, v in zip(todo, vals)})
            X = np.column_stack([X, [g.judged[k] for k in key]])
        return X

    def level(self) -> float:
        """This person's own level (`simulator.selector.person_level`): one standard normal draw seeded by the
        profile, so every run and turn of the same simulated user shares it."""
        p = self._profile()
        return person_level(p.user_id, *p.signature())

    def _decide(self, items: list[Item], X: np.ndarray, seed: int, max_choices: int | None, may_stop: bool):
        p, memory, model = self._parts()
        space = self.grounding.space
        idx = space.index([it.id for it in items])
        return decide(model, X, user_mean=memory.mean_rating, item_mean=space.mean_rating[idx],
                      genres=[space.genres[i] for i in idx],
                      context=p.context if "context" in self.grounding.layers else {},
                      sampled=self.grounding.sampled, rng=np.random.default_rng(seed),
                      max_choices=max_choices, may_stop=may_stop, rating_rule=self.grounding.rating_rule,
                      focus=focus_genres(space, p.subtopic) if "subtopic" in self.grounding.layers else [],
                      level=self.level())

    async def propose(self, slate: list[Item], *, turn: int, seed: int, session_seed: int = 0) -> Candidate:
        p, memory, model = self._parts()
        started = time.perf_counter()
        base = dict(user_id=p.user_id, persona_id=p.persona.id, variant=self.variant, turn=turn, seed=session_seed,
                    call_seed=seed, model=self.llm.model, backend=self.llm.name, layers=self.layers(), slate=slate)
        try:
            X = await self.features(slate)
        except RuntimeError as exc:
            return Candidate(Turn(**base, ok=False, error=str(exc)), [])
        d = self._decide(slate, X, derive_seed(session_seed, "decide", turn), self.max_choices,
                         turn >= self.allow_stop_from)
        chosen = [slate[j].id for j in d.chosen]
        ratings = {it.id: int(r) for it, r in zip(slate, d.ratings)}
        contrib = model.contributions(X)
        decision = {it.id: {"p_take": round(float(pt), 4), "p_like": round(float(pl), 4),
                            **{f: round(float(c), 4) for f, c in zip(model.features, row)}}
                    for it, pt, pl, row in zip(slate, d.p_take, d.p_like, contrib)}
        space = self.grounding.space
        evidence = [short_title(t) for t in memory.titles(space, n_liked=TWIN_ONBOARDING, n_disliked=0)[0]]
        if self.voice == "planned":
            plan = make_plan(space, memory, space.index([it.id for it in slate]), list(d.chosen))
            messages = plan_messages(plan, p, self.verb)
            c = await self.llm.generate(messages, temperature=self.temperature, max_tokens=PLAN_MAX_TOKENS, seed=seed)
            utterance = clean(c.text) if c.ok else ""
            evidence = list(dict.fromkeys([plan.like, *evidence] if plan.like else evidence))
        else:
            messages = self.voice_messages(slate, chosen, ratings)
            c = await self.llm.generate(messages, temperature=self.temperature, max_tokens=self.max_tokens, seed=seed,
                                        json_schema=utterance_schema(self.utterance_chars))
            utterance = str(c.parsed.get("utterance", "")).strip() if c.ok and isinstance(c.parsed, dict) else ""
        base.update(tokens_in=c.tokens_in, tokens_out=c.tokens_out, latency_s=time.perf_counter() - started, raw=c.text,
                    decision=decision, evidence=evidence)
        if not utterance:
            return Candidate(Turn(**base, ok=False, error=f"LLM: {c.error or 'no utterance'}"), messages)
        return Candidate(Turn(**base, chosen=chosen, ratings=ratings, utterance=utterance, stop=d.stop), messages)

    def voice_messages(self, slate: list[Item], chosen: list[str], ratings: dict[str, int]) -> list[dict]:
        titles = {it.id: it.title for it in slate}
        p = self._profile()
        system = render(self.system_template, persona=p.persona, subtopic=p.subtopic, traits=describe_traits(p.traits),
                        context=p.context)
        user = render("grounded_voice", said=self.said[-self.remember:] if self.remember else [], slate=slate,
                      chosen=[titles[i] for i in chosen], verb=self.verb,
                      liked_titles=[titles[i] for i, r in ratings.items() if r >= 4 and i not in chosen],
                      panned_titles=[titles[i] for i, r in ratings.items() if r <= 2])
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def onboard(self, pool: list[Item], *, seed: int, max_picks: int = 3) -> Onboarding:
        """A twin arrives with its history: its latest liked training items (up to TWIN_ONBOARDING, the
        pool is not used), so repeated runs of one twin start from the same place, as the real user
        would. A persona-level user picks the pool items with the highest like logit (at least one)."""
        p, memory, _ = self._parts()
        if memory.kind == "twin" and len(memory.liked):
            liked = set(memory.liked.tolist())
            latest = [int(i) for i in memory.recent[::-1] if int(i) in liked] or memory.liked.tolist()
            space = self.grounding.space
            return Onboarding(pool=[it.id for it in pool], liked=[space.ids[i] for i in latest[:TWIN_ONBOARDING]])
        X = await self.features(pool)
        d = self._decide(pool, X, seed, max_picks, False)
        picks = [pool[j].id for j in d.chosen] or [pool[int(np.argmax(d.logits))].id]
        return Onboarding(pool=[it.id for it in pool], liked=picks)

    async def answer(self, fact, *, seed: int):
        """A twin is asked about its own record, not the card (whose facts are its persona's, and in its prompt):
        "Did you like <title>?" of a film it rated in train, answered by its decision model with the film left
        out of what it knows and graded by the real rating (`simulator.recall`); ``fact`` is ignored (None when
        the card has none). A persona-level user answers the card's ``fact`` as every user does."""
        if recall.asks_own_fact(self):
            return await recall.answer_own(self, seed=seed, judge=llm_judgement)
        if fact is None:
            raise ValueError("a persona-level user is asked the card's facts, and this card has none")
        return await super().answer(fact, seed=seed)
