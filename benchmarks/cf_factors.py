"""How many PureSVD factors the grounded users' ``cf`` evidence feature gets, chosen on validation only.

Validation rows only (benchmarks/validation_rows.py: the calibration's inner split; the
outer test part, on which `personasim validate fidelity` reports, is never touched).
For each K, the AUC of the PureSVD score (user's train "watched" row projected
on the top-K right singular vectors) for up to 3 validation positives per user
against one never-rated negative each, drawn uniformly and popularity-matched
(the fidelity benchmark's two kinds of negatives).

    .venv/bin/python benchmarks/cf_factors.py [--k 8 16 24 32 64] [--seeds 0 1 2 3 4]

simulator.evidence.CF_DIM is the K with the best popularity-matched AUC (the
test that popularity cannot pass), averaged over five draws of the rows: one draw
cannot tell 16 from 24 (seed 0 of today's rows puts 24 ahead by 0.005, seeds 1, 3
and 4 put 16 ahead).
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from sklearn.decomposition import TruncatedSVD

    from benchmarks.validation_rows import MATCHED, UNIFORM, over_draws, validation_rows
    from simulator.evidence import CF_DIM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[8, 16, 24, 32, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="draws of the validation rows")
    args = ap.parse_args()
    auc: dict[int, list[tuple[float, float]]] = {k: [] for k in args.k}
    for seed in args.seeds:
        rows = validation_rows(None, seed)
        W = rows.watched()
        every = np.ones(len(rows.item), dtype=bool)
        for k in args.k:
            V = TruncatedSVD(k, random_state=seed).fit(W).components_.T
            taste = W[rows.users[rows.user]] @ V  # [R, k]: each row's user, projected
            s = np.einsum("rk,rk->r", taste, V[rows.item])
            auc[k].append((rows.auc(s, every, UNIFORM), rows.auc(s, every, MATCHED)))
    print(f"validation: {rows.split.key}, {len(rows.users)} users, row draws (seeds) {args.seeds}; "
          f"K in use (simulator.evidence.CF_DIM) = {CF_DIM}; mean [min, max] over the draws")
    for k, runs in auc.items():
        uni, mat = np.array(runs).T
        print(f"K={k:3d}  AUC uniform {over_draws(uni)}  popularity-matched {over_draws(mat)}")

if __name__ == "__main__":
    main()
