"""Drift of grounded users against their null, by decision-noise temperature, in the default design.

The default campaign's design (4 personas from ML-100k train documents, 2 twins
each, MF and AMP-CF, 3 turns, 2 runs), grounded users only, with the LLM out
of the loop so that only the decision is measured: the LLM judgement feature is
off (its fitted weight is ~0 on SmolLM2, README) and the utterances come from
the local fault-injection server with faults off (schema-valid answers; drift
does not read utterances). Personas, calibration and models are made once and
shared by every temperature; only ``grounding.temperature`` changes. Prints,
per temperature, the run-to-run / persona-to-persona variance ratio with its
CI, the ratio identical personas give at this design (the null) and the
one-sided p-value, and the within and between of each feature block.

    .venv/bin/python -m benchmarks.drift_temperature [--temperatures 0 0.1 0.25] [--out runs/drift_temperature]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.servers.process import free_port, serve

ROOT = Path(__file__).resolve().parents[1]


def campaign(url: str, temperature: float, personas: dict) -> dict:
    base = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    return {**base, "name": f"drift-T{temperature}", "user_variants": ["grounded"], "personas": personas,
            "llm": {"backend": "openai", "base_url": url, "model": "fault-echo", "concurrency": 8, "cache": False},
            "grounding": {**base["grounding"], "temperature": temperature, "llm_feature": False}}


def run(cfg: dict, out: Path) -> dict:
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "evals.cli", "campaign", "run", str(path), "--out", str(out), "--quiet",
                          "--no-report"], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    from evals.campaign.driver import write_drift

    _, report = write_drift(out)  # the null draws with the campaign seed
    return report["by_user_variant"]["grounded"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 0.1, 0.25])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "drift_temperature")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    port = free_port()
    rows = []
    with serve(["-m", "tests.servers.fault_openai", "--port", str(port), "--answer-schema"], port) as url:
        first = args.out / f"T{args.temperatures[0]}"
        d = run(campaign(url, args.temperatures[0], yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
                         ["personas"]), first)
        rows.append((args.temperatures[0], d))
        shared = {"path": str(first / "personas" / "personas.jsonl")}
        for t in args.temperatures[1:]:
            out = args.out / f"T{t}"
            out.mkdir()
            shutil.copytree(first / "models", out / "models")  # the same trained recommenders
            rows.append((t, run(campaign(url, t, shared), out)))
    for t, d in rows:
        null, ci = d["null"], d["ratio_ci"]
        blocks = {k: f"{v['within']:.4f}/{v['between']:.4f}" for k, v in d["by_feature"].items()}
        print(f"T={t:<5} ratio {d['ratio_within_over_between']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]  null "
              f"{null['mean']:.3f}  p {null['p_value']:.3f}  within/between {blocks}")
    (args.out / "drift_temperature.json").write_text(json.dumps({str(t): d for t, d in rows}, indent=2, default=float))


if __name__ == "__main__":
    main()
