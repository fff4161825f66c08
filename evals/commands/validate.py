"""`personasim calibrate` and `personasim validate fidelity`: grounded users and the evidence that they are valid.

Thin: parsing and printing only; the work is in evals.validity.calibration and evals.validity.fidelity.
Bad input prints one line `error: ...` and exits 2, with nothing overwritten (evals/commands/errors.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True)

# Options both commands take (the LLM that gives the judgement feature, seed, progress)
NoLLM = Annotated[bool, typer.Option("--no-llm", help="leave the LLM judgement out of the decision")]
BackendName = Annotated[str, typer.Option("--backend", help="embedded | openai | transformers")]
ModelName = Annotated[Optional[str], typer.Option("--model", help="model path (embedded) or name (openai)")]
BaseURL = Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible server (openai)")]
Adapter = Annotated[Optional[str], typer.Option("--adapter", help="a tuned simulator (`personasim train consistency` "
                                                "output; embedded or transformers) whose judgement is read")]
Seed = Annotated[int, typer.Option("--seed")]
Quiet = Annotated[bool, typer.Option("--quiet", help="no progress bars")]


@app.callback()
def validate() -> None:
    """Check the simulated users against held-out real behaviour."""


def _client(no_llm: bool, backend: str, model: Optional[str], base_url: Optional[str], cache: Optional[Path],
            adapter: Optional[str]):
    """The LLM whose judgement is a decision feature, built as a campaign builds it; None with --no-llm."""
    from pydantic import ValidationError

    from evals.commands.errors import check_backend, fail, option_error
    from evals.campaign.config import LLMSettings
    from simulator.llm import create_client

    if no_llm:
        if adapter is not None:
            fail("--adapter: the tuned simulator's judgement is read only with the LLM feature; drop --no-llm "
                 "(validate fidelity: add --llm)")
        return None
    try:
        settings = LLMSettings(backend=backend, model=model, base_url=base_url, adapter=adapter)
    except ValidationError as exc:
        fail(option_error(exc))
    check_backend(settings)
    return create_client(backend, concurrency=1, cache_dir=cache, **settings.backend_options())  # as a campaign builds it


def calibrate(
    personas: Path = typer.Option(..., "--personas", help="personas.jsonl extracted with --holdout (split.json beside it)"),
    users: int = typer.Option(300, "--users", help="training users whose later training ratings are fitted"),
    dataset: str = typer.Option("ml-100k", "--dataset", help="ml-100k, or the folder of RecBole atomic files the "
                                "personas were extracted from (a campaign's recsys.dataset; an implicit log is "
                                "calibrated without ratings: evals/validity/calibration.py)"),
    verb: Optional[str] = typer.Option(None, "--verb", help="what the LLM judgement asks a user would do with an item "
                                       "(the campaign's recsys.dataset.verb); default 'watch' on ml-100k, 'choose' on "
                                       "a folder"),
    no_llm: NoLLM = False,
    backend: BackendName = "embedded",
    model: ModelName = None,
    base_url: BaseURL = None,
    adapter: Adapter = None,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Fit the grounded users' decision weights on the training split; writes calibration.json beside PERSONAS."""
    import re

    from evals.campaign.config import VERB_PATTERN, DatasetFolder
    from evals.campaign.dataset import load_dataset
    from evals.commands.errors import fail
    from evals.validity.calibration import calibrate as fit, write_calibration
    from evals.validity.grounding import split_for
    from evals.campaign.inputs import read_personas_file

    read_personas_file(personas)
    ds = load_dataset(dataset if dataset == "ml-100k" else DatasetFolder(path=dataset))
    split = split_for(ds, personas)  # the personas' own split (split.json): a calibration is never of another
    llm = _client(no_llm, backend, model, base_url, personas.parent / "llm_cache", adapter)
    verb = verb or ("watch" if dataset == "ml-100k" else "choose")
    if not re.fullmatch(VERB_PATTERN, verb):
        fail(f"--verb {verb!r}: one or two lower-case words, e.g. 'buy' or 'listen to'")
    record = fit(ds, split, personas, llm, n_users=users, use_llm=not no_llm, seed=seed,
                 show_progress=not quiet, verb=verb)
    path = write_calibration(record, personas)
    for kind, rep in record["report"].items():
        typer.echo(f"{kind:8s} cv AUC {rep['cv_auc']:.3f}; AUC lost without each source: "
                   + ", ".join(f"{k} {v:+.3f}" for k, v in rep["auc_drop_without"].items()))
    typer.echo(f"wrote {path}")


