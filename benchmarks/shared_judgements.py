"""Grounded users' LLM judgements asked once per persona and item, against once per session: same run, same answers?

The default campaign's grounded design with the LLM judgement switched on
(`grounding.llm_feature: true`): 4 personas from ML-100k training documents, 4
twins each, MF and AMP-CF, 3 turns, 2 runs, on the embedded SmolLM2 with no
answer cache. A twin's runs and recommenders show it many of the same items,
which is what sharing saves (with MF and one run alone, 4 twins a persona:
198 judgements against 240, 1.14x).

The same sessions run twice in one process: once with the judgements shared
by every session of a persona (`simulator.grounded.Grounding.judged`, what a
campaign does), once with that memo cleared before every session (what each
session asked before it was shared). Prints, for each arm, the LLM
judgements asked and the wall time of the sessions, their ratio, and whether
every turn's choices, ratings and per-item decision came out identical.

Personas, calibration and models are made in ``--out`` (about 2.5 min) unless
they are there already, as a campaign would make them; the two arms take
about 17 min.

    .venv/bin/python benchmarks/shared_judgements.py [--out runs/shared_judgements] [--users 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def config(users: int):
    from evals.campaign.config import CampaignConfig

    base = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    return CampaignConfig.model_validate({
        **base, "name": "shared-judgements", "user_variants": ["grounded"], "users_per_persona": users,
        "llm": {**base["llm"], "cache": False},
        "grounding": {**base["grounding"], "llm_feature": True}})


async def sessions(world, jobs, *, shared: bool) -> tuple[float, int, dict]:
    """(wall seconds, judgements asked, {(user, recommender, run, turn): what the turn decided})."""
    turns: dict = {}

    def keep(event) -> None:
        key = (event.user_id, event.variant, event.run, event.turn)
        turns[key] = json.dumps([event.chosen, event.ratings, event.decision], sort_keys=True)

    memo = world.grounding.judged
    memo.clear()
    asked = 0
    started = time.perf_counter()
    for job in jobs:
        before = len(memo)
        await world.run_job(job, keep)
        asked += len(memo) - before
        if not shared:
            memo.clear()
    return time.perf_counter() - started, asked, turns


def main() -> None:
    from evals.campaign.jobs import plan_jobs
    from evals.campaign.world import CampaignWorld, prepare

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "shared_judgements")
    ap.add_argument("--users", type=int, default=4, help="twins a persona")
    args = ap.parse_args()
    cfg = config(args.users)
    args.out.mkdir(parents=True, exist_ok=True)
    prepare(cfg, args.out)
    world = CampaignWorld(cfg, args.out)
    try:
        jobs = plan_jobs(cfg.seed, cfg.variants, cfg.user_variants, CampaignWorld.n_users(cfg, args.out),
                         cfg.runs_per_user)
        each_s, each_n, each = asyncio.run(sessions(world, jobs, shared=False))
        shared_s, shared_n, shared = asyncio.run(sessions(world, jobs, shared=True))
    finally:
        world.close()
    print(f"{len(jobs)} grounded sessions, {len(shared)} turns, config {cfg.config_hash()}, embedded SmolLM2, no cache")
    print(f"judgements asked: once per session {each_n}, once per persona {shared_n} "
          f"({shared_n / each_n:.2f}x the requests)")
    print(f"session time: once per session {each_s:.0f} s, once per persona {shared_s:.0f} s "
          f"(speed-up {each_s / shared_s:.2f}x)")
    print(f"every turn identical (choices, ratings, decision): {each == shared}")


if __name__ == "__main__":
    main()
