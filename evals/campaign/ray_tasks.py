"""The Ray task: one session in a worker process, its World built once per process.

Each worker keeps one event loop for its lifetime: HTTP clients (the openai
backend's connection pool) belong to the loop that opened them, so a fresh
`asyncio.run` per task would find them closed.

A lost worker (its process or its whole node killed) loses at most the sessions
it was running, and Ray runs each of those again on another worker
(``max_retries``). That is safe because a session is all-or-nothing and
repeatable: it returns its turns only when it has finished, so a killed one has
given the driver nothing (where LLM answers are not reproducible, the rerun is a
new history, never mixed with the lost one); with the response cache or a seeded
server it is a pure function of its seed, so the rerun plays the same turns; and
the driver's Recorder writes each (variant, user variant, user, run, turn) once
whatever reaches it. An exception raised by the session itself is
not retried: it would fail the same way again.

Every node reads the campaign folder (config, personas, trained models, LLM
cache) at the driver's path, so on more than one machine OUT must be on a
filesystem they all mount at the same path.
"""

from __future__ import annotations

import asyncio

import ray

from evals.campaign.events import TurnEvent
from evals.campaign.jobs import Job, WorldArgs
from evals.campaign.world import CampaignWorld

_WORLDS: dict[WorldArgs, tuple[CampaignWorld, asyncio.AbstractEventLoop]] = {}


#: Reruns of one session whose worker died (a campaign's `ray_retries` overrides it). A session that loses one
#: more worker than this fails the campaign; the turns already written stay, and `--resume` runs the rest.
MAX_RETRIES = 3


@ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)
def run_job_task(world_args: WorldArgs, job: Job) -> list[str]:
    if world_args not in _WORLDS:
        _WORLDS[world_args] = (CampaignWorld.load(*world_args), asyncio.new_event_loop())
    world, loop = _WORLDS[world_args]
    events: list[TurnEvent] = []
    loop.run_until_complete(world.run_job(job, events.append))
    return [e.model_dump_json() for e in events]
