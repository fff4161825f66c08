"""How far can the twin's evidence go on the fidelity benchmark's uniform 1:1 test? Validation only.

Issue 10 asks for per-user accuracy >= 0.85 against uniformly drawn never-rated items at
1:1. This asks what the grounded twin's evidence (the `simulator.evidence` features;
the LLM's feature is left out: its calibrated weight is about zero) can reach on the
validation rows (benchmarks/validation_rows.py; the test part is never read), fitted on
``--fit-users`` users and scored on ``--eval-users`` others, for several draws of the rows:

- ``decision at p = 0.5``: the simulator's rule (class-balanced logistic regression on the
  standardised features, positives against both kinds of negatives, as `personasim calibrate` fits);
- ``without recent_pop``: the same rule without recent_pop and its product with popularity (the
  evidence before they joined);
- ``item evidence only``: the same rule on the seven item features alone, without n_rated,
  recent_pop and their products (the evidence before either joined);
- ``+ like rate``: the rule with one more user-level feature, the user's share of training ratings
  >= 4 (a generous rater might need a lower threshold); not in the simulator;
- ``+ time``: the rule with two more item features, log(1 + the item's training ratings in the 30
  days up to the user's last training rating) and log(1 + the film's age in 1998) (what was being
  watched, and how new a film was, when the user was last active); not in the simulator;
- ``+ next``: the rule with one more item feature, log(1e-4 + the mean over the user's ``NEXT_RECENT``
  latest inner-train items i of P(j | i)), P(j | i) the share of the times another user rated something
  within ``NEXT_WINDOW`` ratings after i (in time order, inner train only) where that was j: what people
  went on to rate after the films this user rated last. Not in the simulator;
- ``best threshold (oracle)``: the one global threshold that is best *on the scored users
  themselves*: an upper bound for any recalibration of the intercept, not a usable rule;
- ``fitted on uniform only``: the same model fitted on uniform negatives alone, a simulator
  tuned to this one test, with what it costs on the popularity-matched test;
- ``gradient boosting``: scikit-learn's HistGradientBoostingClassifier in place of the logistic
  regression (another model form, same rows);
- ``per-user threshold``: each user likes what scores above its own q-th percentile of 300
  catalog items outside its training history (users differ in how much evidence they carry, so
  one threshold on the logit suits some more than others). q is chosen on the fitted users for
  the best balanced accuracy against both kinds of negatives, as the calibration is
  class-balanced. Usable: it reads the user's training history and no label;
- ``told the ratio``: each user accepts the top half of its own slate. Not our rule (a real
  person is not told how many items they will like); printed because it is the ceiling of
  ranking quality alone.

    .venv/bin/python benchmarks/twin_ceiling.py [--seeds 0 1 2] [--fit-users 300] [--eval-users 300]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from benchmarks.validation_rows import (MATCHED, POSITIVE, UNIFORM, columns, over_draws, twin_evidence,
                                            twin_memories, validation_rows)
    from simulator.evidence import EVIDENCE, ITEM_EVIDENCE, RECENT_POP, evidence_features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="draws of the validation rows and users")
    ap.add_argument("--fit-users", type=int, default=300, help="as `personasim calibrate` fits")
    ap.add_argument("--eval-users", type=int, default=300)
    args = ap.parse_args()
    table: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        rows = validation_rows(args.fit_users + args.eval_users, seed)
        X = twin_evidence(rows)
        fit, ev = rows.user < args.fit_users, rows.user >= args.fit_users
        y = rows.kind == POSITIVE

        def logistic(train: np.ndarray, X: np.ndarray = X):
            """The logit of the logistic fit on rows ``train``, as a function of evidence features [M, F]."""
            sc = StandardScaler().fit(X[train])
            clf = LogisticRegression(max_iter=2000, class_weight="balanced").fit(sc.transform(X[train]), y[train])
            return lambda Z: clf.decision_function(sc.transform(Z))

        def add(name: str, accuracy: float, s: np.ndarray) -> None:
            table.setdefault(name, []).append((accuracy, rows.auc(s, ev, MATCHED)))

        score = logistic(fit)
        s = score(X)
        add("decision at p = 0.5", rows.accuracy_uniform(s, ev), s)
        for name, Z in (("without recent_pop", columns(X, [f for f in EVIDENCE if RECENT_POP not in f])),
                        ("item evidence only", columns(X, ITEM_EVIDENCE)),
                        ("+ like rate", np.column_stack([X, like_rate(rows)])),
                        ("+ time", np.column_stack([X, time_features(rows)])),
                        ("+ next", np.column_stack([X, next_feature(rows)]))):
            s_z = logistic(fit, Z)(Z)
            add(name, rows.accuracy_uniform(s_z, ev), s_z)
        uni = ev & (rows.kind != MATCHED)
        grid = np.quantile(s[uni], np.linspace(0.02, 0.98, 97))
        add("best threshold (oracle)", max(rows.accuracy_uniform(s, ev, t) for t in grid), s)
        s_u = logistic(fit & (rows.kind != MATCHED))(X)
        add("fitted on uniform only", rows.accuracy_uniform(s_u, ev), s_u)
        hgb = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, class_weight="balanced",
                                             random_state=seed).fit(X[fit], y[fit])
        s_h = hgb.predict_proba(X)[:, 1] - 0.5
        add("gradient boosting", rows.accuracy_uniform(s_h, ev), s_h)
        rng = np.random.default_rng(seed + 100)
        reference = {}  # user -> scores of catalog items outside its training history
        for n, memory in twin_memories(rows).items():
            outside = np.flatnonzero(memory.watched == 0)
            pick = rng.choice(outside, size=min(300, len(outside)), replace=False)
            reference[n] = score(evidence_features(rows.space, memory, pick))

        def per_user(q: float) -> np.ndarray:
            return s - np.array([np.quantile(reference[n], q) for n in rows.user])

        def balanced(z: np.ndarray, at: np.ndarray) -> float:
            """Mean over users among ``at`` of the balanced accuracy of ``z > 0``."""
            return float(np.mean([0.5 * ((z[m & y] > 0).mean() + (z[m & ~y] <= 0).mean())
                                  for m in (at & (rows.user == n) for n in np.unique(rows.user[at]))]))

        q = max(np.linspace(0.5, 0.99, 50), key=lambda q: balanced(per_user(q), fit))
        s_q = per_user(q)
        add("per-user threshold", rows.accuracy_uniform(s_q, ev), s_q)
        top_half = np.mean([np.mean((s[m] >= np.median(s[m])) == y[m]) for m in rows.uniform_by_user(ev)])
        add("told the ratio (not our rule)", float(top_half), s)
        print(f"seed {seed}: {int(fit.sum())} fit rows, {int(uni.sum())} scored uniform rows, "
              f"AUC uniform {rows.auc(s, ev, UNIFORM):.4f}, per-user percentile q = {q:.2f}", flush=True)
    print(f"\nvalidation: {rows.split.key}; fit on {args.fit_users} users, scored on {args.eval_users} others; "
          f"mean [min, max] over {len(args.seeds)} draws")
    print(f"{'':32s} {'accuracy 1:1 uniform':>24s}    {'AUC popularity-matched':>24s}")
    for name, runs in table.items():
        acc, auc = np.array(runs).T
        print(f"{name:32s} {over_draws(acc):>24s}    {over_draws(auc):>24s}")


def like_rate(rows) -> np.ndarray:
    """[R] each row's user's share of inner-train ratings that are likes (>= LIKED_MIN)."""
    from evals.validity.grounding import LIKED_MIN

    tr = rows.split.train
    return (tr["rating"] >= LIKED_MIN).groupby(tr["user"]).mean().reindex(rows.users[rows.user]).to_numpy()


def time_features(rows, days: float = 30.0) -> np.ndarray:
    """[R, 2] log(1 + the row item's inner-train ratings in the ``days`` up to its user's last inner-train
    rating), log(1 + 1998 - the film's release year; the median year when unknown)."""
    tr = rows.split.train
    last = tr.groupby("user")["timestamp"].max().reindex(rows.users[rows.user]).to_numpy()
    times = {i: g.to_numpy() for i, g in tr.groupby("item")["timestamp"]}
    none = np.zeros(0)
    recent = np.array([np.sum((ts <= t) & (ts > t - days * 86400))
                       for ts, t in ((times.get(i, none), t) for i, t in zip(rows.item, last))])
    year = np.array([float(y) if str(y).strip().isdigit() else np.nan for y in rows.ds.items["year"]])
    year = np.where(np.isnan(year), np.nanmedian(year), year)
    return np.column_stack([np.log1p(recent), np.log1p(np.maximum(1998 - year[rows.item], 0))])


NEXT_WINDOW, NEXT_RECENT = 20, 20


def next_feature(rows) -> np.ndarray:
    """[R] log(1e-4 + mean over the row user's NEXT_RECENT latest inner-train items i of P(row item | i)),
    P(j | i): among the ratings made within NEXT_WINDOW ratings after a rating of i by the same user
    (inner train, time order), the share that were of j."""
    tr = rows.split.train.sort_values(["user", "timestamp"], kind="stable")
    n = rows.ds.n_items
    T = np.zeros((n, n), dtype=np.float32)
    latest = {}
    for u, g in tr.groupby("user"):
        seq = g["item"].to_numpy()
        for k in range(1, NEXT_WINDOW + 1):
            np.add.at(T, (seq[:-k], seq[k:]), 1.0)
        latest[u] = seq[-NEXT_RECENT:]
    P = T / (T.sum(1, keepdims=True) + 1)
    none = np.zeros(0, dtype=int)
    mean = [P[latest.get(rows.users[u], none), j].mean() if len(latest.get(rows.users[u], none)) else 0.0
            for u, j in zip(rows.user, rows.item)]
    return np.log(1e-4 + np.asarray(mean))


if __name__ == "__main__":
    main()
