"""Why does the twin score about 0.03 lower on the test part than on validation? A diagnosis.

The grounded twins are calibrated on the inner split (evidence from the first 64% of each
user's ratings, labels from the next 16%) and reported on the outer test part (evidence from
the first 80%, labels from the last 20%). Uniform 1:1 accuracy is 0.85 on validation and 0.82
on test. Two explanations differ in what they would ask of the calibration:

1. *The level shift*: the weights are fitted on evidence from shorter histories than the ones
   they are applied to. Checked inside the training part alone: fit on the inner split's own
   inner split (one level earlier) against fit on the inner split (the same level), both
   scored on the inner split's rows of other users.
2. *The period*: a user's last ratings are harder to tell from never-rated items, whatever the
   fit. Checked by scoring the test part with weights fitted on the validation period (as
   `personasim calibrate` does) and with weights fitted on the test period of *other* users
   (which the simulator may not do: it is a diagnosis of the ceiling, nothing is chosen from it),
   with the popularity rule beside them and the periods' own statistics.

This script reads the outer test part. It chooses nothing: every default of the simulator is
chosen on validation rows (benchmarks/twin_ceiling.py), recent_pop too, which this diagnosis
sent us looking for. Twins' own histories as memory, every evidence feature
(`simulator.evidence.EVIDENCE`), no LLM feature (its weight is about zero), class-balanced
logistic regression at p = 0.5, as `personasim calibrate` fits.

    .venv/bin/python benchmarks/period_gap.py [--seeds 0 1 2] [--fit-users 300] [--eval-users 300]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from benchmarks.validation_rows import MATCHED, POSITIVE, columns, draw_rows, over_draws, twin_evidence
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens, time_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="draws of the users and rows")
    ap.add_argument("--fit-users", type=int, default=300, help="as `personasim calibrate` fits")
    ap.add_argument("--eval-users", type=int, default=300)
    args = ap.parse_args()
    ds = load_movielens(ml100k_dir())
    outer = time_split(ds, 0.2)
    inner = outer.inner()
    earlier = inner.inner()
    print(period_table(ds, {"first 51%": earlier.train, "51-64%": earlier.test, "64-80% (validation)": inner.test,
                            "80-100% (test)": outer.test}), flush=True)
    # users with test positives at every level, so each row below scores the same people
    liked = [set(s.test.loc[s.test["rating"] >= 4, "user"]) for s in (earlier, inner, outer)]
    candidates = np.array(sorted(set.intersection(*liked)))
    table: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        users = rng.permutation(candidates)
        fit_users, eval_users = users[: args.fit_users], users[args.fit_users: args.fit_users + args.eval_users]

        def rows(split, who, seed_offset):
            r = draw_rows(ds, split, who, np.random.default_rng([seed, seed_offset]))
            return r, twin_evidence(r)

        def logistic(fit):
            R, X = fit
            sc = StandardScaler().fit(X)
            clf = LogisticRegression(max_iter=2000, class_weight="balanced").fit(sc.transform(X), R.kind == POSITIVE)
            return lambda Z: clf.decision_function(sc.transform(Z))

        def add(name: str, scored, score) -> None:
            R, X = scored
            s, at = score(X), np.ones(len(R.item), bool)
            table.setdefault(name, []).append((R.accuracy_uniform(s, at), R.auc(s, at, MATCHED)))

        def popularity(fit):
            R, X = fit
            clf = LogisticRegression(class_weight="balanced").fit(columns(X, ["popularity"]), R.kind == POSITIVE)
            return lambda Z: clf.decision_function(columns(Z, ["popularity"]))

        fit_earlier, fit_inner, fit_outer = (rows(s, fit_users, k) for k, s in enumerate((earlier, inner, outer)))
        eval_inner, eval_outer = rows(inner, eval_users, 10), rows(outer, eval_users, 11)
        add("validation: fitted on validation (as twin_ceiling)", eval_inner, logistic(fit_inner))
        add("validation: fitted one level earlier", eval_inner, logistic(fit_earlier))
        add("test: fitted on validation (as calibrate)", eval_outer, logistic(fit_inner))
        add("test: fitted on others' test period (diagnosis)", eval_outer, logistic(fit_outer))
        add("popularity rule on validation", eval_inner, popularity(fit_inner))
        add("popularity rule on test", eval_outer, popularity(fit_inner))
        print(f"seed {seed}: {len(fit_users)} fitted and {len(eval_users)} scored users of {len(candidates)}",
              flush=True)
    print(f"\nmean [min, max] over {len(args.seeds)} draws")
    print(f"{'':50s} {'accuracy 1:1 uniform':>24s}    {'AUC popularity-matched':>24s}")
    for name, runs in table.items():
        acc, auc = np.array(runs).T
        print(f"{name:50s} {over_draws(acc):>24s}    {over_draws(auc):>24s}")


def period_table(ds, periods: dict) -> str:
    """Each period's ratings: how many, the share >= 4, the mean rating, and of its likes the median
    number of ratings the film has in the whole data set and the share of films from 1997-98."""
    import pandas as pd

    year = pd.to_numeric(ds.items["year"], errors="coerce").to_numpy()
    count = np.bincount(ds.ratings["item"], minlength=ds.n_items)
    lines = [f"{'period of each user':22s} {'ratings':>8s} {'share >= 4':>11s} {'mean':>6s} "
             f"{'likes: median film count':>25s} {'likes: 1997-98 films':>21s}"]
    for name, r in periods.items():
        likes = r.loc[r["rating"] >= 4, "item"].to_numpy()
        lines.append(f"{name:22s} {len(r):8d} {np.mean(r['rating'] >= 4):11.3f} {r['rating'].mean():6.2f} "
                     f"{np.median(count[likes]):25.0f} {np.nanmean(year[likes] >= 1997):21.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
