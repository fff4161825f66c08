"""One session: a simulated user meets a recommender for a few turns.

    transcript = await run_session(profile, recommender, turns=3, seed=7, llm=client,
                                   settings=SessionSettings(best_of=4), on_turn=append_event)

Many sessions run concurrently over one LLM client (``asyncio.gather``); the
recommender object belongs to one session. Per turn:
  1. the recommender gives a slate for the feedback history so far; from turn
     ``reshow_from`` on, one item the user rated earlier is appended again (a
     probe for line-to-line consistency: the same item rated twice);
  2. the user proposes ``best_of`` candidate turns (sub-seeds derived from the
     session seed, the turn and the candidate index; candidate 0 is what N=1
     would produce), the judge scores each, the highest reward is kept (ties:
     the lowest index), and every (best, lower-scored) pair is kept as
     preference data;
  3. on a Q&A turn the user answers one multiple-choice question about the
     persona's facts (graded by exact match); a grounded twin is asked about
     its own training record instead, card facts or none (`simulator.recall`);
  4. the kept turn's feedback goes to the recommender; ``on_turn`` gets the
     finished turn record; a turn that says ``stop`` ends the session.
Failures: a failed turn (LLM error, invalid JSON after repair, an id not in
the slate) is recorded with its reason, sends no feedback, and the session
goes on. A profile the variant cannot play (a layered user whose persona has
no likes) or an empty slate ends the session with one failed turn whose
``stop`` is True (so a consumer can tell the session ended there).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.catalog import Feedback, Item, RecommenderProtocol
from simulator.consistency import score_line
from simulator.judges import ConsistencyJudge, StructuredJudge
from simulator.layers import UserProfile, derive_seed
from simulator.recall import asks_own_fact
from simulator.turn import PreferencePair, Transcript, Turn
from simulator.user import Candidate
from simulator.variants import make_user

log = logging.getLogger(__name__)


class SessionSettings(BaseModel):
    """How a session runs (everything that shapes results; hash it with the rest of a config)."""

    model_config = ConfigDict(extra="forbid")

    slate_size: int = Field(5, ge=1, le=20)
    best_of: int = Field(1, ge=1, le=16, description="candidate turns per step; the most consistent is kept")
    reward: Literal["structured", "ranking", "rules"] = Field(
        "structured", description="what best-of-N maximises (`simulator.consistency.reward_of`)")
    qa_turns: list[int] | None = Field(None, description="turn indices after which a fact question is asked; None = the middle turn")
    max_picks: int = Field(3, ge=1, description="onboarding: most liked items picked from the pool")
    reshow_from: int | None = Field(None, ge=1, description="from this turn on, one item the user rated in an earlier "
                                    "turn is shown again (a probe that lets line-to-line rule L3 fire); None: never")
    user: dict[str, Any] = Field(default_factory=dict, description="SimulatedUser settings (temperature, max_tokens, ...)")

    def question_turns(self, turns: int) -> set[int]:
        return set(self.qa_turns) if self.qa_turns is not None else {turns // 2}


def _best(scored: list[tuple[Candidate, float | None]]) -> int:
    """Index of the highest reward; failed or unscored candidates rank last; ties -> lowest index."""
    keyed = [(-1.0 if r is None or not c.turn.ok else r) for c, r in scored]
    return max(range(len(keyed)), key=lambda i: (keyed[i], -i))


def preference_pairs(scored: list[tuple[Candidate, float | None]], best: int) -> list[PreferencePair]:
    """(kept, each successful candidate with a strictly lower reward) as DPO pairs."""
    top, r_top = scored[best]
    if r_top is None or not top.turn.ok:
        return []
    return [
        PreferencePair(
            prompt=top.messages, chosen=top.turn.raw, rejected=c.turn.raw, reward_chosen=r_top, reward_rejected=r,
            user_id=top.turn.user_id, turn=top.turn.turn, seed=top.turn.call_seed, model=top.turn.model,
        )
        for c, r in scored
        if c.turn.ok and r is not None and r < r_top
    ]


async def run_session(
    user: UserProfile,
    recommender: RecommenderProtocol,
    turns: int,
    seed: int,
    llm,
    *,
    settings: SessionSettings | None = None,
    judge: ConsistencyJudge | None = None,
    pool: list[Item] | None = None,
    meta: dict[str, Any] | None = None,
    on_turn: Callable[[Turn], None] | None = None,
    grounding=None,
) -> Transcript:
    """Run one session and return its transcript (see the module docstring for the steps).

    Args:
        user: the profile to play; ``user.variant`` picks the SimulatedUser class.
        recommender: a fresh recommender object for this session.
        turns: at most this many turns (fewer when the user stops).
        seed: the session seed; every LLM call's seed derives from it.
        llm: the shared `LLMClient`.
        pool: onboarding candidates (None skips onboarding).
        meta: copied into the transcript and every turn (e.g. config hash, variant).
        on_turn: called with each finished turn (e.g. to append it to an event log).
        grounding: a `simulator.grounded.Grounding` for grounded users (ignored by the others).
    """
    settings = settings or SessionSettings()
    judge = judge or StructuredJudge()
    meta = dict(meta or {})
    sim = make_user(user.variant, llm, grounding=grounding, **settings.user)
    sim.reset(user)
    card = user.persona
    subtopic = sim.layers().get("subtopic")
    transcript = Transcript(
        user_id=user.user_id, persona_id=card.id, variant=sim.variant, seed=seed, model=getattr(llm, "model", ""),
        best_of=settings.best_of, layers=sim.layers(), meta=meta,
    )

    def finish(turn: Turn) -> None:
        transcript.turns.append(turn)
        if on_turn is not None:
            on_turn(turn)

    def failed(t: int, slate: list[Item], reason: str) -> Turn:
        # only for failures that end the session: stop=True marks its last turn
        return Turn(user_id=user.user_id, persona_id=card.id, variant=sim.variant, turn=t, seed=seed,
                    model=transcript.model, layers=sim.layers(), slate=slate, ok=False, error=reason,
                    stop=True, best_of=settings.best_of, meta=meta)

    problem = sim.profile_problem(user)
    if problem is not None:
        finish(failed(0, [], problem))
        return transcript

    history: list[Feedback] = []
    if pool:
        ob = await sim.onboard(pool, seed=derive_seed(seed, "onboard"), max_picks=settings.max_picks)
        transcript.onboarding = ob
        if ob.ok:
            recommender.onboard(list(ob.liked))
            history.extend(Feedback(item_id=i, turn=-1, chosen=True) for i in ob.liked)

    ask = settings.question_turns(turns)
    own = asks_own_fact(sim)  # a twin: "Did you like X?" of its own record, not the card's facts
    lines: list[Turn] = []
    # optional async hook: a recommender may do slow work (a fold-in) here, off the event loop
    prepare = getattr(recommender, "prepare", None)
    for t in range(turns):
        started = time.perf_counter()
        if prepare is not None:
            await prepare()
        slate = list({it.id: it for it in recommender.recommend(list(history), settings.slate_size)}.values())
        if not slate:
            finish(failed(t, [], "the recommender returned an empty slate"))
            break
        if settings.reshow_from is not None and t >= settings.reshow_from and lines:
            shown_now = {s.id for s in slate}
            earlier = list({it.id: it for ln in lines for it in ln.slate
                            if it.id in ln.ratings and it.id not in shown_now}.values())
            if earlier:
                slate.append(earlier[derive_seed(seed, "reshow", t) % len(earlier)])
        cands = await asyncio.gather(
            *(sim.propose(slate, turn=t, seed=derive_seed(seed, "turn", t, j), session_seed=seed) for j in range(settings.best_of))
        )
        scored: list[tuple[Candidate, float | None]] = []
        for cand in cands:
            if not cand.turn.ok:
                scored.append((cand, None))
                continue
            scores, reasons, (tin, tout) = await score_line(judge, card, subtopic, cand.turn, lines,
                                                                     settings.reward)
            cand.turn = cand.turn.model_copy(update={
                "consistency": scores, "reasons": reasons,
                "tokens_in": cand.turn.tokens_in + tin, "tokens_out": cand.turn.tokens_out + tout,
            })
            scored.append((cand, scores["reward"]))
        best = _best(scored)
        transcript.pairs.extend(preference_pairs(scored, best))
        kept = scored[best][0].turn
        update: dict[str, Any] = {
            "best_of": settings.best_of,
            "candidate_rewards": [r for _, r in scored],
            "tokens_in": sum(c.turn.tokens_in for c, _ in scored),
            "tokens_out": sum(c.turn.tokens_out for c, _ in scored),
            "meta": meta,
        }
        sim.commit(kept)
        if t in ask and (own or card.facts):
            fact = None if own else card.facts[derive_seed(seed, "qa", t) % len(card.facts)]
            qa = await sim.answer(fact, seed=derive_seed(seed, "qa-answer", t))
            update["qa"] = qa
            update["tokens_in"] += qa.tokens_in
            update["tokens_out"] += qa.tokens_out
            update["consistency"] = {**kept.consistency, "qa": None if qa.correct is None else float(qa.correct)}
        elif kept.ok:
            update["consistency"] = {**kept.consistency, "qa": None}
        update["latency_s"] = time.perf_counter() - started
        kept = kept.model_copy(update=update)
        if kept.ok:
            for item in slate:
                fb = Feedback(item_id=item.id, turn=t, chosen=item.id in kept.chosen, rating=kept.ratings.get(item.id))
                recommender.observe(fb)
                history.append(fb)
            lines.append(kept)
        else:
            log.info("user %s turn %d failed: %s", user.user_id, t, kept.error)
        finish(kept)
        if kept.stop:
            break
    return transcript
