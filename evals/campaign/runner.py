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
A replayed turn must equal the one on disk (all but its wall time); where it
does not (no cache, a server that ignores the seed) the run stops with
ReplayMismatchError naming the session and turn, rather than mix two histories.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from tqdm import tqdm

from evals.campaign.events import EventWriter, TurnEvent, read_events
from evals.campaign.jobs import Job, World, WorldArgs, plan_jobs, user_id_for, user_index  # noqa: F401 (plan_jobs, user_id_for: re-exported)

log = logging.getLogger(__name__)

#: Fields a replayed turn may legitimately change: wall time.
REPLAY_EXCLUDE = {"latency_s"}


def replay_digest(event: TurnEvent) -> bytes:
    """What a replayed turn must reproduce exactly: everything but its wall time."""
    return hashlib.blake2b(event.model_dump_json(exclude=REPLAY_EXCLUDE).encode("utf-8"), digest_size=16).digest()


def content_digest(events: Iterable[TurnEvent]) -> str:
    """A campaign's content: 16 hex chars of sha256 over every turn's key and `replay_digest`, in key order.

    Wall time and write order are left out, so two runs of one config and seed on one machine, a run
    killed and resumed, and (with the pinned kernels, `evals.campaign.runtime`) runs on two x86-64 CPUs with AVX2
    give the same digest, where the bytes of their events.jsonl differ. A key seen twice (a damaged file)
    counts each time."""
    rows = sorted((json.dumps(e.key), replay_digest(e).hex()) for e in events)
    h = hashlib.sha256()
    for key, digest in rows:
        h.update(f"{key}\t{digest}\n".encode("utf-8"))
    return h.hexdigest()[:16]


class RayLostError(RuntimeError):
    """Ray gave up on a session (its worker or node died more often than the campaign's `ray_retries`)."""


class ReplayMismatchError(RuntimeError):
    """A resumed session replayed a turn that differs from the one on disk: its later turns would rest on
    another history, so the campaign stops instead of mixing the two."""


@dataclass
class Progress:
    """What is on disk already: each written turn's key and replay digest, and the finished sessions."""

    written: dict[tuple, bytes]
    finished: set[tuple]

    @classmethod
    def from_events(cls, events: Iterable[TurnEvent], turns: int) -> "Progress":
        written, finished = {}, set()
        for e in events:
            written[e.key] = replay_digest(e)
            if e.stop or e.turn == turns - 1:
                finished.add((e.variant, e.user_variant, user_index(e.user_id), e.run))
        return cls(written, finished)


class Recorder:
    """Writes each turn once, whatever retries or resumes produce; a turn already on disk is checked,
    not written again."""

    def __init__(self, writer: EventWriter, progress: Progress):
        self.writer = writer
        self.progress = progress
        self.new_turns = 0

    def __call__(self, event: TurnEvent) -> None:
        digest = replay_digest(event)
        known = self.progress.written.get(event.key)
        if known is not None:
            if known != digest:
                raise ReplayMismatchError(self._mismatch(event))
            return
        self.writer.write(event)
        self.progress.written[event.key] = digest
        self.new_turns += 1

    def _mismatch(self, event: TurnEvent) -> str:
        """One line naming the session, the turn and the fields that differ (read back from disk: rare)."""
        stored = next((e for e in read_events(self.writer.path) if e.key == event.key), None)
        fields = sorted(k for k in TurnEvent.model_fields if k not in REPLAY_EXCLUDE
                        and (stored is None or getattr(stored, k) != getattr(event, k)))
        return (f"{self.writer.path}: session (variant {event.variant}, user variant {event.user_variant}, "
                f"{event.user_id}, run {event.run}) replayed turn {event.turn} differently from the turn on disk "
                f"({', '.join(fields) or 'fields'} differ): the LLM's answers are not reproducible here (response "
                f"cache off, or a server that ignores the seed), so resuming would mix two histories; "
                f"run the campaign into a new --out")


async def run_local(world: World, jobs: list[Job], recorder: Recorder, in_flight: int, show_progress: bool = True) -> None:
    """All jobs on this event loop, ``in_flight`` sessions at once, in job order.

    ``in_flight`` workers take the next job as they finish one, so memory holds ``in_flight`` sessions
    whatever the campaign's size (a task per job would hold every job's coroutine from the start).
    """
    todo = [j for j in jobs if j.session_key not in recorder.progress.finished]
    bar = tqdm(total=len(todo), desc="sessions", unit="session", disable=not show_progress)
    todo = iter(todo)

    async def worker() -> None:
        for job in todo:  # one shared iterator: each job is taken by exactly one worker
            await world.run_job(job, recorder)
            bar.update(1)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, in_flight))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:  # the first failure ends the campaign: stop the other sessions too
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        bar.close()


def run_ray(world_args: WorldArgs, jobs: list[Job], recorder: Recorder, address: str | None,
            show_progress: bool = True, retries: int | None = None) -> None:
    """The same jobs as Ray tasks; the driver writes the turns as sessions finish. ``retries``: reruns of a
    session whose worker died (default `ray_tasks.MAX_RETRIES`); one more loss raises RayLostError.

    Each worker process builds its own World once (from the config and the
    models saved on disk by the driver) and runs whole sessions.
    """
    import ray

    from evals.campaign.ray_tasks import run_job_task

    todo = [j for j in jobs if j.session_key not in recorder.progress.finished]
    if not ray.is_initialized():
        import os

        from evals.campaign.runtime import PINNED_ENV

        pinned = {k: os.environ[k] for k in PINNED_ENV if k in os.environ}  # workers on other hosts compute alike
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 logging_level=logging.WARNING, runtime_env={"env_vars": pinned})  # no INFO lines: one-line failures
    task = run_job_task if retries is None else run_job_task.options(max_retries=retries)
    pending = [task.remote(world_args, job) for job in todo]
    bar = tqdm(total=len(todo), desc="sessions (ray)", unit="session", disable=not show_progress)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                turns = ray.get(done[0])
            except ray.exceptions.RayTaskError:
                raise  # the session itself failed: its own error is the message
            except ray.exceptions.RayError as exc:  # the cluster lost it more often than it retries
                raise RayLostError(
                    f"Ray lost a session after its retries ({type(exc).__name__}); the {len(recorder.progress.written)} turns "
                    "written so far are safe: rerun with --resume") from None
            for event_json in turns:
                recorder(TurnEvent.model_validate_json(event_json))
            bar.update(1)
    finally:
        bar.close()
