"""The runner's bookkeeping: seeds, pairing, exactly-once turns across resumes.

A small deterministic World stands in for the LLM here so that every
interleaving can be checked exactly; tests/test_evals_campaign.py kills a real
campaign process with SIGKILL.
"""

from __future__ import annotations

import asyncio

from evals.events import EventWriter, TurnEvent, read_events
from evals.runner import Progress, Recorder, derive_seed, plan_jobs, run_local, user_id_for

TURNS = 4


class SimulatedCrash(Exception):
    """The process dying mid-campaign (the real SIGKILL is in test_evals_campaign.py)."""


class CountingWorld:
    """Emits TURNS turns per job; stops early for some users; can crash after N turns."""

    def __init__(self, crash_after: int | None = None):
        self.crash_after = crash_after
        self.emitted = 0

    async def run_job(self, job, on_turn):
        for t in range(TURNS):
            await asyncio.sleep(0)
            if self.crash_after is not None and self.emitted >= self.crash_after:
                raise SimulatedCrash
            stop = job.user_index == 1 and t == 2
            on_turn(TurnEvent(config_hash="h", seed=job.seed, model="m", backend="b", variant=job.variant,
                              user_variant=job.user_variant, user_id=user_id_for(job.user_index), persona_id="p",
                              run=job.run, turn=t, utterance=f"{job.seed}-{t}", stop=stop))
            self.emitted += 1
            if stop:
                return


def _run(path, world, jobs):
    progress = Progress.from_events(read_events(path), TURNS)
    with EventWriter(path) as w:
        rec = Recorder(w, progress)
        asyncio.run(run_local(world, jobs, rec, in_flight=3, show_progress=False))
    return rec.new_turns


def test_seeds_are_stable_and_paired_across_variants():
    jobs = plan_jobs(7, ["mf", "ampcf"], ["layered"], n_users=3, runs=2)
    assert len(jobs) == 12
    by_key = {(j.user_index, j.run): set() for j in jobs}
    for j in jobs:
        by_key[(j.user_index, j.run)].add(j.seed)
    assert all(len(s) == 1 for s in by_key.values())  # same seed for every variant: paired
    assert len({next(iter(s)) for s in by_key.values()}) == 6  # distinct across users and runs
    assert derive_seed(7, "x") == derive_seed(7, "x") != derive_seed(8, "x")


def test_resume_after_crash_and_torn_line_gives_exactly_the_uninterrupted_turns(tmp_path):
    jobs = plan_jobs(0, ["mf", "ampcf"], ["layered", "naive"], n_users=3, runs=2)
    reference = tmp_path / "ref.jsonl"
    _run(reference, CountingWorld(), jobs)
    expected = sorted((e.key, e.utterance) for e in read_events(reference))

    crashed = tmp_path / "events.jsonl"
    try:
        _run(crashed, CountingWorld(crash_after=17), jobs)
    except SimulatedCrash:
        pass
    with open(crashed, "ab") as fh:
        fh.write(b'{"schema_version": 1, "config_ha')  # a write torn by SIGKILL
    partial = list(read_events(crashed))
    assert 0 < len(partial) < len(expected)

    _run(crashed, CountingWorld(), jobs)
    got = sorted((e.key, e.utterance) for e in read_events(crashed))
    assert got == expected  # nothing lost, nothing duplicated
    assert _run(crashed, CountingWorld(), jobs) == 0  # a finished campaign writes nothing more
