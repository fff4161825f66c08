"""Recommender speed and accuracy, each a ratio against a baseline measured in the same run.

(a) AMP-CF full-catalog top-10 per user vs MF (target <= K + 1 times);
(b) AMP-CF end to end (no reranker) vs MF + DPP top-10, the second stage it claims to remove;
(c) training time per epoch vs MF;
(d) NDCG@10 on the same leave-last-out split against a real peer: the `implicit`
    library's ALS and BPR, and popularity.

    .venv/bin/python benchmarks/recsys_speed.py [--k 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns otherwise
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from personas.assets import ml100k_dir  # noqa: E402
from recsys import AMPCF, MF, Popularity, Reranker, leave_last_out, load_movielens, slate  # noqa: E402
from recsys.bench import DEFAULT_TRAIN  # noqa: E402
from recsys.metrics import ndcg  # noqa: E402


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--k", type=int, default=4, help="AMP-CF personas")
    a = p.parse_args()
    ds = load_movielens(ml100k_dir())
    split = leave_last_out(ds)
    genres, _ = ds.genre_matrix()
    users = split.test_users
    mf = MF(DEFAULT_TRAIN).fit(split.train)
    amp = AMPCF(DEFAULT_TRAIN, k=a.k).fit(split.train)
    pop = Popularity().fit(split.train)

    t_mf = timed(lambda: mf.recommend(users, 10))
    t_amp = timed(lambda: amp.recommend(users, 10))
    hist = split.train_lists()
    dpp = Reranker("dpp", 0.7)

    def mf_dpp():
        scores = mf.score_all(users)
        emb = mf.item_embeddings()
        return [slate(scores[i], 10, exclude=hist[u], reranker=dpp, genres=genres, embeddings=emb) for i, u in enumerate(users)]

    t_dpp = timed(mf_dpp, repeat=1)
    n = len(users)
    print(f"(a) top-10 over {ds.n_items} items: MF {1000 * t_mf / n:.3f} ms/user, AMP-CF K={a.k} "
          f"{1000 * t_amp / n:.3f} ms/user -> ratio {t_amp / t_mf:.2f} (target <= {a.k + 1})")
    print(f"(b) AMP-CF end to end {1000 * t_amp / n:.3f} ms/user vs MF + DPP {1000 * t_dpp / n:.3f} ms/user "
          f"-> AMP-CF takes {t_amp / t_dpp:.2f}x the time of the two-stage pipeline")
    print(f"(c) training: MF {np.mean(mf.epoch_s):.2f} s/epoch, AMP-CF K={a.k} {np.mean(amp.epoch_s):.2f} s/epoch "
          f"-> ratio {np.mean(amp.epoch_s) / np.mean(mf.epoch_s):.2f}")

    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    rows = [("popularity (ours)", ndcg(pop.recommend(users, 10)[0], split.test_items, 10)),
            ("MF (ours)", ndcg(mf.recommend(users, 10)[0], split.test_items, 10)),
            (f"AMP-CF K={a.k} (ours)", ndcg(amp.recommend(users, 10)[0], split.test_items, 10))]
    for name, model in (("implicit ALS (64 factors)", AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15, random_state=0)),
                        ("implicit ALS (128 factors)", AlternatingLeastSquares(factors=128, regularization=0.05, iterations=15, random_state=0)),
                        ("implicit BPR (64 factors)", BayesianPersonalizedRanking(factors=64, iterations=100, random_state=0))):
        model.fit(split.train, show_progress=False)
        ids, _ = model.recommend(users, split.train[users], N=10, filter_already_liked_items=True)
        rows.append((name, ndcg(ids, split.test_items, 10)))
    best_peer = max(v for name, v in rows if name.startswith("implicit"))
    print(f"(d) NDCG@10, ML-100k leave-last-out, ratings >= 4, full catalog, {n} test users:")
    for name, v in rows:
        print(f"    {name:28s} {v:.4f}  ({v / best_peer:.2f} x best implicit)")


if __name__ == "__main__":
    main()
