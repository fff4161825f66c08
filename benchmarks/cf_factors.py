"""How many PureSVD factors the grounded users' ``cf`` evidence feature gets, chosen on validation only.

The calibration's inner split (the outer training part split again by the same
per-user time rule, `recsys.TimeSplit.inner`) is the only data read: the outer
test part, on which `personasim validate fidelity` reports, is never touched.
For each K, the AUC of the PureSVD score (user's train "watched" row projected
on the top-K right singular vectors) for up to 3 validation positives per user
against one never-rated negative each, drawn uniformly and popularity-matched
(the fidelity benchmark's two kinds of negatives).

    .venv/bin/python benchmarks/cf_factors.py [--k 8 16 24 32 64] [--seed 0]

simulator.evidence.CF_DIM is the K with the best popularity-matched AUC (the
test that popularity cannot pass).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.metrics import roc_auc_score

    from evals.calibration import draw_negatives, pop_bins
    from evals.grounding import item_space
    from personas.assets import ml100k_dir
    from recsys import load_movielens, time_split
    from simulator.evidence import CF_DIM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[8, 16, 24, 32, 64])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_movielens(ml100k_dir())
    inner = time_split(ds, 0.2).inner()
    bins = pop_bins(item_space(ds, inner.train))
    W = np.zeros((ds.n_users, ds.n_items))
    W[inner.train["user"], inner.train["item"]] = 1
    rated = {u: set(g["item"]) for u, g in inner.train.groupby("user")}
    print(f"validation: {inner.key}; K in use (simulator.evidence.CF_DIM) = {CF_DIM}")
    for k in args.k:
        V = TruncatedSVD(k, random_state=args.seed).fit(W).components_.T
        rng = np.random.default_rng(args.seed)
        y, s = {"uniform": [], "matched": []}, {"uniform": [], "matched": []}
        for u, g in inner.test.groupby("user"):
            pos = g.loc[g["rating"] >= 4, "item"].to_numpy()[:3]
            if not len(pos):
                continue
            scores = V @ (W[u] @ V)
            for kind in y:
                neg = draw_negatives(rng, rated.get(u, set()) | set(g["item"]), pos, 1, bins, matched=kind == "matched")
                y[kind] += [1] * len(pos) + [0] * len(neg)
                s[kind] += scores[np.concatenate([pos, neg])].tolist()
        print(f"K={k:3d}  AUC uniform {roc_auc_score(y['uniform'], s['uniform']):.4f}  "
              f"popularity-matched {roc_auc_score(y['matched'], s['matched']):.4f}")


if __name__ == "__main__":
    main()
