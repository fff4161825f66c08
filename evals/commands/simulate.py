"""`personasim simulate`: simulated users against a built-in popularity recommender.

Writes OUT/transcripts.jsonl (one session per line, appended as sessions
finish), OUT/consistency.json (the metrics of simulator.consistency.summarize
plus config hash, model and seed) and, with --best-of > 1,
OUT/preferences.jsonl (DPO pairs). LLM answers are cached in OUT/llm_cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import typer


def load_ml100k(folder: Path):
    """Items (title, genres, year) and popularity (number of ratings) via recsys' MovieLens loader."""
    from evals.world import movielens_items
    from recsys.data import DataError, load_movielens

    try:
        return movielens_items(load_movielens(folder))
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None


def load_catalog(name: str):
    """'ml-100k' (the packaged MovieLens) or a JSONL file of items with an optional 'popularity' key."""
    from simulator.catalog import Item

    if name == "ml-100k":
        from personas.assets import AssetMissingError, ml100k_dir

        try:
            return load_ml100k(ml100k_dir())
        except AssetMissingError as exc:
            raise SystemExit(f"error: {exc}") from None
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"error: --catalog {name}: not 'ml-100k' and no such file")
    items, pop = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            pop.append(float(raw.pop("popularity", 0)))
            items.append(Item.model_validate(raw))
        except (ValueError, TypeError, AttributeError) as exc:
            raise SystemExit(f"error: {path}:{lineno}: not a catalog item ({str(exc).splitlines()[0]})") from None
    if not items:
        raise SystemExit(f"error: {path}: the catalog is empty")
    return items, pop


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
    out: Path = typer.Option(..., "--out", help="Output folder."),
) -> None:
    """Run simulated users; write transcripts.jsonl and consistency.json to OUT."""
    import asyncio

    from personas.card import PersonaFileError, read_personas
    from simulator import (
        PopularityRecommender, SessionSettings, make_judge, sample_pool, sample_users, summarize, write_preferences,
    )
    from simulator.batch import run_sessions
    from simulator.llm import LLMConfigError, create_client

    try:
        if variant == "grounded":
            raise ValueError("--variant grounded needs a calibration and a catalog with training logs: run it in a "
                             "campaign (`user_variants: [grounded]`, see configs/default.yaml)")
        cards = read_personas(personas)
        profiles = sample_users(cards, users, seed, variant=variant)
    except (PersonaFileError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    items, popularity = load_catalog(catalog)
    settings = SessionSettings(slate_size=slate_size, best_of=best_of)
    config = dict(personas=hashlib.sha256(personas.read_bytes()).hexdigest()[:12], users=users, turns=turns,
                  backend=backend, model=model, best_of=best_of, catalog=catalog, variant=variant, judge=judge,
                  pool_size=pool_size, seed=seed, settings=settings.model_dump())
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    out.mkdir(parents=True, exist_ok=True)
    options = {"openai": dict(model=model, base_url=base_url), "embedded": dict(model_path=model),
               "transformers": dict(model=model)}.get(backend, {})
    transcripts_path = out / "transcripts.jsonl"

    async def run():
        client = create_client(backend, concurrency=concurrency, cache_dir=out / "llm_cache", **options)
        try:
            with open(transcripts_path, "w", encoding="utf-8") as fh:
                def write(tr):
                    fh.write(tr.model_dump_json() + "\n")
                    fh.flush()

                trs = await run_sessions(
                    profiles, lambda u: PopularityRecommender(items, popularity), turns=turns, seed=seed, llm=client,
                    settings=settings, judge=make_judge(judge, client),
                    make_pool=(lambda u, s: sample_pool(items, popularity, pool_size, s)) if pool_size else None,
                    meta={"config_hash": config_hash}, on_transcript=write, in_flight=concurrency,
                )
            return trs, client.model, client.usage
        finally:
            await client.aclose()

    try:
        transcripts, model_name, usage = asyncio.run(run())
    except (LLMConfigError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    summary = summarize(transcripts)
    summary.update(config_hash=config_hash, model=model_name, backend=backend, seed=seed, variant=variant,
                   judge=judge, usage=usage.model_dump())
    if best_of > 1:
        summary["preference_pairs"] = write_preferences(transcripts, out / "preferences.jsonl")
    (out / "consistency.json").write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
    p2l, l2l, qa = (summary[k] for k in ("prompt_to_line", "line_to_line", "qa"))
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    typer.echo(
        f"{summary['n_users']} users, {summary['n_turns']} turns ({summary['n_failed']} failed), best-of-{best_of}: "
        f"prompt-to-line {fmt(p2l)}, line-to-line {fmt(l2l)}, Q&A {fmt(qa)} -> {out}"
    )
