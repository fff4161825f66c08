"""Do the twins order a broad pool of recommenders as held-out data does, and does their evidence flatter its kind?

    .venv/bin/python benchmarks/fidelity_pool.py [--users N] [--seed 0] [--out runs/fidelity_pool] [--split-holdout 0.2]
                                                 [--split global|per-user] [--validation] [--llm]
                                                 [--hard-negatives H] [--draws D] [--calibration-per-user K]

Issue 36, items 2 and 3 (`evals.validity.pool`): 14 recommenders of 8 families and two probes trained on the
split's train part; offline Recall@10 and NDCG@10 on its test part; the calibrated, sampled twins of
`personasim validate fidelity` (8 personas, 300 calibration users; without the LLM feature unless --llm) meet each
top 10 as 2 pages of 5. Writes OUT/fidelity_pool.json (the record), OUT/fidelity_pool_users.npz (the per-user
arrays) and OUT/personas/ (personas and calibration, reused by a rerun on the same split); prints Kendall tau and
Spearman rho with CIs, the agreement on offline-significant pairs, the pairs one side orders alone and the
circularity table. Each run reads the test part, unless --validation.
"""

from __future__ import annotations

from evals.campaign.runtime import pin_kernels

pin_kernels()  # as the CLI computes, before numpy or torch loads

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def make_split(ds, args):
    """The split the pool is judged on (`recsys.time_splits.make_split`: the global leave-future-out split by default,
    or the per-user one); with --validation, its validation split (`TimeSplit.inner`), which development reads
    instead of test."""
    from recsys.time_splits import make_split as split_of_kind

    return split_of_kind(ds, args.split, args.split_holdout, validation=args.validation)


def report(r: dict) -> None:
    """The figures, as the results page gives them."""
    def ci(x: dict) -> str:
        return f"{x['value']:.3f} [{x['ci'][0]:.3f}, {x['ci'][1]:.3f}]"

    print(f"\n{r['split']}: {r['n_twins']} twins, {r['n_offline_users']} offline users, {len(r['pool'])} recommenders")
    print(f"{'recommender':16s} {'family':14s} {'Recall@10':>24s} {'NDCG@10':>24s} {'like rate':>24s}  off sim")
    for row in r["recommenders"]:
        if row["status"] != "ok":
            print(f"{row['recommender']:16s} {row['family']:14s} FAILED: {row['error']}")
            continue
        ranks = f"{row['rank_offline'] or 0:4.1f} {row['rank_simulated'] or 0:4.1f}" if not row["probe"] else "probe"
        print(f"{row['recommender']:16s} {row['family']:14s} {ci(row['recall@10']):>24s} {ci(row['ndcg@10']):>24s} "
              f"{ci(row['like_rate']):>24s}  {ranks}")
    for row in r["recommenders"]:
        if row.get("tuned"):
            t = row["tuned"]
            print(f"{row['recommender']} tuned on {t['validation']} ({t['validation_users']} users): {t['params']}, "
                  f"validation Recall@10 {t['validation_recall@10']}")
    for name, o in r["orders"].items():
        c = o["ceiling"]
        print(f"{name:30s} tau {ci(o['kendall_tau'])}  rho {ci(o['spearman_rho'])}  "
              f"({o['n_recommenders']} recommenders); the offline order's own ceiling: tau "
              f"{c['bootstrap']['median']} {c['bootstrap']['range_95']} (bootstrap), "
              f"{c['split_half']['median']} {c['split_half']['range_95']} (split halves)")
    a = r["agreement"]
    print(f"agreement: {a['agree']} of {a['n_offline_significant']} offline-significant pairs (Recall@10, Holm) agree "
          f"({a['share_agreeing']}), {a['disagree']} disagree, {a['reversed-significantly']} reversed significantly"
          f" {a['reversed_significantly']}")
    print(f"simulator orders, offline does not: {a['simulator_orders_offline_does_not']}")
    print(f"offline orders, simulator does not: {a['offline_orders_simulator_does_not']}")
    c = r["circularity"]
    fams = list(c["families"])
    print("\ncircularity: rank offline / full simulator / without each family (lift = without - full; kin marked *)")
    print(f"{'recommender':16s} {'off':>5s} {'full':>5s} " + " ".join(f"{f:>11s}" for f in fams))
    for i, name in enumerate(r["pool"]):
        first = c["families"][fams[0]]["ranks"][i]
        cells = []
        for f in fams:
            row = c["families"][f]["ranks"][i]
            cells.append(f"{row['rank_without']:4.1f}({row['lift']:+.1f}){'*' if row['kin'] else ' '}")
        print(f"{name:16s} {first['rank_offline']:5.1f} {first['rank_full']:5.1f} "
              + " ".join(f"{x:>11s}" for x in cells))
    for f in fams:
        v = c["families"][f]
        lifts = ", ".join(f"{n} {ci(x)}" for n, x in v["kin_lift"].items()) or "no kin in the pool"
        print(f"without {f:10s} tau {ci(v['order_without']['kendall_tau'])}; kin lift: {lifts}")
    print(f"families lifting their own kind by > 1 rank: {c['families_lifting_own_kind']}")
    print(f"of their kin, lifted past its offline rank: {c['kin_lifted_past_offline_rank']}")
    for p in c["probes"]:
        print(f"{p['probe']}: rank offline {p['rank_offline']:.0f}, simulated {p['rank_full']:.0f} "
              f"(without {p['family']} {p.get('rank_without', float('nan')):.0f}) of {p['n_ranked']}; "
              f"beaten offline by "
              f"{p['beaten_offline_by']}; promoted over {p['promoted_over']} (significantly: "
              f"{p['promoted_over_significantly']}); without its family over {p['promoted_over_without_its_family']}; "
              f"over any ahead of it offline: {p['promoted_over_ahead_offline']}; its rank by simulator: "
              f"{p['rank_by_simulator']}")
    print()
    for t, ok in r["targets"].items():
        print(f"{'met' if ok else 'NOT met'}: {t}")
    print(f"timings (s): {r['timings_s']}")


