"""`personasim recsys bench`: the offline accuracy / diversity experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def bench(
    dataset: str = typer.Option("ml-100k", "--dataset", help="ml-100k, or a CSV/Parquet of interactions."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Item catalog for a CSV/Parquet dataset."),
    out: Path = typer.Option(..., "--out", help="Folder for results.json and pareto.png."),
    seed: int = typer.Option(0, "--seed"),
    seeds: int = typer.Option(1, "--seeds", min=1,
                              help="Repeat with seeds SEED..SEED+N-1 into OUT/seed-S/ and write OUT/summary.json "
                                   "(mean and sd per variant)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train Pop, MF, AMP-CF (K = 1, 2, 4, 8) and MF + MMR / DPP / calibration; write the table and plot."""
    from personas.assets import AssetMissingError, ml100k_dir
    from recsys import DataError, RecsysError, load_interactions, load_movielens
    from recsys.bench import BenchConfig, run_bench, run_seeds

    try:
        ds = load_movielens(ml100k_dir()) if dataset == "ml-100k" else load_interactions(dataset, catalog)
        if seeds == 1:
            rows = run_bench(ds, out, BenchConfig(seed=seed), show_progress=not quiet)
        else:
            rows = run_seeds(ds, out, BenchConfig(seed=seed), list(range(seed, seed + seeds)), not quiet)
    except (AssetMissingError, DataError, RecsysError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if seeds == 1:
        _table(rows)
        typer.echo(f"wrote {out / 'results.json'} and {out / 'pareto.png'}")
    else:
        _summary_table(rows)
        typer.echo(f"wrote {out}/seed-*/results.json, {out / 'summary.json'} and {out / 'pareto.png'}")


def _table(rows: list[dict]) -> None:
    cols = ["ndcg@10", "recall@10", "ild@10", "coverage@10", "calibration_kl@10", "persona_coverage@10", "train_s",
            "recommend_ms_per_user"]
    short = ["ndcg", "recall", "ild", "cover", "calib_kl", "pers_cov", "train_s", "ms/user"]
    typer.echo(f"{'variant':20s}" + "".join(f"{c:>9s}" for c in short) + "  ndcg-mf [95% CI]")
    for r in rows:
        lo, hi = r["ndcg@10_minus_mf_ci95"]
        typer.echo(f"{r['variant']:20s}" + "".join(f"{r[c]:9.4f}" if c not in ("train_s",) else f"{r[c]:9.1f}" for c in cols)
                   + f"  {r['ndcg@10_minus_mf']:+.4f} [{lo:+.4f}, {hi:+.4f}]")


def _summary_table(rows: list[dict]) -> None:
    cols = ["ndcg@10", "ild@10", "coverage@10", "calibration_kl@10", "persona_coverage@10", "ndcg@10_minus_mf"]
    short = ["ndcg", "ild", "cover", "calib_kl", "pers_cov", "ndcg-mf"]
    typer.echo(f"mean ± sd over {rows[0]['n_seeds']} seeds")
    typer.echo(f"{'variant':20s}" + "".join(f"{c:>17s}" for c in short) + "  seeds>mf")
    for r in rows:
        typer.echo(f"{r['variant']:20s}" + "".join(f"{r[c]:+9.4f} ±{r[c + '_sd']:.4f}" if c == "ndcg@10_minus_mf"
                                                     else f"{r[c]:9.4f} ±{r[c + '_sd']:.4f}" for c in cols)
                   + f"  {r['seeds_above_mf']}/{r['n_seeds']}")
