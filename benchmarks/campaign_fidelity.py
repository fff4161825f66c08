"""Recompute a campaign folder's fidelity.json with this code (the protocol `campaign run` runs before its sessions).

    .venv/bin/python -m benchmarks.campaign_fidelity runs/default

`evals.campaign.world.check_fidelity` on the folder's config, personas and calibration: taste alignment, rating
error, like given watched, population realism and A/B fidelity of its grounded users, on the held-out part of the
personas' split. Overwrites RUN/fidelity.json (the report's first validity check reads it; rerun
`personasim campaign report RUN` after). Prints the headline targets. Note: each run reads the test part again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from evals.campaign.driver import load_campaign
from evals.campaign.world import check_fidelity, personas_path_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a campaign output folder (campaign.json, personas/ with calibration.json)")
    a = ap.parse_args()
    started = time.perf_counter()
    cfg = load_campaign(a.run)
    check_fidelity(cfg, a.run, personas_path_of(cfg, a.run), show_progress=True)
    record = json.loads((a.run / "fidelity.json").read_text())
    for target, ok in record["headline"]["targets"].items():
        print(f"{'met' if ok else 'NOT met'}: {target}")
    for row in record["population_realism"]["rows"]:
        w = {who: row[who]["wasserstein"] for who in record["population_realism"]["populations"]}
        print(f"{row['statistic']:16s} real {row['real_mean']:.3f} (sd {row['real_sd']:.3f})  " + "  ".join(
            f"{who} W {v['value']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]" for who, v in w.items()))
    print(f"wrote {a.run / 'fidelity.json'} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
