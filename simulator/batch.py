"""Many sessions at once over one LLM client (what `personasim simulate` runs).

Each user gets its own recommender (``make_recommender``), its own session
seed (derived from the batch seed and the user id, so adding users does not
change the others) and, optionally, its own seeded onboarding pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from simulator.catalog import Item, RecommenderProtocol
from simulator.judges import ConsistencyJudge
from simulator.layers import UserProfile, derive_seed
from simulator.session import SessionSettings, run_session
from simulator.turn import Transcript


def session_seed(seed: int, user_id: str) -> int:
    return derive_seed(seed, "session", user_id)


async def run_sessions(
    users: list[UserProfile],
    make_recommender: Callable[[UserProfile], RecommenderProtocol],
    *,
    turns: int,
    seed: int,
    llm,
    settings: SessionSettings | None = None,
    judge: ConsistencyJudge | None = None,
    make_pool: Callable[[UserProfile, int], list[Item]] | None = None,
    meta: dict[str, Any] | None = None,
    on_transcript: Callable[[Transcript], None] | None = None,
    in_flight: int = 8,
    show_progress: bool = True,
) -> list[Transcript]:
    """Run one session per user, at most ``in_flight`` at once; transcripts in ``users`` order.

    ``make_pool(user, seed)`` gives the onboarding pool (None: no onboarding);
    ``on_transcript`` is called as each session finishes (in finishing order).
    """
    slots = asyncio.Semaphore(in_flight)
    bar = tqdm(total=len(users), desc="sessions", unit="session", disable=not show_progress)

    async def one(user: UserProfile) -> Transcript:
        s = session_seed(seed, user.user_id)
        async with slots:
            tr = await run_session(
                user, make_recommender(user), turns, s, llm, settings=settings, judge=judge,
                pool=make_pool(user, s) if make_pool else None, meta=meta,
            )
        if on_transcript is not None:
            on_transcript(tr)
        bar.update(1)
        return tr

    try:
        return list(await asyncio.gather(*(one(u) for u in users)))
    finally:
        bar.close()
