"""A real campaign (ML-100k models, a local OpenAI-compatible server) gives the same events whether its
fold-ins run inline on the event loop, one per refold (the reference), or batched in a worker thread
or process while other sessions' LLM calls go on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from evals.campaign.config import CampaignConfig
from evals.campaign.events import EventWriter, read_events
from evals.campaign.foldin import FoldInSettings
from evals.campaign.jobs import plan_jobs
from evals.campaign.runner import Progress, Recorder, run_local
from evals.campaign.world import CampaignWorld, prepare

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    from tests.servers.process import free_port, serve

    port = free_port()
    with serve(["-m", "tests.servers.fault_openai", "--port", str(port), "--answer-schema"], port) as url:
        cfg = CampaignConfig.model_validate({
            "name": "fold-in", "seed": 5,
            "personas": {"path": str(ROOT / "tests" / "data" / "personas_movies.jsonl"), "max_personas": 2},
            "users_per_persona": 3, "user_variants": ["layered"], "variants": ["mf", "ampcf"], "turns": 3,
            "slate_size": 4, "runs_per_user": 1, "best_of": 1,
            "llm": {"backend": "openai", "base_url": url, "model": "fault-echo", "concurrency": 8, "cache": False},
            "recsys": {"dim": 16, "mixture_k": 2, "epochs": 1, "onboarding_pool": 6}, "sessions_in_flight": 8,
        })
        out = tmp_path_factory.mktemp("campaign")
        prepare(cfg, out, show_progress=False)
        yield cfg, out


def _events(cfg, out: Path, settings: FoldInSettings, name: str):
    world = CampaignWorld(cfg, out, settings)
    jobs = plan_jobs(cfg.seed, cfg.variants, cfg.user_variants, CampaignWorld.n_users(cfg, out), cfg.runs_per_user)
    path = out / f"events-{name}.jsonl"
    try:
        with EventWriter(path) as writer:
            asyncio.run(run_local(world, jobs, Recorder(writer, Progress({}, set())), cfg.sessions_in_flight,
                                  show_progress=False))
    finally:
        world.close()
    events = sorted((e.key, e.model_dump_json(exclude={"latency_s"})) for e in read_events(path))
    return events, world.folder


def test_batched_fold_ins_in_a_worker_give_the_events_of_inline_fold_ins(campaign):
    cfg, out = campaign
    reference, inline = _events(cfg, out, FoldInSettings(executor="inline"), "inline")
    assert len({k[:4] for k, _ in reference}) == 12 and inline.folds >= 12  # every session folded in
    assert any('"chosen":["' in e for _, e in reference)  # users liked items: sessions refolded mid-way
    for kind in ("thread", "process"):
        events, folder = _events(cfg, out, FoldInSettings(executor=kind), kind)
        assert events == reference, kind
        assert folder.folds == inline.folds and folder.largest_batch > 1, (kind, folder.largest_batch)


def test_warm_started_refolds_are_an_option_with_other_events(campaign):
    cfg, out = campaign
    reference, _ = _events(cfg, out, FoldInSettings(executor="inline"), "cold")
    warm, _ = _events(cfg, out, FoldInSettings(executor="thread", warm_steps=10), "warm")
    assert [k for k, _ in warm] == [k for k, _ in reference]
    first = [(k, e) for k, e in reference if k[-1] == 0]
    assert first == [(k, e) for k, e in warm if k[-1] == 0]  # turn 0 follows the (cold) onboarding fold
    assert warm != reference  # later slates come from warm refolds
