"""`personasim personas extract`: documents -> persona cards + separability report.

Thin: parsing and printing only; the work is personas.extract_personas. Bad input
prints one line `error: ...` to stderr and exits 2 (no traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


@app.callback()
def personas() -> None:
    """Extract grounded personas from documents."""


@app.command()
def extract(
    source: str = typer.Argument(..., help="folder of .txt/.md, .jsonl/.csv/.parquet, a saved HF dataset folder, "
                                          "or 'clothing-reviews' / 'ml-100k-users'"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="text column of a table"),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="id column (default: row number)"),
    k: str = typer.Option("auto", "--k", help="'auto' (silhouette) or a number of personas"),
    k_min: int = typer.Option(2, "--k-min", help="smallest K tried by --k auto"),
    k_max: int = typer.Option(12, "--k-max", help="largest K tried by --k auto"),
    method: str = typer.Option("kmeans", "--method", help="kmeans or hdbscan"),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM backend that writes the cards (e.g. embedded)"),
    llm_max_tokens: int = typer.Option(320, "--llm-max-tokens"),
    seed: int = typer.Option(0, "--seed"),
    holdout: Optional[float] = typer.Option(None, "--holdout", help="ml-100k-users only: render the documents from "
                                            "each user's earlier ratings, holding out this latest share (for any "
                                            "evaluation; writes split.json beside the personas)"),
    split_kind: str = typer.Option("global", "--split", help="with --holdout: 'global' (leave-future-out: one cut "
                                   "time, the latest share of all ratings after it) or 'per-user' (each user's latest "
                                   "share)"),
    cache_dir: Optional[Path] = typer.Option(Path.home() / ".cache" / "personasim", "--cache-dir",
                                             help="embedding (and LLM) cache"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write caches"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Extract grounded persona cards from SOURCE into OUT (personas.jsonl, assignments.jsonl, separability.json)."""
    from evals.campaign.inputs import check_output_dir
    from personas import PersonaError, extract_personas, load_documents
    from personas.separability import format_table

    cache = None if no_cache else cache_dir
    check_output_dir(out)
    if holdout is not None and source != "ml-100k-users":
        raise PersonaError(f"--holdout: only the packaged 'ml-100k-users' has a time split, not {source!r}")
    client = None
    if llm:
        from evals.commands.errors import check_backend
        from evals.campaign.config import LLMSettings
        from simulator.llm import create_client

        check_backend(LLMSettings(backend=llm), "--llm")
        client = create_client(llm, cache_dir=None if cache is None else cache / "llm")
    split = None
    if holdout is not None:
        from evals.validity.grounding import heldout_pairs, outside
        from personas.infra.assets import ml100k_dir
        from personas.corpora import ml100k_users
        from recsys import DataError, load_movielens
        from recsys.time_splits import make_split

        ds = load_movielens(ml100k_dir())
        try:
            split = make_split(ds, split_kind, holdout)
        except DataError as exc:
            raise PersonaError(f"--holdout / --split: {exc}") from None
        docs = ml100k_users(exclude=heldout_pairs(ds, outside(ds, split)))
    else:
        docs = load_documents(source, text_column=text_column, id_column=id_column)
    result = extract_personas(docs, k=k, method=method, seed=seed, llm=client, cache_dir=cache,
                              show_progress=not quiet, k_range=(k_min, k_max), llm_max_tokens=llm_max_tokens)
    try:
        result.write(out)
        if split is not None:
            from evals.validity.grounding import write_split_record

            write_split_record(out, split)
    except OSError as exc:  # a failed flush (disk full) names no file: name the folder
        from evals.commands.errors import fail

        fail(f"cannot write {exc.filename or out} ({exc.strerror or exc})")
    rep = result.separability
    typer.echo(format_table(rep))
    skipped = [a for a in result.assignments if a["status"] == "skipped"]
    if skipped:
        typer.echo(f"skipped {len(skipped)} inputs (e.g. {skipped[0]['doc_id']}: {skipped[0]['reason']}); "
                   "see assignments.jsonl")
    if "llm" in rep:
        s = rep["llm"]
        typer.echo(f"llm: {s['written']} cards written, {s['failures']} failures, "
                   f"{s['claims_dropped']}/{s['claims']} unsupported claims dropped")
    for card in result.cards:
        typer.echo(f"{card.id:>4} {card.size:>6}  {card.name}")
    typer.echo(f"wrote {out}/personas.jsonl, assignments.jsonl, separability.json")
