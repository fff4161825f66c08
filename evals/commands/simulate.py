"""`personasim simulate`: simulated users against a built-in popularity recommender.

Writes OUT/transcripts.jsonl (one session per line, appended as sessions
finish), OUT/consistency.json (the metrics of simulator.consistency.summarize
plus config hash, model and seed) and, with --best-of > 1,
OUT/preferences.jsonl (DPO pairs). LLM answers are cached in OUT/llm_cache.

A folder that already holds output is refused unless --resume (keep the
sessions in transcripts.jsonl, which must come from the same options and
personas file, and run the users still missing) or --overwrite (remove those
files and start again; the LLM cache stays). Every input is read and checked
before anything is written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import typer

#: What simulate writes into OUT (and --overwrite removes); llm_cache/ is kept.
OUTPUTS = ("transcripts.jsonl", "consistency.json", "preferences.jsonl")


def load_ml100k(folder: Path):
    """Items (title, genres, year) and popularity (number of ratings) via recsys' MovieLens loader."""
    from evals.campaign.world import movielens_items
    from recsys.data import load_movielens

    return movielens_items(load_movielens(folder))


def load_catalog(name: str):
    """'ml-100k' (the packaged MovieLens) or a JSONL file of items with an optional 'popularity' key;
    InputError naming the file and line of anything else."""
    from pydantic import ValidationError

    from evals.campaign.inputs import InputError, first_error, read_text
    from simulator.catalog import Item

    if name == "ml-100k":
        from personas.infra.assets import ml100k_dir

        return load_ml100k(ml100k_dir())
    path = Path(name)
    if not path.exists():
        raise InputError(f"--catalog {name}: not 'ml-100k' and no such file")
    items, pop, seen = [], [], {}
    for lineno, line in enumerate(read_text(path, "catalog (JSONL of items)").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError(f"a JSON {type(raw).__name__}, not an object")
            pop.append(float(raw.pop("popularity", 0)))
            item = Item.model_validate(raw)
        except ValidationError as exc:
            raise InputError(f"{path}:{lineno}: not a catalog item ({first_error(exc)})") from None
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}:{lineno}: not a catalog item ({str(exc).splitlines()[0]})") from None
        if item.id in seen:
            raise InputError(f"{path}:{lineno}: item id {item.id!r} repeats (first on line {seen[item.id]})")
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise InputError(f"{path}: the catalog is empty")
    return items, pop


def finished_sessions(out: Path, config_hash: str, resume: bool, overwrite: bool) -> dict:
    """The sessions OUT already holds ({user id: Transcript}), after refusing a folder that is not ours to
    continue: nothing is removed unless ``overwrite``."""
    from evals.campaign.events import read_records
    from evals.campaign.inputs import InputError
    from simulator.turn import Transcript

    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not present:
        return {}
    listed = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
    ours = {*OUTPUTS, *(f"{name}.tmp" for name in OUTPUTS)}  # .tmp: a whole-file write cut short (personas.infra.files)
    if not set(present) & {*ours, "llm_cache"}:
        raise InputError(f"--out {out}: not empty ({listed}) and holds no simulate output: choose another --out")
    if overwrite:
        for name in ours:
            (out / name).unlink(missing_ok=True)
        return {}
    if not resume:
        raise InputError(f"--out {out}: already holds simulate output ({listed}): pass --resume to finish its "
                         "sessions, or --overwrite to replace them")
    path, done = out / "transcripts.jsonl", {}
    for lineno, tr in enumerate(read_records(path, Transcript, "simulate session (Transcript)"), 1):
        found = tr.meta.get("config_hash")
        if found != config_hash:
            raise InputError(f"{path}:{lineno}: a session of other options or personas (config {found}), not of "
                             f"these ({config_hash}): resume with the same ones, or pass --overwrite")
        done[tr.user_id] = tr
    return done


