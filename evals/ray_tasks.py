"""The Ray task: one session in a worker process, its World built once per process."""

from __future__ import annotations

import asyncio

import ray

from evals.events import TurnEvent
from evals.runner import Job

_WORLDS: dict[tuple, object] = {}


@ray.remote(num_cpus=1)
def run_job_task(make_world_args: tuple, job: Job) -> list[str]:
    from evals.world import CampaignWorld

    if make_world_args not in _WORLDS:
        _WORLDS[make_world_args] = CampaignWorld.load(*make_world_args)
    world = _WORLDS[make_world_args]
    events: list[TurnEvent] = []
    asyncio.run(world.run_job(job, events.append))
    return [e.model_dump_json() for e in events]
