"""Does the grounded users' ``ease`` evidence feature earn its place, and with which penalty? Validation only.

The calibration's inner split (the outer training part split again by the same
per-user time rule, `recsys.TimeSplit.inner`) is the only data read: the outer
test part, on which `personasim validate fidelity` reports, is never touched.
Rows are built as `personasim calibrate` builds them (up to 3 validation
positives per user, each against one never-rated item drawn uniformly and one
popularity-matched; twins' own training histories as memory; no LLM feature).
The twin like-model (class-balanced logistic regression on the standardised
features) is fitted on the first ``--fit-users`` users and scored on the next
``--eval-users``: per-user accuracy against the uniform negatives (the fidelity
benchmark's headline test, decision at p = 0.5) and AUC against the matched ones.

    .venv/bin/python benchmarks/ease_feature.py [--lambdas 100 250 500 1000 3000] [--seed 0]

simulator.evidence.EASE_LAMBDA is the penalty with the best sum of the two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from evals.calibration import draw_negatives, pop_bins
    from evals.grounding import LIKED_MIN, item_space, memories
    from personas.assets import ml100k_dir
    from recsys import load_movielens, time_split
    from simulator.evidence import EASE_LAMBDA, EVIDENCE, ease_weights, evidence_features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[100, 250, 500, 1000, 3000])
    ap.add_argument("--fit-users", type=int, default=150)
    ap.add_argument("--eval-users", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_movielens(ml100k_dir())
    inner = time_split(ds, 0.2).inner()
    space = item_space(ds, inner.train)
    uid = ds.users["user_id"].astype(str).to_numpy()
    mems = memories(ds, inner.train, {u: "all" for u in uid}, space)  # twins only: one persona holds everyone
    W = np.zeros((ds.n_users, ds.n_items))
    W[inner.train["user"], inner.train["item"]] = 1
    bins = pop_bins(space)
    rng = np.random.default_rng(args.seed)
    rated = {u: set(g["item"]) for u, g in inner.train.groupby("user")}
    users = rng.permutation(sorted(inner.test["user"].unique()))[: args.fit_users + args.eval_users]
    rows = []  # (user position, kind: 1 positive / 0 uniform / 2 matched, item)
    for n, u in enumerate(users):
        g = inner.test[inner.test["user"] == u]
        pos = rng.permutation(g.loc[g["rating"] >= LIKED_MIN, "item"].to_numpy().copy())[:3]
        if not len(pos):
            continue
        seen = rated.get(u, set()) | set(g["item"])
        for kind, items in ((1, pos), (0, draw_negatives(rng, seen, pos, 1, bins, matched=False)),
                            (2, draw_negatives(rng, seen, pos, 1, bins, matched=True))):
            rows += [(n, kind, int(i)) for i in items]
    pos_of, kind, item = (np.array(c) for c in zip(*rows))
    fit, ev = pos_of < args.fit_users, pos_of >= args.fit_users

    def features(lam: float | None) -> np.ndarray:
        if lam is not None:
            space.ease = ease_weights(W, lam)
        X = np.zeros((len(rows), len(EVIDENCE)))
        for n in np.unique(pos_of):
            at = pos_of == n
            X[at] = evidence_features(space, mems[f"twin:{uid[users[n]]}"], item[at])
        return X if lam is not None else X[:, [EVIDENCE.index(f) for f in EVIDENCE if f != "ease"]]

    def score(X: np.ndarray) -> tuple[float, float]:
        sc = StandardScaler().fit(X[fit])
        clf = LogisticRegression(max_iter=2000, class_weight="balanced").fit(sc.transform(X[fit]), kind[fit] == 1)
        s = clf.decision_function(sc.transform(X))
        uni = ev & (kind != 2)
        acc = np.mean([((s[uni & (pos_of == n)] > 0) == (kind[uni & (pos_of == n)] == 1)).mean()
                       for n in np.unique(pos_of[uni])])
        mat = ev & (kind != 0)
        return float(acc), float(roc_auc_score(kind[mat] == 1, s[mat]))

    print(f"validation: {inner.key}; fit on {args.fit_users} users, scored on {args.eval_users} others; "
          f"lambda in use (simulator.evidence.EASE_LAMBDA) = {EASE_LAMBDA:g}")
    acc, auc = score(features(None))
    print(f"without ease        accuracy 1:1 uniform {acc:.4f}  AUC popularity-matched {auc:.4f}")
    for lam in args.lambdas:
        a, b = score(features(lam))
        print(f"with ease, l={lam:<6g} accuracy 1:1 uniform {a:.4f} ({a - acc:+.4f})  AUC popularity-matched {b:.4f} "
              f"({b - auc:+.4f})")


if __name__ == "__main__":
    main()