@app.command()
def fidelity(
    dataset: str = typer.Option("ml-100k", "--dataset", help="ml-100k (the data set with a packaged loader)"),
    out: Path = typer.Option(..., "--out", help="output folder: personas/, calibration, fidelity.json"),
    users: int = typer.Option(300, "--users", help="test users for taste alignment and rating error"),
    ab_users: int = typer.Option(30, "--ab-users", help="twins that meet each recommender (0 = skip A/B fidelity)"),
    n_personas: int = typer.Option(8, "--n-personas", "--personas-k", help="personas (cards) extracted from the "
                                   "train documents (--personas-k: its old name)"),
    deterministic: bool = typer.Option(False, "--deterministic", help="grounded users take each probability > 0.5 "
                                       "instead of sampling from their calibrated probabilities (debugging)"),
    split: str = typer.Option("global", "--split", help="'global' (leave-future-out: one cut time for everyone) or "
                              "'per-user' (each user's latest 20%; train then holds other users' later ratings)"),
    cut: Optional[str] = typer.Option(None, "--cut", help="--split global: the cut time, an ISO date (UTC); default: "
                                      "the time after which the latest 20% of all ratings lie"),
    final: bool = typer.Option(False, "--final", help="read the test part, once: the read is appended to "
                               "docs/results/test_reads.jsonl (code digest, config hash, time). Without it the run "
                               "reads the validation split, for development"),
    llm_feature: bool = typer.Option(False, "--llm/--no-llm", help="the LLM's yes-probability as a decision feature "
                                     "(about 4 s a user on 2 cores: off by default)"),
    calibration_per_user: int = typer.Option(3, "--calibration-per-user", help="later positives (and rated items) "
                                             "per calibration user the twins' like and rating models are fitted on"),
    layers: str = typer.Option("subtopic,context", "--layers", help="the layers the measured users play, drawn as a "
                               "campaign draws them: 'subtopic,context' (the campaign's users), one of them, or 'none'"),
    backend: BackendName = "embedded",
    model: ModelName = None,
    base_url: BaseURL = None,
    adapter: Adapter = None,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Do simulated users do what the real people did, on held-out data? Writes OUT/fidelity.json."""
    from pydantic import ValidationError

    from evals.commands.errors import fail, option_error
    from evals.validity.fidelity import FidelityConfig, run_fidelity
    from evals.validity.read_ledger import test_reads_path
    from evals.campaign.inputs import check_output_dir
    from simulator.layers import parse_layers

    if dataset != "ml-100k":
        fail(f"--dataset: {dataset!r} has no packaged loader with timestamps and ratings (use ml-100k)")
    check_output_dir(out)
    try:
        cfg = FidelityConfig(split=split, cut=cut, final=final, users=users, ab_users=ab_users, n_personas=n_personas,
                             decision="deterministic" if deterministic else "sampled",
                             use_llm=llm_feature, seed=seed, layers=list(parse_layers(layers)),
                             calibration_per_user=calibration_per_user)
    except ValidationError as exc:
        fail(option_error(exc))
    llm = _client(not llm_feature, backend, model, base_url, out / "llm_cache", adapter)
    result = run_fidelity(cfg, out, llm, show_progress=not quiet)
    typer.echo(json.dumps(result["headline"], indent=2))
    typer.echo(f"read the {result['read']} part of {result['split']}; wrote {out / 'fidelity.json'}"
               + (f" and counted the read in {test_reads_path()}" if final else ""))
