"""A campaign end to end: prepare, run sessions, score, report.

OUT/ holds everything, and every step can be re-entered:
    campaign.json     the config and its hash (a folder belongs to one campaign)
    personas/         extracted personas (when the config extracts)
    models/           trained recommenders + offline.json (accuracy/diversity table)
    llm_cache/        the LLM response cache (a repeated run is free)
    events.jsonl      one TurnEvent per finished turn, append-only
    drift.json, ab.json, report.html, summary.md
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from evals.config import CampaignConfig
from evals.events import EventLogError, EventWriter, TurnEvent, dumps, events_frame, read_events
from evals.runner import Progress, Recorder, plan_jobs, run_local, run_ray

log = logging.getLogger(__name__)


class CampaignError(RuntimeError):
    """A campaign that cannot start or continue; the message says what to do."""


@dataclass
class CampaignResult:
    out_dir: Path
    config_hash: str
    new_turns: int
    total_turns: int
    seconds: float
    sessions_s: float
    report: Path | None

    def describe(self) -> str:
        s = (f"campaign {self.config_hash}: {self.new_turns} new turns ({self.total_turns} in all) in {self.seconds:.0f}s "
             f"(sessions ran in {self.sessions_s:.2f}s) -> {self.out_dir}")
        return s + (f"\nreport: {self.report}" if self.report else "")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def claim_out_dir(cfg: CampaignConfig, out: Path, resume: bool) -> list[TurnEvent]:
    """Make sure OUT belongs to this campaign; return the events already written."""
    out.mkdir(parents=True, exist_ok=True)
    meta_path, events_path = out / "campaign.json", out / "events.jsonl"
    chash = cfg.config_hash()
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("config_hash") != chash:
            raise CampaignError(
                f"{out} holds campaign {meta.get('name')!r} (config {meta.get('config_hash')}), "
                f"not this config ({chash}): choose another --out"
            )
    elif events_path.exists() and events_path.stat().st_size:
        raise CampaignError(f"{events_path} exists but {meta_path} does not: not a personasim campaign folder")
    try:
        events = list(read_events(events_path))
    except EventLogError as exc:
        raise CampaignError(str(exc)) from None
    foreign = {e.config_hash for e in events} - {chash}
    if foreign:
        raise CampaignError(f"{events_path} holds events of other configs {sorted(foreign)}: choose another --out")
    if events and not resume:
        raise CampaignError(f"{out} already has {len(events)} turns of this campaign: pass --resume to finish it")
    if not meta_path.exists():
        _write_json(meta_path, {"name": cfg.name, "config_hash": chash, "config": cfg.model_dump(mode="json")})
    return events


def load_campaign(run_dir: str | Path) -> CampaignConfig:
    meta_path = Path(run_dir) / "campaign.json"
    if not meta_path.exists():
        raise CampaignError(f"{run_dir}: no campaign.json; run `personasim campaign run CONFIG --out {run_dir}` first")
    return CampaignConfig.model_validate(json.loads(meta_path.read_text(encoding="utf-8"))["config"])


def run_campaign(cfg: CampaignConfig, out: str | Path, *, resume: bool = False, report: bool = True,
                 show_progress: bool = True) -> CampaignResult:
    from evals.world import CampaignWorld, prepare

    out = Path(out)
    started = time.perf_counter()
    done = claim_out_dir(cfg, out, resume)
    prepare(cfg, out, show_progress=show_progress)  # personas + models: built once, reused on resume
    jobs = plan_jobs(cfg.seed, cfg.variants, cfg.user_variants, CampaignWorld.n_users(cfg, out), cfg.runs_per_user)
    progress = Progress.from_events(done, cfg.turns)
    events_path = out / "events.jsonl"
    try:
        with EventWriter(events_path) as writer:
            recorder = Recorder(writer, progress)
            if cfg.executor == "ray":
                sessions_started = time.perf_counter()  # Ray workers build their worlds inside this
                run_ray((cfg.model_dump_json(), str(out)), jobs, recorder, cfg.ray_address, show_progress)
            else:
                import asyncio

                world = CampaignWorld.load(cfg.model_dump_json(), str(out))
                sessions_started = time.perf_counter()
                try:
                    asyncio.run(run_local(world, jobs, recorder, cfg.sessions_in_flight, show_progress))
                finally:
                    world.close()
    except OSError as exc:
        n = len(progress.written)
        raise CampaignError(
            f"cannot write {events_path} ({exc.strerror or exc}): the {n} turns written so far are safe; "
            f"fix it and rerun with --resume"
        ) from None
    sessions_s = time.perf_counter() - sessions_started
    report_path = write_report(out)[0] if report else None
    return CampaignResult(out, cfg.config_hash(), recorder.new_turns, len(progress.written),
                          time.perf_counter() - started, sessions_s, report_path)


def _frame(run_dir: Path):
    try:
        return events_frame(Path(run_dir) / "events.jsonl")
    except EventLogError as exc:
        raise CampaignError(str(exc)) from None


def write_drift(run_dir: str | Path, embed=None) -> tuple[Path, dict]:
    from evals.drift import drift_report

    run_dir = Path(run_dir)
    seed = load_campaign(run_dir).seed if (run_dir / "campaign.json").exists() else 0  # the report's null draws
    report = drift_report(_frame(run_dir), embed=embed, seed=seed)
    path = run_dir / "drift.json"
    _write_json(path, report)
    return path, report


def write_ab(run_dir: str | Path, control: str, treatment: str, *, seed: int = 0) -> tuple[Path, list[dict]]:
    from evals.ab import ab_table

    run_dir = Path(run_dir)
    rows = ab_table(_frame(run_dir), control, treatment, seed=seed)
    path = run_dir / "ab.json"
    _write_json(path, {"control": control, "treatment": treatment, "seed": seed, "rows": rows})
    return path, rows


def write_report(run_dir: str | Path) -> tuple[Path, list[str]]:
    """report.html and summary.md (and drift.json, ab.json) of a campaign folder: one code path with
    `personasim campaign report` (`evals.summary.write_campaign_report`); returns the report's path and
    the warnings about missing inputs."""
    from evals.summary import write_campaign_report

    return write_campaign_report(run_dir)
