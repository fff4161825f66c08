"""The runner's bookkeeping: seeds, pairing, exactly-once turns across resumes.

A small deterministic World stands in for the LLM here so that every
interleaving can be checked exactly; tests/test_evals_campaign.py kills a real
campaign process with SIGKILL.
"""

from __future__ import annotations

import asyncio

import pytest

from evals.campaign.events import EventWriter, TurnEvent, read_events
from evals.campaign.jobs import derive_seed, plan_jobs, user_id_for
from evals.campaign.runner import Progress, Recorder, ReplayMismatchError, run_local

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


class DivergingWorld(CountingWorld):
    """Replays differ from the first run from turn ``from_turn`` on (an LLM without cache or seed)."""

    def __init__(self, from_turn: int):
        super().__init__()
        self.from_turn = from_turn

    async def run_job(self, job, on_turn):
        def changed(event):
            if event.turn >= self.from_turn:
                event = event.model_copy(update={"utterance": event.utterance + " (said otherwise)"})
            on_turn(event)

        await super().run_job(job, changed)


def test_a_replayed_turn_that_differs_from_disk_stops_the_resume_and_names_it(tmp_path):
    jobs = plan_jobs(0, ["mf"], ["layered"], n_users=1, runs=1)
    path = tmp_path / "events.jsonl"
    try:
        _run(path, CountingWorld(crash_after=2), jobs)  # the session's first two turns on disk
    except SimulatedCrash:
        pass
    before = path.read_bytes()
    written = list(read_events(path))
    assert len(written) == 2 and max(e.turn for e in written) == 1
    with pytest.raises(ReplayMismatchError) as info:
        _run(path, DivergingWorld(from_turn=1), jobs)
    msg = str(info.value)
    e = next(e for e in written if e.turn == 1)
    assert f"{e.user_id}, run {e.run}" in msg and "replayed turn 1" in msg and "utterance" in msg
    assert "\n" not in msg and str(path) in msg
    assert path.read_bytes().startswith(before)  # nothing on disk was changed
    assert [x.key for x in read_events(path)][:2] == [x.key for x in written]


def test_a_replay_that_only_takes_longer_is_not_a_mismatch(tmp_path):
    jobs = plan_jobs(0, ["mf"], ["layered"], n_users=1, runs=1)
    path = tmp_path / "events.jsonl"
    try:
        _run(path, CountingWorld(crash_after=2), jobs)
    except SimulatedCrash:
        pass

    class Slower(CountingWorld):
        async def run_job(self, job, on_turn):
            await super().run_job(job, lambda e: on_turn(e.model_copy(update={"latency_s": e.latency_s + 9.0})))

    assert _run(path, Slower(), jobs) == TURNS - 2


def test_job_types_are_a_leaf():
    """The world imports the job types, not the runner; evals.campaign.jobs loads alone (a Ray worker's import).
    Circles anywhere: tests/test_layering.py."""
    import subprocess
    import sys

    from tests.test_layering import ROOT, module_graph

    graph = module_graph(ROOT, ("evals",))
    world = graph["evals.campaign.world"]
    assert world >= {"evals.campaign.jobs"} and "evals.campaign.runner" not in world
    assert not graph["evals.campaign.jobs"] - {"evals.campaign.events"}

    code = ("import sys, evals.campaign.jobs; loaded = {m for m in sys.modules if m.startswith('evals.')}; "
            "assert loaded == {'evals.campaign', 'evals.campaign.jobs'}, loaded")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
