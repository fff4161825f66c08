"""The Ray task: one session in a worker process, its World built once per process.

Each worker keeps one event loop for its lifetime: HTTP clients (the openai
backend's connection pool) belong to the loop that opened them, so a fresh
`asyncio.run` per task would find them closed.
"""

from __future__ import annotations

import asyncio

import ray

from evals.events import TurnEvent
from evals.jobs import Job, WorldArgs
from evals.world import CampaignWorld

_WORLDS: dict[WorldArgs, tuple[CampaignWorld, asyncio.AbstractEventLoop]] = {}


@ray.remote(num_cpus=1)
def run_job_task(world_args: WorldArgs, job: Job) -> list[str]:
    if world_args not in _WORLDS:
        _WORLDS[world_args] = (CampaignWorld.load(*world_args), asyncio.new_event_loop())
    world, loop = _WORLDS[world_args]
    events: list[TurnEvent] = []
    loop.run_until_complete(world.run_job(job, events.append))
    return [e.model_dump_json() for e in events]
