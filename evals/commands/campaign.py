"""`personasim campaign run | drift | ab | report | digest`.

What each writes in the campaign folder, so that no command overwrites another's output:
`run` events.jsonl (and, unless --no-report, what `report` writes); `drift` drift.json (the same file
`report` writes: one drift per campaign); `ab --control C --treatment T` ab_T_vs_C.json; `report`
report.html, summary.md, drift.json and ab.json (the config's first variant against each of the others);
`digest` writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


def _num(v, spec: str = ".4g") -> str:
    return "n/a" if v is None else f"{v:{spec}}"


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
    from pydantic import ValidationError

    from evals.campaign.driver import run_campaign
    from evals.commands.errors import fail, option_error
    from evals.campaign.config import load_config

    cfg = load_config(config)
    overrides = {k: v for k, v in {"executor": executor, "ray_address": ray_address}.items() if v is not None}
    if overrides:
        try:
            cfg = cfg.model_validate({**cfg.model_dump(), **overrides})
        except ValidationError as exc:
            fail(option_error(exc))
    result = run_campaign(cfg, out, resume=resume, show_progress=not quiet)
    typer.echo(result.describe())
    if not no_report:
        typer.echo(f"report: {_write_report(out)}")


@app.command()
def drift(run_dir: Path = typer.Argument(..., help="A campaign output folder.")) -> None:
    """Write RUN_DIR/drift.json: run-to-run vs persona-to-persona variance against the identical-persona null, ICC."""
    from evals.campaign.driver import write_drift

    path, report = write_drift(run_dir)
    for uv, d in report["by_user_variant"].items():
        ci, null = d.get("ratio_ci") or [None, None], d.get("null") or {}
        typer.echo(f"{uv:8s} ratio_within_over_between={_num(d['ratio_within_over_between'])} "
                   f"CI=[{_num(ci[0])}, {_num(ci[1])}] null={_num(null.get('mean'))} "
                   f"[{_num(null.get('q025'))}, {_num(null.get('q975'))}] p={_num(null.get('p_value'))} "
                   f"icc={_num(d['icc'])}")
        typer.echo(f"         {d.get('verdict')}")
    typer.echo(f"wrote {path}")


@app.command()
def digest(run_dir: Path = typer.Argument(..., help="A campaign output folder.")) -> None:
    """Print the campaign's content digest: every turn but its wall time, in key order (see README,
    'Portable runtime'). The same config and seed give the same digest on any x86-64 CPU with AVX2."""
    from evals.campaign.events import read_events
    from evals.campaign.runner import content_digest
    from evals.commands.errors import fail

    path = run_dir / "events.jsonl"
    if not path.is_file():
        fail(f"{path}: no such file; is {run_dir} a campaign output folder?")
    events = list(read_events(path))
    if not events:
        fail(f"{path}: no finished turns yet, so no digest")
    typer.echo(f"{content_digest(events)}  {len(events)} turns  {path}")


@app.command()
def ab(
    run_dir: Path = typer.Argument(..., help="A campaign output folder."),
    control: str = typer.Option(..., "--control", help="Control variant, e.g. mf."),
    treatment: str = typer.Option(..., "--treatment", help="Treatment variant, e.g. ampcf."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and permutation draws."),
) -> None:
    """Write RUN_DIR/ab_TREATMENT_vs_CONTROL.json: paired per-user differences with CIs, p-values, Holm, MDE
    and a verdict per metric, one table per user variant (`campaign report` keeps its own ab.json: the config's first variant against each of the others)."""
    from evals.campaign.driver import write_ab

    path, tables = write_ab(run_dir, control, treatment, seed=seed)
    for table in tables:
        typer.echo(f"{table['user_variant']} users:")
        for r in table["rows"]:  # a metric with fewer than two pairs has no statistics: n/a
            typer.echo(f"  {r['metric']:23s} diff={_num(r['diff'], '+.4f')} CI=[{_num(r['ci_low'], '+.4f')}, "
                       f"{_num(r['ci_high'], '+.4f')}] p={_num(r['p_value'])} p_holm={_num(r['p_holm'])} "
                       f"n={r['n_users']} mde={_num(r['mde'])} min_p_holm={_num(r['min_p_holm'])}")
            typer.echo(f"  {'':23s} {r['verdict']}")
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
    html_path = _write_report(run_dir)
    typer.echo(f"wrote {html_path}")
    if open_ and not open_in_browser(html_path):
        typer.echo(f"no browser to open it here: open {html_path.resolve().as_uri()}")


def _write_report(run_dir: Path) -> Path:
    """Render the report (the same code path for `campaign run` and `campaign report`); warn about
    each missing or damaged input, one line each; print the validity panel's verdicts, one line a check."""
    from evals.report.summary import write_campaign_report

    html_path, warnings, panel = write_campaign_report(run_dir)
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo("can these simulated users be believed?")
    for row in panel:
        typer.echo(f"  {row['status']:<7} {row['check']}: {row['verdict']}")
    return html_path
