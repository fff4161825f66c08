"""`personasim campaign run | drift | ab | report`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


def _num(v, spec: str = ".4g") -> str:
    return "n/a" if v is None else f"{v:{spec}}"


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


@app.command()
def run(
    config: Path = typer.Argument(..., help="Campaign YAML (see configs/default.yaml)."),
    out: Path = typer.Option(..., "--out", help="Output folder: events.jsonl, drift.json, ab.json, report.html."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed campaign in OUT."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local | ray (overrides the config)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (overrides the config)."),
    no_report: bool = typer.Option(False, "--no-report", help="Only run the sessions."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Run a campaign end to end: personas, recommenders, sessions, drift, A/B, report."""
    from evals.campaign import CampaignError, run_campaign
    from evals.config import ConfigError, load_config
    from simulator.llm import LLMConfigError

    try:
        cfg = load_config(config)
        overrides = {k: v for k, v in {"executor": executor, "ray_address": ray_address}.items() if v is not None}
        if overrides:
            cfg = cfg.model_validate({**cfg.model_dump(), **overrides})
        result = run_campaign(cfg, out, resume=resume, report=not no_report, show_progress=not quiet)
    except (ConfigError, CampaignError, LLMConfigError, ValueError) as exc:
        _fail(exc)
    typer.echo(result.describe())


@app.command()
def drift(run_dir: Path = typer.Argument(..., help="A campaign output folder.")) -> None:
    """Write RUN_DIR/drift.json: run-to-run vs persona-to-persona variance against the identical-persona null, ICC."""
    from evals.campaign import CampaignError, write_drift

    try:
        path, report = write_drift(run_dir)
    except (CampaignError, ValueError) as exc:
        _fail(exc)
    for uv, d in report["by_user_variant"].items():
        ci, null = d.get("ratio_ci") or [None, None], d.get("null") or {}
        typer.echo(f"{uv:8s} ratio_within_over_between={_num(d['ratio_within_over_between'])} "
                   f"CI=[{_num(ci[0])}, {_num(ci[1])}] null={_num(null.get('mean'))} "
                   f"[{_num(null.get('q025'))}, {_num(null.get('q975'))}] p={_num(null.get('p_value'))} "
                   f"icc={_num(d['icc'])}")
        typer.echo(f"         {d.get('verdict')}")
    typer.echo(f"wrote {path}")


@app.command()
def ab(
    run_dir: Path = typer.Argument(..., help="A campaign output folder."),
    control: str = typer.Option(..., "--control", help="Control variant, e.g. mf."),
    treatment: str = typer.Option(..., "--treatment", help="Treatment variant, e.g. ampcf."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and permutation draws."),
) -> None:
    """Write RUN_DIR/ab.json: paired per-user differences with CIs, p-values, Holm, MDE and a verdict per metric."""
    from evals.campaign import CampaignError, write_ab

    try:
        path, rows = write_ab(run_dir, control, treatment, seed=seed)
    except (CampaignError, ValueError) as exc:
        _fail(exc)
    for r in rows:  # a metric with fewer than two pairs has no statistics: n/a
        typer.echo(f"{r['metric']:18s} diff={_num(r['diff'], '+.4f')} CI=[{_num(r['ci_low'], '+.4f')}, "
                   f"{_num(r['ci_high'], '+.4f')}] p={_num(r['p_value'])} p_holm={_num(r['p_holm'])} n={r['n_users']} "
                   f"mde={_num(r['mde'])} min_p_holm={_num(r['min_p_holm'])}")
        typer.echo(f"{'':18s} {r['verdict']}")
    typer.echo(f"wrote {path}")


def open_in_browser(path: Path) -> bool:
    """Open ``path`` in the default browser; False (nothing started) where there is no display to show it
    on and no $BROWSER, so a headless machine never gets a text browser taking over its terminal."""
    import os
    import sys
    import webbrowser

    headless = sys.platform.startswith("linux") and not any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"))
    if headless:
        return False
    try:
        return webbrowser.open(path.resolve().as_uri())
    except webbrowser.Error:
        return False


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A campaign output folder."),
    open_: bool = typer.Option(False, "--open", help="Open the report in the default browser."),
) -> None:
    """(Re)render RUN_DIR/report.html and summary.md: validity panel, personas, transcripts, statistics.

    Missing inputs (no events, a cut-off last line, no personas) are named in the report and warned about.
    """
    from evals.campaign import CampaignError
    from evals.summary import write_campaign_report

    try:
        html_path, warnings = write_campaign_report(run_dir)
    except (CampaignError, ValueError) as exc:
        _fail(exc)
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"wrote {html_path}")
    if open_ and not open_in_browser(html_path):
        typer.echo(f"no browser to open it here: open {html_path.resolve().as_uri()}")
