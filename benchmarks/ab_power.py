"""Can the campaign's A/B see a difference? A/A false-positive rate and power against a degraded recommender.

    .venv/bin/python -m benchmarks.ab_power runs/default [--pairs 100] [--seed 0] [--degrade 0.3] [--users-per-persona U]
        [--layers subtopic,context | subtopic | context | none]

Reads the campaign folder's config (its grounded users per persona, turns, slate size, runs per user and its
recommenders' training settings), its personas and its calibration; trains MF on the personas' train part as
the campaign does, and runs ``--pairs`` independent replicates of `evals.campaign.ab_power` (no LLM call: the
grounded users' decisions do not read it), with the layers a campaign's grounded users have (subtopic and context)
unless ``--layers`` says otherwise. Prints the A/A family-wise false-positive rate and the power to
detect MF with ``--degrade`` of each page replaced by random items, each with its exact binomial CI, and the
median MDE per metric. Writes RUN/ab_power.json (config hash, model and seed in it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from evals.campaign.ab_power import DEGRADE_SHARE, ab_power, campaign_twins
from evals.campaign.driver import run_config_hash
from evals.commands.errors import EXIT_CODE, emit
from personas.infra.files import write_whole
from simulator.layers import parse_layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a campaign output folder (campaign.json, personas/ with calibration.json)")
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--degrade", type=float, default=DEGRADE_SHARE)
    ap.add_argument("--layers", default="subtopic,context",
                    help="comma-separated layers on: subtopic, context (default: both, as a campaign's grounded users "
                         "have them), or 'none'; other than the default it writes RUN/ab_power_LAYERS.json")
    ap.add_argument("--users-per-persona", type=int, default=None,
                    help="another design's grounded users a persona (default: the campaign's); writes "
                         "RUN/ab_power_uN.json then")
    a = ap.parse_args()
    try:
        layers = parse_layers(a.layers)
    except ValueError as exc:  # one line, exit 2, nothing written (`evals.commands.errors`)
        emit(str(exc))
        raise SystemExit(EXIT_CODE) from None
    started = time.perf_counter()
    world = campaign_twins(a.run, a.users_per_persona)
    cfg, twins, design = world.cfg, world.twins, world.design
    ranked = world.rankings()
    result = ab_power(twins, ranked, design, pairs=a.pairs, seed=a.seed, degrade_share=a.degrade, layers=layers)
    result.update(config_hash=run_config_hash(a.run), config_hash_now=cfg.config_hash(),
                  model="none (grounded decisions read no LLM)",
                  seconds=round(time.perf_counter() - started, 1))
    aa, bad = result["aa"], result["degraded"]
    d = result["design"]
    print(f"design: {d['users_per_persona']} grounded users a persona x {d['personas']} personas = "
          f"{d['paired_users']} paired users, {d['turns']} pages of {d['slate_size']}, {d['runs']} runs; "
          f"{a.pairs} pairs")
    f = aa["familywise"]
    print(f"A/A family-wise false-positive rate: {f['rate']:.3f} ({f['k']}/{f['n']}) [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]; "
          f"per test {aa['per_test']['rate']:.3f}")
    for m, r in bad["power_by_metric"].items():
        print(f"degraded ({a.degrade:.0%} random): {m:24s} power {r['rate']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]  "
              f"median diff {bad['median_diff'][m]:+.4f}  median MDE {bad['median_mde'][m]}")
    for target, ok in result["targets"].items():
        print(f"{'met' if ok else 'NOT met'}: {target}")
    name = "ab_power" + (f"_u{a.users_per_persona}" if a.users_per_persona else "") + (
        "" if a.layers == "subtopic,context" else "_" + ("+".join(layers) or "no_layers"))
    out = a.run / f"{name}.json"
    write_whole(out, json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
