"""A campaign end to end: check the inputs, prepare, run the sessions; drift and A/B on demand.

OUT/ holds everything, and every step can be re-entered:
    campaign.json     the config, its hash, and the content hash of every input the campaign reuses
                      (personas, calibration, trained models): a folder belongs to one campaign made
                      from one set of inputs, and a changed input is refused on --resume; and the code
                      that wrote its turns (``code``: `record_code`)
    personas/         extracted personas (when the config extracts)
    models/           trained recommenders + offline.json (accuracy/diversity table)
    llm_cache/        the LLM response cache (a repeated run is free)
    events.jsonl      one TurnEvent per finished turn, append-only
    drift.json        `campaign drift` and `campaign report` (the same figures)
    ab.json           `campaign report`: the config's first variant against each of the others
    ab_T_vs_C.json    `campaign ab --control C --treatment T` (never overwritten by the report)
    report.html, summary.md
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from evals.campaign.config import CampaignConfig
from evals.campaign.events import (EventLogError, EventWriteError, EventWriter, TurnEvent, dumps, events_frame, read_events,
                                   variant_now)
from evals.campaign.inputs import check_output_dir, read_personas_file
from evals.campaign.jobs import WorldArgs, plan_jobs
from evals.campaign.runner import Progress, Recorder, run_local, run_ray
from evals.campaign.runtime import kernel_report
from personas.infra.code import code_version  # noqa: F401 (re-exported: the campaign records it)
from personas.infra.files import file_sha256, write_whole

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

    def describe(self) -> str:
        return (f"campaign {self.config_hash}: {self.new_turns} new turns ({self.total_turns} in all) in "
                f"{self.seconds:.0f}s (sessions ran in {self.sessions_s:.2f}s) -> {self.out_dir}")


def _write_json(path: Path, obj) -> None:
    """Write ``obj`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    try:
        write_whole(path, dumps(obj))
    except OSError as exc:
        raise CampaignError(f"cannot write {path} ({exc.strerror or exc}); it is left as it was") from None


def _read_meta(meta_path: Path) -> dict:
    try:
        meta = json.loads(meta_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CampaignError(f"{meta_path}: not a readable campaign record ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise CampaignError(f"{meta_path}: not a readable campaign record (not a JSON object)")
    return meta


def check_inputs(cfg: CampaignConfig, out: Path) -> None:
    """Everything the campaign reads, checked before anything is trained or written, so that a typo'd path
    or a missing package fails at once and leaves no folder claimed by a campaign that cannot run. The data set
    comes first (`evals.campaign.dataset.check_dataset`: it loads, it has what the recommenders and the user
    variants need, the sizes fit), so that grounded users asked of an implicit log are refused by the line that
    names the missing field."""
    from evals.campaign.dataset import check_dataset
    from evals.validity.grounding import DATASET_USERS
    from personas.infra.assets import clothing_reviews_parquet, minilm_dir, ml100k_dir
    from personas.loaders import PACKAGED
    from simulator.llm import LLMConfigError

    check_output_dir(out)
    if cfg.recsys.dataset == "ml-100k":
        ml100k_dir()
    check_dataset(cfg)
    source = cfg.personas
    if source.path:
        read_personas_file(source.path)
        if "grounded" in cfg.user_variants:
            from evals.validity.grounding import split_of

            split_of(source.path)
    else:
        minilm_dir()
        if source.extract == "clothing-reviews":
            clothing_reviews_parquet()
        elif source.extract not in (*PACKAGED, DATASET_USERS) and not Path(source.extract).exists():
            raise CampaignError(f"personas.extract: {source.extract}: no such file or folder "
                                f"(packaged corpora: {', '.join(PACKAGED)}; the data set's own users: "
                                f"{DATASET_USERS})")
    _check_calibration(cfg, out)
    _check_recommenders(cfg)
    try:
        cfg.llm.check()
    except LLMConfigError as exc:
        raise CampaignError(f"field 'llm': {exc}") from None
    if cfg.executor == "ray" and cfg.ray_address and cfg.llm.cache:  # workers may write the cache from other hosts
        from simulator.llm.cache import network_filesystem

        shared = network_filesystem(out)
        if shared:
            raise CampaignError(f"{out}: on {shared}, where SQLite's locks do not hold across machines, and llm.cache "
                                "keeps the LLM answers in SQLite; set llm.cache: false, or keep OUT on one host's disk")


def _check_recommenders(cfg: CampaignConfig) -> None:
    """Every plug-in and service recommender the variants name, built (its factory runs, its methods are there)
    and, for a service, asked whether it is up, before anything is trained or written. The config's own check
    already imported each plug-in (`CampaignConfig._known_variants`)."""
    from evals.campaign.world import _model_names, settings_of
    from recsys.models import RecsysError
    from recsys.registry import BUILTINS, build

    settings = settings_of(cfg)
    for name in _model_names(cfg):
        if name in BUILTINS:
            continue
        try:
            model = build(name, settings)
            if callable(ping := getattr(model, "ping", None)):
                ping()
        except RecsysError as exc:
            raise CampaignError(f"field 'variants': {exc}") from None


def _check_calibration(cfg: CampaignConfig, out: Path) -> None:
    """The grounded users' calibration beside the campaign's personas, when there is one, is reused as it is, so
    it must serve. A fault of one the config names (``personas.path``) is reported here; of the campaign's own
    (OUT/personas), where it is read. One an older personasim wrote that campaign.json has recorded cannot be
    replaced on --resume (the sessions on disk were decided by it, and a new one is refused as a changed input),
    so that line says to use another --out instead of recalibrating."""
    if "grounded" not in cfg.user_variants:
        return
    personas = input_files(cfg, out)["personas"]
    if not (personas.parent / "calibration.json").is_file():
        return
    from evals.validity.calibration import CalibrationError, StaleCalibration, read_calibration

    try:
        read_calibration(personas, cfg.grounding.rating_rule)
    except CalibrationError as exc:
        meta = out / "campaign.json"
        if isinstance(exc, StaleCalibration) and meta.is_file() and "calibration" in (_read_meta(meta).get("inputs") or {}):
            raise CampaignError(f"{exc.what}: the campaign in {out} was decided with it and this personasim cannot "
                                f"resume it; run it in another --out, or move {out} aside") from None
        if cfg.personas.path:
            raise CampaignError(str(exc)) from None


def input_files(cfg: CampaignConfig, out: Path) -> dict[str, Path]:
    """The files a campaign reuses across resumes, by name: its personas, the grounded users' calibration,
    its trained models, the tuned simulator's adapter weights, and a data set folder's atomic files (the
    packaged ML-100k is not: its package pins it)."""
    from evals.campaign.dataset import source_files
    from evals.campaign.world import _model_names, personas_path_of
    from recsys.registry import model_file

    personas = personas_path_of(cfg, out)
    files = {"personas": personas, **source_files(cfg.recsys.dataset)}
    if "grounded" in cfg.user_variants:
        files["calibration"] = personas.parent / "calibration.json"
    files.update({f"model {name}": model_file(out / "models", name) for name in _model_names(cfg)})
    if (adapter := cfg.llm.adapter_weights()) is not None:  # its content, not only the path in the config
        files["llm adapter"] = adapter
    return files


def _check_recorded_inputs(cfg: CampaignConfig, out: Path, meta: dict, n_turns: int) -> None:
    """Each input campaign.json records must still be there with the same content."""
    files = input_files(cfg, out)
    for name, digest in (meta.get("inputs") or {}).items():
        path = files.get(name)
        if path is None:
            continue
        made = f"the campaign in {out} was made with it ({n_turns} turns on disk)"
        if not path.is_file():
            raise CampaignError(f"{path}: missing, but {made} (sha256 {digest[:12]}): restore it, or choose "
                                "another --out")
        now = file_sha256(path)
        if now != digest:
            raise CampaignError(f"{path}: changed since {made} (sha256 {digest[:12]} -> {now[:12]}): resuming "
                                f"would mix two {name} versions in one log; restore it, or choose another --out")


def record_inputs(cfg: CampaignConfig, out: Path) -> None:
    """After `prepare`: write the content hash of every input not yet in campaign.json."""
    meta_path = out / "campaign.json"
    meta = _read_meta(meta_path)
    recorded = meta.get("inputs") or {}
    new = {}
    for name, path in input_files(cfg, out).items():
        if name in recorded:
            continue
        if not path.is_file():  # prepare() skips training when offline.json is there
            hint = (f", though {out / 'models' / 'offline.json'} says the models were trained: delete "
                    f"{out / 'models'} to train them again") if name.startswith("model ") else ""
            raise CampaignError(f"{path}: no such file{hint}")
        new[name] = file_sha256(path)
    if new:
        _write_json(meta_path, {**meta, "inputs": {**recorded, **new}})




def record_code(out: Path, n_turns: int) -> str | None:
    """Add the running code to campaign.json's ``code`` list ({version, sources, runtime, from_turn}: the turns
    already on disk when it started; ``runtime``: the kernels it computes with, `evals.campaign.runtime.kernel_report`)
    unless it is the last one there; return the previous entry's sources when this code differs from it, else
    None (the same code on other kernels is recorded, not warned of).

    Other code is recorded, not refused, on --resume, unlike another prompt or input: most changes do not
    touch what a turn does (a report, a message), and the ones known to are refused already (the calibration
    version, the prompt templates in the config hash). The record lets the report say which turns which code
    wrote (`code_ranges`)."""
    meta_path = out / "campaign.json"
    meta = _read_meta(meta_path)
    history = meta.get("code") or []
    now = {**code_version(), "runtime": kernel_report()}
    if history and all(history[-1].get(k) == now[k] for k in ("sources", "runtime")):
        return None
    _write_json(meta_path, {**meta, "code": [*history, {**now, "from_turn": n_turns}]})
    changed = history and history[-1].get("sources") != now["sources"]
    return history[-1].get("sources") if changed else None


def code_ranges(code: list[dict] | None, n_turns: int) -> list[dict]:
    """The entries of campaign.json's ``code`` that wrote turns, each as {sources, version, turns: [first, end)};
    turns before the first entry (a folder an older personasim began) come first with sources None. Consecutive
    entries of the same code (one resumed on other kernels) are one range.
    An empty list when nothing is recorded."""
    if not code:
        return []
    starts = [min(int(c.get("from_turn", 0)), n_turns) for c in code]
    rows = [{"sources": None, "version": None, "turns": [0, starts[0]]}]
    rows += [{"sources": c.get("sources"), "version": c.get("version"), "turns": [a, b]}
             for c, a, b in zip(code, starts, [*starts[1:], n_turns])]
    merged: list[dict] = []
    for r in (r for r in rows if r["turns"][1] > r["turns"][0]):
        same = merged and (merged[-1]["sources"], merged[-1]["version"]) == (r["sources"], r["version"])
        if same:  # the same code, recorded again on other kernels
            merged[-1]["turns"][1] = r["turns"][1]
        else:
            merged.append(r)
    return merged


def _own_events(events: Iterable[TurnEvent], chash: str, path: Path) -> Iterator[TurnEvent]:
    for e in events:
        if e.config_hash != chash:
            raise CampaignError(f"{path} holds events of another config ({e.config_hash}): choose another --out")
        yield e


def claim_out_dir(cfg: CampaignConfig, out: Path, resume: bool) -> Progress:
    """Make sure OUT belongs to this campaign and its inputs; return what is on disk already."""
    out.mkdir(parents=True, exist_ok=True)
    meta_path, events_path = out / "campaign.json", out / "events.jsonl"
    chash = cfg.config_hash()
    meta = _read_meta(meta_path) if meta_path.exists() else None
    if meta is not None and meta.get("config_hash") != chash:
        raise CampaignError(
            f"{out} holds campaign {meta.get('name')!r} (config {meta.get('config_hash')}), "
            f"not this config ({chash}; the hash covers the settings and the prompt templates): choose another --out"
        )
    if meta is None and events_path.exists() and events_path.stat().st_size:
        raise CampaignError(f"{events_path} exists but {meta_path} does not: not a personasim campaign folder")
    try:
        progress = Progress.from_events(_own_events(read_events(events_path), chash, events_path), cfg.turns)
    except EventLogError as exc:
        raise CampaignError(str(exc)) from None
    if meta is not None:
        _check_recorded_inputs(cfg, out, meta, len(progress.written))
    if progress.written and not resume:
        raise CampaignError(f"{out} already has {len(progress.written)} turns of this campaign: pass --resume to "
                            "finish it")
    if meta is None:
        _write_json(meta_path, {"name": cfg.name, "config_hash": chash, "config": cfg.model_dump(mode="json")})
    return progress


def load_campaign(run_dir: str | Path) -> CampaignConfig:
    meta_path = Path(run_dir) / "campaign.json"
    if not meta_path.exists():
        raise CampaignError(f"{run_dir}: no campaign.json; run `personasim campaign run CONFIG --out {run_dir}` first")
    return CampaignConfig.model_validate(_read_meta(meta_path).get("config"))


def run_config_hash(run_dir: str | Path) -> str:
    """The config hash the campaign folder ``run_dir`` was run under (its campaign.json), not the one its config
    gets from today's code and prompts: what a benchmark that reads a run stamps on its rows."""
    meta_path = Path(run_dir) / "campaign.json"
    if not meta_path.exists():
        raise CampaignError(f"{run_dir}: no campaign.json; run `personasim campaign run CONFIG --out {run_dir}` first")
    value = _read_meta(meta_path).get("config_hash")
    if not isinstance(value, str):
        raise CampaignError(f"{meta_path}: field 'config_hash' must be a string, got {value!r}")
    return value


def _check_twins(cfg: CampaignConfig, out: Path) -> bool:
    from evals.campaign.world import check_twins, personas_path_of

    try:
        return check_twins(cfg, out)
    except ValueError as exc:
        raise CampaignError(f"{personas_path_of(cfg, out)}: {exc}") from None


def run_campaign(cfg: CampaignConfig, out: str | Path, *, resume: bool = False,
                 show_progress: bool = True) -> CampaignResult:
    """Check the inputs, claim OUT, prepare (personas, calibration, models: once, reused on resume), then run
    every session not yet on disk. The report is `evals.report.summary.write_campaign_report`."""
    from evals.campaign.world import CampaignWorld, prepare

    out = Path(out)
    started = time.perf_counter()
    check_inputs(cfg, out)
    twins_checked = _check_twins(cfg, out)  # personas already on disk: before anything is written
    progress = claim_out_dir(cfg, out, resume)
    prepare(cfg, out, show_progress=show_progress)
    if not twins_checked:
        _check_twins(cfg, out)  # personas extracted just now: before any session
    record_inputs(cfg, out)
    on_disk = len(progress.written)
    previous_code = record_code(out, on_disk)
    jobs = plan_jobs(cfg.seed, cfg.variants, cfg.user_variants, CampaignWorld.n_users(cfg, out), cfg.runs_per_user)
    events_path = out / "events.jsonl"
    world_args = WorldArgs(cfg.model_dump_json(), str(out))
    try:
        with EventWriter(events_path) as writer:
            recorder = Recorder(writer, progress)
            if cfg.executor == "ray":
                sessions_started = time.perf_counter()  # Ray workers build their worlds inside this
                run_ray(world_args, jobs, recorder, cfg.ray_address, show_progress, cfg.ray_retries)
            else:
                import asyncio

                world = CampaignWorld.load(*world_args)
                sessions_started = time.perf_counter()
                try:
                    asyncio.run(run_local(world, jobs, recorder, cfg.sessions_in_flight, show_progress))
                finally:
                    world.close()
    except EventWriteError as exc:
        raise CampaignError(f"{exc}: the {len(progress.written)} turns written so far are safe; fix it and rerun "
                            "with --resume") from None
    if previous_code and on_disk and recorder.new_turns:
        log.warning(f"{out}: its first {on_disk} turns were written by other code "
                    f"(sources {previous_code}, now {code_version()['sources']}); campaign.json's 'code' says which "
                    "turns each wrote, and the report names both")
    return CampaignResult(out, cfg.config_hash(), recorder.new_turns, len(progress.written),
                          time.perf_counter() - started, time.perf_counter() - sessions_started)


def _frame(run_dir: Path):
    if not Path(run_dir).is_dir():
        raise CampaignError(f"{run_dir}: no such campaign folder")
    try:
        return events_frame(Path(run_dir) / "events.jsonl")
    except EventLogError as exc:
        raise CampaignError(str(exc)) from None


def write_drift(run_dir: str | Path, embed=None) -> tuple[Path, dict]:
    from evals.validity.drift import drift_report

    run_dir = Path(run_dir)
    seed = load_campaign(run_dir).seed if (run_dir / "campaign.json").exists() else 0  # the report's null draws
    report = drift_report(_frame(run_dir), embed=embed, seed=seed)
    path = run_dir / "drift.json"
    _write_json(path, report)
    return path, report


def ab_file_name(control: str, treatment: str) -> str:
    """`campaign ab`'s file: ab_TREATMENT_vs_CONTROL.json (`campaign report` writes ab.json); a plug-in path or
    a URL becomes a safe file name (`recsys.registry.file_stem`)."""
    from recsys.registry import file_stem

    return f"ab_{file_stem(treatment)}_vs_{file_stem(control)}.json"


def write_ab(run_dir: str | Path, control: str, treatment: str, *, seed: int = 0) -> tuple[Path, list[dict]]:
    """RUN_DIR/ab_TREATMENT_vs_CONTROL.json: the A/B of two variants of the campaign's events, one table per
    user variant (never pooled: `evals.campaign.ab`); returns the path and the tables."""
    from evals.campaign.ab import ab_table, not_measures
    from evals.campaign.dataset import recorded_implicit

    run_dir = Path(run_dir)
    control, treatment = variant_now(control), variant_now(treatment)  # 'ampcf+personas': the old name
    events = _frame(run_dir)  # a name that is not one of its variants is refused by `ab_table`
    implicit = recorded_implicit(run_dir)
    tables = [{"user_variant": uv, "rows": ab_table(events, control, treatment, seed=seed, user_variant=uv,
                                                    skip=not_measures(uv, implicit))}
              for uv in sorted(events["user_variant"].unique())]
    path = run_dir / ab_file_name(control, treatment)
    _write_json(path, {"control": control, "treatment": treatment, "seed": seed, "tables": tables})
    return path, tables
