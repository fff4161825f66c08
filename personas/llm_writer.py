"""LLM-written cards: the LLM sees only the cluster's passages and returns JSON.

The answer must validate against :class:`LLMCardDraft` (pydantic). Then every
claim is checked against the passages: a like/dislike with no content word (3+
letters, not a stop word; plural 's' ignored) in the passages is dropped and
counted, and so is a summary sentence. The name is kept only if supported too.
A failed call or invalid JSON leaves the extractive card in place, counted as a
failure. Facts, traits and passages always stay extractive. Pinned likes/dislikes
(MovieLens genres) stay first.

personas/ imports nothing of simulator/: the client is anything with the
:class:`CardLLM` shape (simulator.llm.LLMClient fits).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol

from pydantic import BaseModel, Field, ValidationError

from personas.card import PersonaCard

log = logging.getLogger(__name__)

PASSAGE_CHARS = 300
MAX_TOKENS = 320

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "summary": {"type": "string"},
        "likes": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 4},
        "dislikes": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 4},
    },
    "required": ["name", "summary", "likes", "dislikes"],
}

SYSTEM = ("Read the passages written by one group of people and describe that group as a persona. "
          "Use only words and facts from the passages. Answer in JSON with: name (a short descriptive title), "
          "summary (two sentences about the group), likes (things the passages praise, two or three words each), "
          "dislikes (things the passages complain about, two or three words each; empty if none).")

_STOP = {"the", "and", "for", "with", "that", "this", "are", "was", "but", "not", "you", "they", "them", "their",
         "have", "has", "had", "who", "what", "when", "where", "which", "from", "about", "into", "very", "really",
         "like", "likes", "love", "loves", "dislike", "dislikes", "person", "persona", "people", "customer",
         "customers", "enjoys", "enjoy", "prefers", "prefer", "she", "her", "his", "him", "all", "more", "most",
         "some", "too", "much", "can", "will", "would", "been", "being", "also", "there", "these", "those",
         "things", "thing", "good", "great", "well", "just", "such", "than", "then", "only", "other"}
_WORD = re.compile(r"[a-z][a-z'\-]{2,}")


class CardLLM(Protocol):
    """What the writer needs from an LLM client (simulator.llm.LLMClient satisfies it)."""

    async def generate(self, messages: list[dict], *, temperature: float, max_tokens: int, seed: int,
                       json_schema: dict | None) -> Any: ...


class LLMCardDraft(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    summary: str = Field(min_length=1, max_length=2000)
    likes: list[str] = Field(default_factory=list, max_length=12)
    dislikes: list[str] = Field(default_factory=list, max_length=12)


def content_words(text: str) -> set[str]:
    return {w.strip("'-").removesuffix("'s").rstrip("s") for w in _WORD.findall(text.lower())
            if w not in _STOP} - {""}


def supported(claim: str, evidence: set[str]) -> bool:
    """True when the claim shares at least one content word with the evidence words."""
    return bool(content_words(claim) & evidence)


def messages_for(card: PersonaCard) -> list[dict]:
    lines = [f"Passage {i + 1}: {p.text[:PASSAGE_CHARS]}" for i, p in enumerate(card.passages)]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


async def rewrite_card(llm: CardLLM, card: PersonaCard, *, seed: int, max_tokens: int, pinned: tuple[list[str], list[str]],
                       stats: dict) -> PersonaCard:
    c = await llm.generate(messages_for(card), temperature=0.2, max_tokens=max_tokens, seed=seed, json_schema=SCHEMA)
    if not getattr(c, "ok", False) or getattr(c, "parsed", None) is None:
        stats["failures"] += 1
        stats["errors"].append(f"{card.id}: {getattr(c, 'error', None) or 'no JSON'}")
        return card
    try:
        draft = LLMCardDraft.model_validate(c.parsed)
    except ValidationError as exc:
        stats["failures"] += 1
        stats["errors"].append(f"{card.id}: invalid JSON ({exc.errors()[0]['msg']})")
        return card
    evidence = set().union(*(content_words(p.text) for p in card.passages)) if card.passages else set()

    def keep(claims: list[str]) -> list[str]:
        kept: list[str] = []
        for claim in dict.fromkeys(x.strip() for x in claims):  # repeated claims count once
            stats["claims"] += 1
            if claim and supported(claim, evidence):
                kept.append(claim)
            else:
                stats["claims_dropped"] += 1
        return kept

    likes = pinned[0] + [x for x in keep(draft.likes) if x not in pinned[0]]
    dislikes = pinned[1] + [x for x in keep(draft.dislikes) if x not in pinned[1] and x not in likes]
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", draft.summary.strip()) if s]
    kept_sentences = [s for s in sentences if supported(s, evidence)]
    stats["summary_sentences_dropped"] += len(sentences) - len(kept_sentences)
    name = draft.name.strip() if supported(draft.name, evidence) else card.name
    stats["written"] += 1
    model = getattr(c, "model", "") or getattr(llm, "model", "") or "llm"
    return card.model_copy(update={
        "name": name, "summary": " ".join(kept_sentences) or card.summary,
        "likes": likes, "dislikes": dislikes, "writer": f"llm:{model}",
    })


def rewrite_cards(llm: CardLLM, cards: list[PersonaCard], *, seed: int = 0, max_tokens: int = MAX_TOKENS,
                  pinned: dict[str, tuple[list[str], list[str]]] | None = None,
                  show_progress: bool = True) -> tuple[list[PersonaCard], dict]:
    """Rewrite every card with the LLM (concurrently); returns (cards, stats)."""
    stats = {"written": 0, "failures": 0, "claims": 0, "claims_dropped": 0, "summary_sentences_dropped": 0,
             "errors": []}
    pinned = pinned or {}

    async def run() -> list[PersonaCard]:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cards), desc="writing cards", disable=not show_progress)

        async def one(i: int, card: PersonaCard) -> PersonaCard:
            out = await rewrite_card(llm, card, seed=seed + i, max_tokens=max_tokens,
                                     pinned=pinned.get(card.id, ([], [])), stats=stats)
            bar.update(1)
            return out

        try:
            return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(cards))))
        finally:
            bar.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run()), stats
    # called from inside an event loop (e.g. an async caller): run in a worker thread
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result(), stats
