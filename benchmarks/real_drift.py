"""Drift read against people: the campaign's within/between ratio on its data set's real users, beside its own.

    .venv/bin/python benchmarks/real_drift.py runs/default [--draws 200] [--seed 0]

Reads the campaign folder's personas (their assignments and split), cuts each test user's held-out ratings
in two halves in time order, and computes the ratio over all eligible users and at the campaign's design
(its grounded users per persona, drawn at random, ``--draws`` times): `evals.validity.real_drift`. Then prints each
user variant's ratio and CI from the folder's drift.json against the real range. Writes RUN/real_drift.json.
The data set is the campaign's (`recsys.dataset`); on an implicit log, or personas without a split, one line and
exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evals.commands.errors import EXIT_CODE, emit
from evals.validity.real_drift import compare, real_drift_of
from personas.infra.files import write_whole


def _dataset(config: dict):
    """The campaign's data set from its raw config's ``recsys.dataset`` (MovieLens-100k by default)."""
    from evals.campaign.config import DatasetFolder
    from evals.campaign.dataset import load_dataset

    dataset = (config.get("recsys") or {}).get("dataset", "ml-100k")
    return load_dataset(dataset if dataset == "ml-100k" else DatasetFolder.model_validate(dataset))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a campaign output folder with personas/ and drift.json")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    config = json.loads((a.run / "campaign.json").read_text())["config"]  # raw: any version's campaign folder
    given = (config.get("personas") or {}).get("path")
    personas_path = Path(given) if given else a.run / "personas" / "personas.jsonl"
    upp = config.get("users_per_persona", 4)
    users = upp.get("grounded", 4) if isinstance(upp, dict) else upp
    from evals.validity.grounding import GroundingError
    from recsys.data import DataError

    try:
        real = real_drift_of(personas_path, users, ds=_dataset(config), draws=a.draws, seed=a.seed)
    except (GroundingError, DataError, OSError) as exc:
        emit(str(exc))
        raise SystemExit(EXIT_CODE) from None
    al, d = real["all"], real["design"]
    print(f"real users, all {al['n_users']} eligible: ratio {al['ratio']:.3g}, identical-persona null "
          f"{al['null']['mean']:.3g}, p = {al['null']['p_value']:.3g}")
    print(f"real users at the campaign's design ({users} a persona, {d['draws']} draws): median {d['median']:.3g}, "
          f"2.5-97.5% [{d['q025']:.3g}, {d['q975']:.3g}], 5-95% [{d['q05']:.3g}, {d['q95']:.3g}]")
    drift_path = a.run / "drift.json"
    verdicts = {}
    if drift_path.is_file():
        drift = json.loads(drift_path.read_text())
        for uv, r in drift.get("by_user_variant", {}).items():
            verdicts[uv] = compare(r.get("ratio_ci"), real)
            ratio = r.get("ratio_within_over_between")
            print(f"simulated {uv}: ratio {ratio if ratio is None else f'{ratio:.3g}'}: {verdicts[uv]}")
    write_whole(a.run / "real_drift.json", json.dumps({**real, "simulated": verdicts}, indent=2, default=float) + "\n")
    print(f"wrote {a.run / 'real_drift.json'}")


if __name__ == "__main__":
    main()
