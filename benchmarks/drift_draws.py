"""Which side of real users' drift do the simulated users lie on? Their ratio over many draws of the design.

    .venv/bin/python -m benchmarks.drift_draws runs/default [--draws 100] [--seed 0] [--layers subtopic,context]

A campaign's drift ratio (docs/results/drift.md) is one draw of its users: which twins a persona gets moves it
more than the design does, so one run cannot say where the simulated population lies against real users'
range. This draws the design ``--draws`` times (`evals.campaign.ab_power.drift_draws`: users per persona at
random, MF's pages, the runs' own decisions, no LLM call) and compares the distribution of the ratio with real
users' at the same design (RUN/real_drift.json, written by the campaign's report; `evals.validity.real_drift`):
their medians, their 2.5-97.5% ranges, and the share of simulated draws below real users' median. Writes
RUN/drift_draws.json (config hash, model and seed in it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from evals.campaign.ab_power import campaign_twins, drift_draws
from evals.campaign.driver import run_config_hash
from evals.commands.errors import EXIT_CODE, emit
from personas.infra.files import write_whole
from simulator.layers import parse_layers


def _fail(message: str) -> None:
    """The command line's error: one line on stderr (`evals.commands.errors.emit`), exit code 2, nothing written."""
    emit(message)
    raise SystemExit(EXIT_CODE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a campaign output folder with real_drift.json (its report writes it)")
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", default="subtopic,context", help="layers on: subtopic, context (default: both, as a "
                    "campaign's grounded users have them), or 'none'")
    a = ap.parse_args()
    try:
        layers = parse_layers(a.layers)
    except ValueError as exc:
        _fail(str(exc))
    real_path = a.run / "real_drift.json"
    if not real_path.is_file():
        _fail(f"{real_path}: no real users' drift; run `personasim campaign report {a.run}` first")
    real = json.loads(real_path.read_text())["design"]
    started = time.perf_counter()
    world = campaign_twins(a.run)
    cfg, twins, design = world.cfg, world.twins, world.design
    if real["users_per_persona"] != design.users_per_persona:
        _fail(f"{real_path}: real users drawn at {real['users_per_persona']} a persona, the campaign's design has "
              f"{design.users_per_persona}")
    ranked = world.rankings()
    sim = drift_draws(twins, ranked, design, draws=a.draws, seed=a.seed, layers=layers)
    below = sum(r < real["median"] for r in sim["ratios"]) / max(len(sim["ratios"]), 1)
    result = {"simulated": sim, "real": real, "share_of_simulated_draws_below_real_median": round(below, 4),
              "ranges_overlap": sim["q025"] <= real["q975"] and real["q025"] <= sim["q975"],
              "config_hash": run_config_hash(a.run), "config_hash_now": cfg.config_hash(),
              "model": "none (grounded decisions read no LLM)", "seed": a.seed,
              "seconds": round(time.perf_counter() - started, 1)}
    print(f"simulated (grounded, {a.draws} draws of {design.users_per_persona} a persona): median {sim['median']}, "
          f"2.5-97.5% [{sim['q025']}, {sim['q975']}]")
    print(f"real users at the same design ({real['draws']} draws): median {real['median']:.4g}, "
          f"2.5-97.5% [{real['q025']:.4g}, {real['q975']:.4g}]")
    print(f"simulated draws below real users' median: {below:.0%}; ranges overlap: {result['ranges_overlap']}")
    out = a.run / ("drift_draws.json" if set(layers) == {"subtopic", "context"} else
                   f"drift_draws_{'_'.join(layers) or 'none'}.json")
    write_whole(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