def simulate(
    personas: Path = typer.Option(..., "--personas", help="personas.jsonl (PersonaCard per line)."),
    users: int = typer.Option(6, "--users", min=1, help="Simulated users (personas round-robin)."),
    turns: int = typer.Option(3, "--turns", min=1, max=50),
    backend: str = typer.Option("embedded", "--backend", help="embedded | openai | transformers"),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (openai) or path (embedded, transformers)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL."),
    best_of: int = typer.Option(1, "--best-of", min=1, max=16, help="Candidate turns per step; the most consistent is kept."),
    catalog: str = typer.Option("ml-100k", "--catalog", help="'ml-100k' or a JSONL file of items."),
    variant: str = typer.Option("layered", "--variant", help="layered | naive"),
    judge: str = typer.Option("structured", "--judge", help="structured | llm (the simulator's own model judges)"),
    slate_size: int = typer.Option(5, "--slate-size", min=1, max=20),
    pool_size: int = typer.Option(8, "--pool-size", min=0, help="Onboarding pool size (0: no onboarding)."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="LLM calls and sessions in flight."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", help="Output folder (refused when it holds output, unless --resume "
                             "or --overwrite)."),
    resume: bool = typer.Option(False, "--resume", help="Keep OUT's finished sessions (same options and personas) "
                                "and run the missing users."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT's transcripts, consistency and "
                                   "preferences (the LLM cache is kept)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Run simulated users; write transcripts.jsonl and consistency.json to OUT."""
    import asyncio

    from evals.commands.errors import check_backend, fail
    from evals.campaign.config import LLMSettings
    from evals.campaign.events import EventWriteError, EventWriter
    from evals.campaign.inputs import check_output_dir, read_personas_file
    from personas.infra.files import write_whole
    from simulator import (
        PopularityRecommender, SessionSettings, make_judge, sample_pool, sample_users, summarize, write_preferences,
    )
    from simulator.batch import run_sessions
    from simulator.llm import create_client

    if resume and overwrite:
        fail("--resume and --overwrite: give one (finish the folder's sessions, or replace them)")
    from simulator.variants import USER_VARIANTS

    if variant not in USER_VARIANTS:
        fail(f"--variant: unknown user variant {variant!r}; choose one of: {', '.join(USER_VARIANTS)}")
    if USER_VARIANTS[variant].grounded:
        fail("--variant grounded needs a calibration and a catalog with training logs: run it in a "
             "campaign (`user_variants: [grounded]`, see configs/default.yaml)")
    if judge not in ("structured", "llm"):
        fail(f"--judge {judge}: unknown judge; choose 'structured' or 'llm'")
    llm = LLMSettings(backend=backend, model=model, base_url=base_url)
    check_output_dir(out)  # the files first: they are cheap to read, the backend's check loads a model
    cards = read_personas_file(personas)
    profiles = sample_users(cards, users, seed, variant=variant)
    items, popularity = load_catalog(catalog)
    check_backend(llm)
    settings = SessionSettings(slate_size=slate_size, best_of=best_of)
    config = dict(personas=hashlib.sha256(personas.read_bytes()).hexdigest()[:12], users=users, turns=turns,
                  backend=backend, model=model, best_of=best_of, catalog=catalog, variant=variant, judge=judge,
                  pool_size=pool_size, seed=seed, settings=settings.model_dump())
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    done = finished_sessions(out, config_hash, resume, overwrite)
    todo = [p for p in profiles if p.user_id not in done]
    out.mkdir(parents=True, exist_ok=True)
    transcripts_path = out / "transcripts.jsonl"

    async def run():
        client = create_client(backend, concurrency=concurrency, cache_dir=out / "llm_cache", **llm.backend_options())
        try:
            with EventWriter(transcripts_path) as writer:
                trs = await run_sessions(
                    todo, lambda u: PopularityRecommender(items, popularity), turns=turns, seed=seed, llm=client,
                    settings=settings, judge=make_judge(judge, client),
                    make_pool=(lambda u, s: sample_pool(items, popularity, pool_size, s)) if pool_size else None,
                    meta={"config_hash": config_hash}, on_transcript=writer.write, in_flight=concurrency,
                    show_progress=not quiet,
                )
            return trs, client.model, client.usage
        finally:
            await client.aclose()

    try:
        new, model_name, usage = asyncio.run(run())
    except EventWriteError as exc:
        fail(f"{exc}: the sessions written before are kept; fix it and rerun with --resume")
    by_user = {**done, **{tr.user_id: tr for tr in new}}
    transcripts = [by_user[p.user_id] for p in profiles]
    summary = summarize(transcripts, cards)  # the cards: prompt-to-line over the lines where it can fire
    summary.update(config_hash=config_hash, model=model_name, backend=backend, seed=seed, variant=variant,
                   judge=judge, usage=usage.model_dump(), resumed_sessions=len(done))
    try:
        if best_of > 1:
            summary["preference_pairs"] = write_preferences(transcripts, out / "preferences.jsonl")
        write_whole(out / "consistency.json", json.dumps(summary, indent=2, sort_keys=True))
    except OSError as exc:  # a failed flush (disk full) names no file
        fail(f"cannot write {exc.filename or out} ({exc.strerror or exc}): the sessions in {transcripts_path} are "
             "kept; fix it and rerun with --resume")
    p2l, l2l, qa, faithful = (summary[k] for k in ("prompt_to_line", "line_to_line", "qa", "faithful"))
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    typer.echo(
        f"{summary['n_users']} users ({len(done)} resumed), {summary['n_turns']} turns ({summary['n_failed']} "
        f"failed), best-of-{best_of}: prompt-to-line {fmt(p2l)}, line-to-line {fmt(l2l)}, Q&A {fmt(qa)}, "
        f"faithful {fmt(faithful)} ({summary['n_unparseable']} unparseable) -> {out}"
    )