def main() -> None:
    from evals.validity.fidelity import FidelityConfig
    from evals.validity.pool import run_pool
    from evals.validity.pool_members import default_pool
    from personas.infra.assets import ml100k_dir
    from personas.infra.files import write_whole
    from recsys import load_movielens

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=None, help="twins that judge the pool (default: every test user "
                    "with a held-out positive and a twin, as `validate fidelity` draws them)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/fidelity_pool"))
    ap.add_argument("--split", choices=("global", "per-user"), default="global", help="global: one cut time for "
                    "everyone (leave-future-out); per-user: each user's latest ratings held out")
    ap.add_argument("--split-holdout", type=float, default=0.2, help="the share of ratings held out (of each user's, "
                    "or of all after the cut)")
    ap.add_argument("--validation", action="store_true", help="judge on the split's validation split (development "
                    "reads this, never test)")
    ap.add_argument("--other-lambda", type=float, default=0.5, help="MMR's and DPP's second lambda (the first is "
                    "recsys.bench.TUNED_LAMBDAS's)")
    ap.add_argument("--hard-negatives", type=int, default=0, help="per positive, more negatives for the twins' "
                    "calibration drawn from the top of their own evidence rankings (default 0: none)")
    ap.add_argument("--calibration-per-user", type=int, default=3, help="later positives (and rated items) per "
                    "calibration user the twins' like and rating models are fitted on (default 3)")
    ap.add_argument("--draws", type=int, default=30, help="sampled decisions each twin makes on each page, averaged "
                    "into its like rate (default 30: the Monte Carlo variance of the simulated measure is 1/30 of one "
                    "draw's, for about 2 min more on the global split; 1: the reads before 2026-12-07 evening)")
    ap.add_argument("--llm", action="store_true", help="the LLM judgement as a decision feature (embedded SmolLM2; "
                    "slow, and one more family for the circularity check)")
    a = ap.parse_args()
    for flag, value, least in (("--draws", a.draws, 1), ("--hard-negatives", a.hard_negatives, 0),
                               ("--calibration-per-user", a.calibration_per_user, 1)):
        if value < least:  # one line, exit 2, before any work (`evals.commands.errors`)
            from evals.commands.errors import EXIT_CODE, emit

            emit(f"{flag}: must be at least {least}, got {value}")
            raise SystemExit(EXIT_CODE)
    started = time.perf_counter()
    ds = load_movielens(ml100k_dir())
    split = make_split(ds, a)
    cfg = FidelityConfig(holdout=a.split_holdout, use_llm=a.llm, seed=a.seed, split=a.split, final=not a.validation,
                         hard_negatives=a.hard_negatives, pool_draws=a.draws,
                         calibration_per_user=a.calibration_per_user)
    llm = None
    if a.llm:
        from simulator.llm import create_client

        llm = create_client("embedded", concurrency=1, cache_dir=a.out / "llm_cache")
    run = run_pool(ds, split, a.out, cfg, llm, members=default_pool(a.other_lambda), n_twins=a.users)
    run.record["command"] = "benchmarks/fidelity_pool.py " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in vars(a).items() if v not in (None, False))
    run.record["read"] = "validation" if a.validation else "test"
    write_whole(a.out / "fidelity_pool.json", json.dumps(run.record, indent=2, default=float) + "\n")
    buf = io.BytesIO()
    np.savez_compressed(buf, offline_users=run.offline_users, twins=run.twins,
                        **{f"offline/{m}/{k}": v for m, d in run.offline.items() for k, v in d.items()},
                        **{f"simulated/{s}/{m}": v for s, d in run.simulated.items() for m, v in d.items()})
    write_whole(a.out / "fidelity_pool_users.npz", buf.getvalue())
    if not a.validation:  # a read of the test part is counted, as `validate fidelity --final`'s are
        from evals.validity.read_ledger import record_test_read, test_reads_path

        o = run.record["orders"]["recall@10"]
        record_test_read(test_reads_path(), {**run.record, "source": "benchmarks/fidelity_pool.py",
                                             "config_hash": cfg.config_hash(), "split": split.key,
                                             "headline": {"pool": run.record.get("targets"), "kendall_tau":
                                                          o["kendall_tau"], "ceiling": o["ceiling"]}}, a.out)
    report(run.record)
    print(f"wrote {a.out / 'fidelity_pool.json'} ({time.perf_counter() - started:.0f} s)"
          + ("" if a.validation else f"; the read of the test part is counted in {test_reads_path()}"))


if __name__ == "__main__":
    main()
