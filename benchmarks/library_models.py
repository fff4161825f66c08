"""The library models (recsys.library) on the bench protocol, beside popularity and our MF.

ML-100k, leave-last-out by time, ratings >= 4 positives, full-catalog ranking excluding every item the user
rated (`Split.seen`), scored by `recsys.offline.evaluate`. Every model is built by name through
`recsys.registry` (MF with `recsys.offline.DEFAULT_TRAIN`). Per model: NDCG@10 (with its standard error over
test users), Recall@10, fit seconds, the ratio to the figure published for implicit run directly on this
split (ALS 0.069, BPR 0.060: `benchmarks/recsys_speed.py`), and fold-in fidelity: for every 10th test user,
the share of their top 20 (training positives excluded) that a fold-in of their training positives recovers.

    .venv/bin/python benchmarks/library_models.py [--seed 0] [--out runs/library_models.json]
"""

from __future__ import annotations

from evals.campaign.runtime import cpu_model, pin_kernels

pin_kernels()  # as the CLI computes, before numpy or torch loads

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from personas.infra.assets import ml100k_dir  # noqa: E402
from recsys.data import leave_last_out, load_movielens  # noqa: E402
from recsys.offline import DEFAULT_TRAIN, evaluate  # noqa: E402
from recsys.registry import Settings, build  # noqa: E402

MODELS = ("pop", "mf", "als", "bpr", "itemknn", "ease")
#: NDCG@10 of implicit run directly on this split (recsys.data's docstring; docs/results/seed_map.md)
PUBLISHED = {"als": 0.069, "bpr": 0.060}


def fold_in_overlap(model, train, users: np.ndarray, k: int = 20) -> float:
    """Mean share of each user's top-k (training positives excluded) that a fold-in of their positives finds."""
    shares = []
    for u in users:
        liked = train[u].indices
        tops = []
        for scores in (model.score_params(model.fold_in(liked)), model.score_all(np.array([u]))[0]):
            scores = np.array(scores, np.float64)
            scores[liked] = -np.inf
            tops.append(set(np.argsort(-scores, kind="stable")[:k].tolist()))
        shares.append(len(tops[0] & tops[1]) / k)
    return float(np.mean(shares))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    a = p.parse_args()
    ds = load_movielens(ml100k_dir())
    split = leave_last_out(ds)
    genres, _ = ds.genre_matrix()
    settings = Settings(train=replace(DEFAULT_TRAIN, seed=a.seed), seed=a.seed)
    print(f"ML-100k leave-last-out, ratings >= 4, full catalog minus rated items, {len(split.test_users)} test "
          f"users, seed {a.seed}, {cpu_model()}")
    print(f"{'model':8s} {'NDCG@10':>16s} {'Recall@10':>9s} {'fit s':>6s} {'x published':>11s} {'fold-in top-20':>14s}")
    rows = []
    for name in MODELS:
        model = build(name, settings).fit(split.train)
        r = evaluate(name, model, split, genres, 10)
        pub = PUBLISHED.get(name)
        row = {"variant": name, "ndcg@10": r["ndcg@10"], "ndcg@10_se": r["ndcg@10_se"], "recall@10": r["recall@10"],
               "train_s": round(float(model.train_s), 2), "published_ndcg@10": pub,
               "ratio_to_published": r["ndcg@10"] / pub if pub else None,
               "fold_in_top20_overlap": fold_in_overlap(model, split.train, split.test_users[::10])}
        rows.append(row)
        ratio = f"{row['ratio_to_published']:.2f}" if pub else "-"
        print(f"{name:8s} {row['ndcg@10']:.4f} ± {row['ndcg@10_se']:.4f} {row['recall@10']:9.4f} "
              f"{row['train_s']:6.2f} {ratio:>11s} {row['fold_in_top20_overlap']:14.3f}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"seed": a.seed, "protocol": "ml-100k leave-last-out, ratings >= 4, "
                                     "full catalog minus rated items", "machine": cpu_model(),
                                     "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
