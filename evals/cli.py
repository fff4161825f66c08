"""The `personasim` command line. Each group lives in evals/commands/<group>.py.

Command modules import heavy libraries (torch, llama_cpp, ...) inside the
command bodies so that `personasim --help` stays instant. Every failure is one
`error: ...` line and exit code 2 (evals/commands/errors.py): `main` is the
console entry point (`personasim`, `python -m evals.cli`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from evals.campaign.runtime import pin_kernels

pin_kernels()  # before numpy or torch loads: every numeric library on its AVX2 path (evals/campaign/runtime.py)

import typer  # noqa: E402

from evals.commands import campaign, llm, personas, recsys, simulate, train, validate  # noqa: E402
from evals.commands.errors import GuardedGroup, run  # noqa: E402

app = typer.Typer(
    cls=GuardedGroup,
    help="personasim: LLM-driven synthetic users for evaluating recommenders, mixture models among them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(llm.app, name="llm", help="Talk to an LLM backend (embedded, openai, transformers).")
app.add_typer(personas.app, name="personas", help="Extract grounded personas from documents.")
app.add_typer(recsys.app, name="recsys", help="Train and benchmark recommenders.")
app.command("simulate", help="Run simulated users against a built-in popularity recommender.")(
    simulate.simulate
)
app.add_typer(campaign.app, name="campaign", help="Run campaigns; score drift; offline A/B; report.")
app.command("calibrate", help="Fit grounded users' decision weights on the training split (calibration.json).")(
    validate.calibrate
)
app.add_typer(validate.app, name="validate", help="Fidelity of simulated users to held-out real behaviour.")
app.add_typer(train.app, name="train", help="Tune the simulated user for consistency (DPO LoRA, persona axis).")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """`personasim ...`: run a command; any failure is one `error:` line on stderr and exit code 2."""
    sys.exit(run(app, argv))


if __name__ == "__main__":
    main()
