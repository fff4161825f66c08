"""Run a campaign's sessions and append every finished turn to events.jsonl.

A campaign is a list of jobs, one per (recommender variant, user variant,
user, run). Each job's seed depends on the campaign seed, the user and the
run, but not on the variant: every variant meets the same users with the same
random numbers, so A/B differences are paired (common random numbers).

Resume: events already on disk are keys (variant, user_variant, user, run,
turn). A finished session is skipped; an unfinished one is run again from its
start (deterministic from its seed, and its earlier LLM answers come from the
cache) and only the turns not yet on disk are written. So a campaign killed at
any point, even by SIGKILL, ends with exactly the turns of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from tqdm import tqdm

from evals.events import EventWriter, TurnEvent
from simulator.layers import derive_seed  # one seed derivation for sessions and the turns inside them

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    variant: str
    user_variant: str
    user_index: int
    run: int
    seed: int

    @property
    def session_key(self) -> tuple[str, str, int, int]:
        return (self.variant, self.user_variant, self.user_index, self.run)


class World(Protocol):
    """Everything a session needs (users, recommenders, LLM), built once per process."""

    async def run_job(self, job: Job, on_turn: Callable[[TurnEvent], None]) -> None: ...


def plan_jobs(campaign_seed: int, variants: Iterable[str], user_variants: Iterable[str], n_users: int, runs: int) -> list[Job]:
    return [
        Job(v, uv, u, r, derive_seed(campaign_seed, "session", uv, u, r))
        for uv in user_variants
        for u in range(n_users)
        for r in range(runs)
        for v in variants
    ]


@dataclass
class Progress:
    """What is on disk already: written turn keys and finished sessions."""

    written: set[tuple]
    finished: set[tuple]

    @classmethod
    def from_events(cls, events: Iterable[TurnEvent], turns: int) -> "Progress":
        written, finished = set(), set()
        for e in events:
            written.add(e.key)
            if e.stop or e.turn == turns - 1:
                finished.add((e.variant, e.user_variant, _user_index(e.user_id), e.run))
        return cls(written, finished)


def _user_index(user_id: str) -> int:
    return int(user_id.rsplit("-", 1)[1])


def user_id_for(index: int) -> str:
    return f"user-{index:04d}"


class Recorder:
    """Writes each turn once, whatever retries or resumes produce."""

    def __init__(self, writer: EventWriter, progress: Progress):
        self.writer = writer
        self.progress = progress
        self.new_turns = 0

    def __call__(self, event: TurnEvent) -> None:
        if event.key in self.progress.written:
            return
        self.writer.write(event)
        self.progress.written.add(event.key)
        self.new_turns += 1


async def run_local(world: World, jobs: list[Job], recorder: Recorder, in_flight: int, show_progress: bool = True) -> None:
    """All jobs concurrently on this event loop, at most ``in_flight`` sessions at once."""
    todo = [j for j in jobs if j.session_key not in recorder.progress.finished]
    bar = tqdm(total=len(todo), desc="sessions", unit="session", disable=not show_progress)
    slots = asyncio.Semaphore(in_flight)

    async def one(job: Job) -> None:
        async with slots:
            await world.run_job(job, recorder)
        bar.update(1)

    try:
        await asyncio.gather(*(one(j) for j in todo))
    finally:
        bar.close()


def run_ray(make_world_args: tuple, jobs: list[Job], recorder: Recorder, address: str | None, show_progress: bool = True) -> None:
    """The same jobs as Ray tasks; the driver writes the turns as sessions finish.

    Each worker process builds its own World once (from the config and the
    models saved on disk by the driver) and runs whole sessions.
    """
    import ray

    from evals.ray_tasks import run_job_task

    todo = [j for j in jobs if j.session_key not in recorder.progress.finished]
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    pending = [run_job_task.remote(make_world_args, job) for job in todo]
    bar = tqdm(total=len(todo), desc="sessions (ray)", unit="session", disable=not show_progress)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for event_json in ray.get(done[0]):
                recorder(TurnEvent.model_validate_json(event_json))
            bar.update(1)
    finally:
        bar.close()
