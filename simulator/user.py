"""A simulated user: a small state machine over one LLM client.

    user = SimulatedUser(llm)          # or NaiveUser(llm); see simulator.variants
    user.reset(profile)
    liked = await user.onboard(pool, seed=...)
    cand = await user.propose(slate, turn=0, seed=...)   # one candidate turn (not yet said)
    user.commit(cand.turn)                                # the kept one becomes history
    qa = await user.answer(fact, seed=...)

``step(slate, turn, seed)`` is propose + commit. Best-of-N (in
`simulator.session`) proposes N candidates and commits the best. Variants
override the hooks (`system_prompt`, `profile_problem`, `layers`), never the loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from personas.card import Fact
from simulator.catalog import Item
from simulator.layers import UserProfile, describe_traits
from simulator.prompts import render
from simulator.turn import (
    MAX_CHOICES,
    UTTERANCE_MAX_CHARS,
    Onboarding,
    QARecord,
    Turn,
    answer_schema,
    pick_schema,
    turn_schema,
    validate_turn_answer,
)


@dataclass
class Candidate:
    """One proposed turn and the messages that produced it (kept for preference export)."""

    turn: Turn
    messages: list[dict]


class SimulatedUser:
    """The layered user: persona card + jittered traits + subtopic + context.

    Args:
        llm: an `LLMClient` (shared by many users; calls are async).
        temperature: sampling temperature of turn answers.
        max_tokens: per call; leave headroom over the schema's longest answer
            (a string cut by max_tokens is broken JSON).
        max_choices: most items chosen per turn.
        remember: how many earlier utterances go back into the prompt.
        allow_stop_from: the ``stop`` field is offered from this turn index on
            (small models say stop at random; earlier turns always continue).
        verb: what the user does with a chosen item ("watch", "buy", "read").
    """

    variant = "layered"
    system_template = "layered_system"

    def __init__(
        self,
        llm,
        *,
        temperature: float = 0.7,
        max_tokens: int = 192,
        max_choices: int = MAX_CHOICES,
        utterance_chars: int = UTTERANCE_MAX_CHARS,
        remember: int = 2,
        allow_stop_from: int = 2,
        verb: str = "watch",
    ):
        self.llm = llm
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_choices = max_choices
        self.utterance_chars = utterance_chars
        self.remember = remember
        self.allow_stop_from = allow_stop_from
        self.verb = verb
        self.profile: UserProfile | None = None
        self.said: list[str] = []

    # ---- hooks -------------------------------------------------------------------
    def profile_problem(self, profile: UserProfile) -> str | None:
        """Why this variant cannot play ``profile`` (the session records it as a failed turn)."""
        if not profile.persona.likes or profile.subtopic is None:
            return f"persona {profile.persona.id!r} has no likes: a layered user needs a subtopic"
        return None

    def system_prompt(self) -> str:
        p = self._profile()
        return render(
            self.system_template, persona=p.persona, subtopic=p.subtopic, traits=describe_traits(p.traits), context=p.context
        )

    def layers(self) -> dict:
        """What is recorded with every turn."""
        return self._profile().layers()

    # ---- state machine -----------------------------------------------------------
    def reset(self, profile: UserProfile) -> None:
        self.profile = profile
        self.said = []

    def _profile(self) -> UserProfile:
        if self.profile is None:
            raise RuntimeError("call reset(profile) before using a simulated user")
        return self.profile

    def turn_messages(self, slate: list[Item], turn: int) -> list[dict]:
        user = render(
            "turn",
            said=self.said[-self.remember :] if self.remember else [],
            slate=slate,
            max_choices=self.max_choices,
            verb=self.verb,
            allow_stop=turn >= self.allow_stop_from,
        )
        return [{"role": "system", "content": self.system_prompt()}, {"role": "user", "content": user}]

    def _schema(self, slate: list[Item], turn: int) -> dict:
        schema = turn_schema(slate, self.max_choices, self.utterance_chars)
        if turn < self.allow_stop_from:  # not offered: the answer cannot say stop
            schema["properties"].pop("stop")
            schema["required"].remove("stop")
        return schema

    async def propose(self, slate: list[Item], *, turn: int, seed: int, session_seed: int = 0) -> Candidate:
        """One candidate turn for ``slate`` (the user's state is unchanged)."""
        p = self._profile()
        messages = self.turn_messages(slate, turn)
        started = time.perf_counter()
        c = await self.llm.generate(
            messages, temperature=self.temperature, max_tokens=self.max_tokens, seed=seed, json_schema=self._schema(slate, turn)
        )
        base = dict(
            user_id=p.user_id, persona_id=p.persona.id, variant=self.variant, turn=turn, seed=session_seed,
            call_seed=seed, model=c.model, backend=c.backend, layers=self.layers(), slate=slate,
            tokens_in=c.tokens_in, tokens_out=c.tokens_out, latency_s=time.perf_counter() - started, raw=c.text,
        )
        if not c.ok:
            return Candidate(Turn(**base, ok=False, error=f"LLM: {c.error}"), messages)
        parsed = dict(c.parsed) if isinstance(c.parsed, dict) else c.parsed
        if isinstance(parsed, dict) and turn < self.allow_stop_from:
            parsed.setdefault("stop", False)  # the schema did not offer it
        answer, reason = validate_turn_answer(parsed, slate)
        if answer is None:
            return Candidate(Turn(**base, ok=False, error=reason), messages)
        return Candidate(Turn(**base, **answer.model_dump()), messages)

    def commit(self, turn: Turn) -> None:
        """Make ``turn`` part of the user's history (what they said is remembered)."""
        if turn.ok:
            self.said.append(turn.utterance)

    async def step(self, slate: list[Item], *, turn: int, seed: int) -> Turn:
        cand = await self.propose(slate, turn=turn, seed=seed, session_seed=seed)
        self.commit(cand.turn)
        return cand.turn

    async def onboard(self, pool: list[Item], *, seed: int, max_picks: int = 3) -> Onboarding:
        """Pick liked items from ``pool`` (an id outside the pool is a failure, not dropped)."""
        messages = [
            {"role": "system", "content": self.system_prompt()},
            {"role": "user", "content": render("onboarding", pool=pool, max_picks=max_picks)},
        ]
        ids = [it.id for it in pool]
        c = await self.llm.generate(messages, temperature=self.temperature, max_tokens=24 + 8 * max_picks, seed=seed,
                                    json_schema=pick_schema(pool, max_picks))
        rec = Onboarding(pool=ids, tokens_in=c.tokens_in, tokens_out=c.tokens_out)
        if not c.ok:
            return rec.model_copy(update={"ok": False, "error": f"LLM: {c.error}"})
        liked = c.parsed.get("liked") if isinstance(c.parsed, dict) else None
        if not isinstance(liked, list) or not liked:
            return rec.model_copy(update={"ok": False, "error": "answer has no liked items"})
        outside = [i for i in liked if i not in ids]
        if outside:
            return rec.model_copy(update={"ok": False, "error": f"liked item id {outside[0]!r} is not in the pool"})
        return rec.model_copy(update={"liked": list(dict.fromkeys(liked))})

    async def answer(self, fact: Fact, *, seed: int) -> QARecord:
        """Ask a multiple-choice question from the persona's facts (choices shuffled by ``seed``)."""
        rng = np.random.default_rng(seed)
        choices = [fact.choices[i] for i in rng.permutation(len(fact.choices))]
        messages = [
            {"role": "system", "content": self.system_prompt()},
            {"role": "user", "content": render("question", question=fact.question, choices=choices)},
        ]
        longest = max(len(ch) for ch in choices)
        c = await self.llm.generate(messages, temperature=self.temperature, max_tokens=16 + longest, seed=seed,
                                    json_schema=answer_schema(choices))
        rec = QARecord(key=fact.key, question=fact.question, choices=choices, expected=fact.value,
                       tokens_in=c.tokens_in, tokens_out=c.tokens_out)
        if not c.ok:
            return rec.model_copy(update={"error": f"LLM: {c.error}"})
        answer = c.parsed.get("answer") if isinstance(c.parsed, dict) else None
        if answer not in choices:
            return rec.model_copy(update={"error": f"answer {answer!r} is not one of the options"})
        return rec.model_copy(update={"answer": answer, "correct": answer == fact.value})


class NaiveUser(SimulatedUser):
    """The comparison variant: one persona sentence, no layers (no traits, subtopic or context)."""

    variant = "naive"
    system_template = "naive_system"

    def profile_problem(self, profile: UserProfile) -> str | None:
        return None

    def system_prompt(self) -> str:
        p = self._profile().persona
        first = p.summary.split(". ")[0].rstrip(".")
        return render(self.system_template, sentence=f"{p.name}: {first}." if first else f"{p.name}.")

    def layers(self) -> dict:
        p = self._profile()
        return {"variant": self.variant, "persona_id": p.persona.id}

