"""Does the grounded users' ``ease`` evidence feature earn its place, and with which penalty? Validation only.

Validation rows only (benchmarks/validation_rows.py: the calibration's inner split; the
outer test part, on which `personasim validate fidelity` reports, is never touched);
twins' own training histories as memory; no LLM feature.
The twin like-model (class-balanced logistic regression on the standardised
features) is fitted on the first ``--fit-users`` users and scored on the next
``--eval-users``: per-user accuracy against the uniform negatives (the fidelity
benchmark's headline test, decision at p = 0.5) and AUC against the matched ones.

    .venv/bin/python benchmarks/ease_feature.py [--lambdas 100 250 500 1000 3000] [--seed 0]

simulator.evidence.EASE_LAMBDA is the penalty with the best sum of the two.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from benchmarks.validation_rows import MATCHED, POSITIVE, twin_evidence, validation_rows
    from simulator.evidence import EASE_LAMBDA, ITEM_EVIDENCE, ease_weights

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[100, 250, 500, 1000, 3000])
    ap.add_argument("--fit-users", type=int, default=150)
    ap.add_argument("--eval-users", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = validation_rows(args.fit_users + args.eval_users, args.seed)
    W = rows.watched()
    fit, ev = rows.user < args.fit_users, rows.user >= args.fit_users

    def features(lam: float | None) -> np.ndarray:
        """The seven item features (the choice was made before n_rated joined them), without ease for None."""
        if lam is None:
            return twin_evidence(rows, [f for f in ITEM_EVIDENCE if f != "ease"])
        rows.space.ease = ease_weights(W, lam)
        return twin_evidence(rows, ITEM_EVIDENCE)

    def score(X: np.ndarray) -> tuple[float, float]:
        sc = StandardScaler().fit(X[fit])
        clf = LogisticRegression(max_iter=2000, class_weight="balanced").fit(sc.transform(X[fit]),
                                                                              rows.kind[fit] == POSITIVE)
        s = clf.decision_function(sc.transform(X))
        return rows.accuracy_uniform(s, ev), rows.auc(s, ev, MATCHED)

    print(f"validation: {rows.split.key}; fit on {args.fit_users} users, scored on {args.eval_users} others; "
          f"lambda in use (simulator.evidence.EASE_LAMBDA) = {EASE_LAMBDA:g}")
    acc, auc = score(features(None))
    print(f"without ease        accuracy 1:1 uniform {acc:.4f}  AUC popularity-matched {auc:.4f}")
    for lam in args.lambdas:
        a, b = score(features(lam))
        print(f"with ease, l={lam:<6g} accuracy 1:1 uniform {a:.4f} ({a - acc:+.4f})  AUC popularity-matched {b:.4f} "
              f"({b - auc:+.4f})")


if __name__ == "__main__":
    main()
