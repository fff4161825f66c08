"""Consistency judges: does a line contradict the persona, or an earlier line?

One interface (`ConsistencyJudge`), two judges:

`StructuredJudge` (default; works with any model, needs none). Rules, with
concepts matched as in `simulator.matching` ("likes" include the subtopic the
user seeks today; a concept in both likes and dislikes counts as neither):

  against the persona, a line contradicts it when
    P1  it chooses, or rates 4-5, an item carrying a disliked concept that
        carries no liked concept;
    P2  it rates 1-2 an item carrying the sought subtopic that carries no
        disliked concept;
    P3  its utterance states a liking for a disliked concept, or a dislike
        of a liked one.
  against an earlier line of the same user, a line conflicts with it when
    L1  the two utterances state opposite preferences for one concept;
    L2  one utterance states a preference that the other line's behaviour
        opposes (chosen / rated 4-5 items are +1 for their concepts, items
        rated 1-2 are -1; behaviour is compared with statements only, never
        with behaviour, since multi-genre items make that noise);
    L3  the same item is rated in both lines, 3 or more points apart.

`LLMJudge` asks a model with the documented templates
simulator/prompts/judge_persona.j2 and judge_pair.j2 (a yes/no enum plus a
short reason). Use it with capable models only: the embedded 135M model
answered "no contradiction" to every test pair.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from personas.card import PersonaCard
from simulator.catalog import Item
from simulator.matching import item_concepts, stated_preferences, term_concepts
from simulator.prompts import render
from simulator.turn import Turn


class Verdict(BaseModel):
    """``contradiction`` is None when the judge could not decide (e.g. its LLM call failed)."""

    contradiction: bool | None
    reasons: list[str] = Field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0


class ConsistencyJudge(Protocol):
    name: str

    async def against_persona(self, card: PersonaCard, subtopic: str | None, line: Turn) -> Verdict: ...

    async def against_earlier(self, card: PersonaCard, line: Turn, earlier: Turn) -> Verdict: ...


def _genres(*lines: Turn) -> list[str]:
    return sorted({v for t in lines for it in t.slate for k, vs in it.facets.items() if k != "year" for v in vs})


def _titles(line: Turn) -> dict[str, str]:
    return {it.id: it.title for it in line.slate}


class StructuredJudge:
    """Rule-based judge (rules P1-P3, L1-L3 in the module docstring). Deterministic."""

    name = "structured"

    @staticmethod
    def _tastes(card: PersonaCard, subtopic: str | None, genres: list[str]) -> tuple[set, set, set]:
        likes = set().union(*(term_concepts(t, genres) for t in [*card.likes, *([subtopic] if subtopic else [])]))
        dislikes = set().union(*(term_concepts(t, genres) for t in card.dislikes))
        sought = term_concepts(subtopic, genres) - dislikes if subtopic else set()
        return likes - dislikes, dislikes - likes, sought

    def persona_reasons(self, card: PersonaCard, subtopic: str | None, line: Turn) -> list[str]:
        genres = _genres(line)
        vocab = genres + card.likes + card.dislikes + ([subtopic] if subtopic else [])
        likes, dislikes, sought = self._tastes(card, subtopic, genres)
        reasons = []
        for item in line.slate:
            concepts = item_concepts(item, vocab)
            rating = line.ratings.get(item.id)
            bad = sorted(concepts & dislikes)
            if bad and not concepts & likes and (item.id in line.chosen or (rating or 0) >= 4):
                what = "chose" if item.id in line.chosen else f"rated {rating}"
                reasons.append(f"P1: {what} {item.title!r}, which is {', '.join(bad)} (disliked)")
            wanted = sorted(concepts & sought)
            if wanted and rating is not None and rating <= 2 and not concepts & dislikes:
                reasons.append(f"P2: rated {item.title!r} {rating} though looking for {subtopic}")
        for concept, polarity in sorted(stated_preferences(line.utterance, vocab).items()):
            if polarity > 0 and concept in dislikes:
                reasons.append(f"P3: says they like {concept} (disliked)")
            if polarity < 0 and concept in likes:
                reasons.append(f"P3: says they dislike {concept} (liked)")
        return reasons

    @staticmethod
    def _behaviour(line: Turn, vocab: list[str]) -> dict[str, int]:
        signs: dict[str, set[int]] = {}
        for item in line.slate:
            rating = line.ratings.get(item.id)
            sign = 1 if item.id in line.chosen or (rating or 0) >= 4 else -1 if rating is not None and rating <= 2 else 0
            if sign:
                for c in item_concepts(item, vocab):
                    signs.setdefault(c, set()).add(sign)
        return {c: s.pop() for c, s in signs.items() if len(s) == 1}

    def pair_reasons(self, card: PersonaCard, line: Turn, earlier: Turn) -> list[str]:
        vocab = _genres(line, earlier) + card.likes + card.dislikes
        said_now, said_then = stated_preferences(line.utterance, vocab), stated_preferences(earlier.utterance, vocab)
        did_now, did_then = self._behaviour(line, vocab), self._behaviour(earlier, vocab)
        reasons = []
        for c in sorted(set(said_now) & set(said_then)):
            if said_now[c] != said_then[c]:
                reasons.append(f"L1: now {'likes' if said_now[c] > 0 else 'dislikes'} {c}, said the opposite at turn {earlier.turn}")
        for c in sorted(set(said_now) & set(did_then)):
            if said_now[c] != did_then[c]:
                reasons.append(f"L2: now {'likes' if said_now[c] > 0 else 'dislikes'} {c}, acted the opposite at turn {earlier.turn}")
        for c in sorted(set(did_now) & set(said_then)):
            if did_now[c] != said_then[c]:
                reasons.append(f"L2: acts {'for' if did_now[c] > 0 else 'against'} {c}, said the opposite at turn {earlier.turn}")
        titles = _titles(line)
        for item_id in sorted(set(line.ratings) & set(earlier.ratings)):
            if abs(line.ratings[item_id] - earlier.ratings[item_id]) >= 3:
                reasons.append(
                    f"L3: rated {titles.get(item_id, item_id)!r} {line.ratings[item_id]}, "
                    f"{earlier.ratings[item_id]} at turn {earlier.turn}"
                )
        return reasons

    async def against_persona(self, card: PersonaCard, subtopic: str | None, line: Turn) -> Verdict:
        reasons = self.persona_reasons(card, subtopic, line)
        return Verdict(contradiction=bool(reasons), reasons=reasons)

    async def against_earlier(self, card: PersonaCard, line: Turn, earlier: Turn) -> Verdict:
        reasons = self.pair_reasons(card, line, earlier)
        return Verdict(contradiction=bool(reasons), reasons=reasons)


def _sides(card: PersonaCard, subtopic: str | None, line: Turn) -> tuple[list[Item], list[Item]]:
    """(the slate's items with a liked or sought concept and no disliked one, those with a disliked
    concept and no liked one), concepts matched as the structured judge matches them."""
    genres = _genres(line)
    vocab = genres + card.likes + card.dislikes + ([subtopic] if subtopic else [])
    likes, dislikes, _ = StructuredJudge._tastes(card, subtopic, genres)
    concepts = [(it, item_concepts(it, vocab)) for it in line.slate]
    return ([it for it, c in concepts if c & likes and not c & dislikes],
            [it for it, c in concepts if c & dislikes and not c & likes])


def alignment(card: PersonaCard, subtopic: str | None, line: Turn) -> float | None:
    """Commitment to the persona, both ways: the share of the slate's persona-telling items the line
    treated as the persona would. An aligned item (a liked concept or the sought subtopic, no disliked
    one) counts when the line chose it or rated it 4-5; a disliked-side item (a disliked concept, no
    liked one) counts when the line neither chose it nor rated it 3 or more (i.e. rated it 1-2). The
    share is over both sides' items together; None when the slate has neither.

    Part of the best-of-N reward, so that a line which commits to nothing (chooses nothing, rates
    everything 3, says nothing matchable) no longer gets full marks, on a slate of liked items or
    on one that holds only what the persona dislikes.
    """
    aligned, disliked = _sides(card, subtopic, line)
    if not aligned and not disliked:
        return None
    hits = sum(it.id in line.chosen or line.ratings.get(it.id, 0) >= 4 for it in aligned)
    hits += sum(it.id not in line.chosen and it.id in line.ratings and line.ratings[it.id] <= 2 for it in disliked)
    return hits / (len(aligned) + len(disliked))


def can_fire(card: PersonaCard, subtopic: str | None, line: Turn) -> bool:
    """Can the structured judge's persona rules (P1-P3) fire on this line at all: does its slate hold an
    item with a liked (or sought) concept and no disliked one, or one with a disliked concept and no liked
    one, or does its utterance state a preference for a concept it matches? A line where none holds
    scores prompt-to-line 1.0 whatever it does; `simulator.consistency.summarize` leaves it out."""
    aligned, disliked = _sides(card, subtopic, line)
    if aligned or disliked:
        return True
    vocab = _genres(line) + card.likes + card.dislikes + ([subtopic] if subtopic else [])
    return bool(stated_preferences(line.utterance, vocab))


def rank_order(card: PersonaCard, subtopic: str | None, line: Turn) -> float | None:
    """How well the line's ratings order the persona's tastes: over the slate's (liked, disliked)
    item pairs (a liked or sought concept and no disliked one; a disliked concept and no liked
    one), the share where the liked item is rated above the disliked one (ties count 1/2).
    None when the slate has no such rated pair.

    The structured rules only look at ratings beyond fixed thresholds (>= 4 on a disliked item,
    <= 2 on a sought one); this reads the order of every rating, thresholds or not. It is the
    ``ranking`` reward's core (`simulator.consistency.reward_of`) and, as 1 - rank_order, a
    held-out metric of the structured reward (`evals.validity.consistency`).
    """
    liked, disliked = ([line.ratings[it.id] for it in side if it.id in line.ratings]
                       for side in _sides(card, subtopic, line))
    if not liked or not disliked:
        return None
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in liked for b in disliked) / (len(liked) * len(disliked))


def describe_line(line: Turn) -> str:
    """A turn as plain text for an LLM judge."""
    titles = _titles(line)
    ratings = ", ".join(f"{titles.get(i, i)}={r}" for i, r in line.ratings.items())
    chosen = ", ".join(titles.get(i, i) for i in line.chosen) or "nothing"
    return f"Shown and rated: {ratings}. Chose: {chosen}. Said: \"{line.utterance}\""


JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "contradiction": {"type": "string", "enum": ["yes", "no"]},
        "reason": {"type": "string", "maxLength": 120},
    },
    "required": ["contradiction", "reason"],
    "additionalProperties": False,
}


class LLMJudge:
    """Asks an LLM (any `simulator.llm.LLMClient`) with the judge templates. For capable models."""

    name = "llm"

    def __init__(self, llm, *, seed: int = 0, max_tokens: int = 96):
        self.llm = llm
        self.seed = seed
        self.max_tokens = max_tokens

    async def _ask(self, prompt: str) -> Verdict:
        c = await self.llm.generate(
            [{"role": "user", "content": prompt}],
            temperature=0.0,
            max_tokens=self.max_tokens,
            seed=self.seed,
            json_schema=JUDGE_SCHEMA,
        )
        if not c.ok:
            return Verdict(contradiction=None, reasons=[f"judge failed: {c.error}"], tokens_in=c.tokens_in, tokens_out=c.tokens_out)
        yes = c.parsed["contradiction"] == "yes"
        return Verdict(contradiction=yes, reasons=[c.parsed["reason"]] if yes else [], tokens_in=c.tokens_in, tokens_out=c.tokens_out)

    async def against_persona(self, card: PersonaCard, subtopic: str | None, line: Turn) -> Verdict:
        return await self._ask(render("judge_persona", persona=card, subtopic=subtopic, line=describe_line(line)))

    async def against_earlier(self, card: PersonaCard, line: Turn, earlier: Turn) -> Verdict:
        return await self._ask(render("judge_pair", earlier=describe_line(earlier), line=describe_line(line)))


def make_judge(name: str, llm=None) -> ConsistencyJudge:
    """'structured' or 'llm' (the latter needs ``llm``)."""
    if name == "structured":
        return StructuredJudge()
    if name == "llm":
        if llm is None:
            raise ValueError("the 'llm' judge needs an LLM client")
        return LLMJudge(llm)
    raise ValueError(f"unknown judge {name!r}; choose 'structured' or 'llm'")
