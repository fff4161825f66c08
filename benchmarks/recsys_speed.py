"""Recommender speed and accuracy, each a ratio against a baseline measured in the same run.

All on ML-100k leave-last-out by time, ratings >= 4 positives, full-catalog
ranking excluding every item the user rated (`Split.seen`), the bench's own
training configs (recsys.bench):

(a) AMP-CF full-catalog top-10 per user vs MF (target <= K + 1 times);
(b) AMP-CF end to end (no reranker) vs MF + DPP top-10, the second stage it claims to remove;
(c) training time per epoch vs MF;
(d) NDCG@10 / Recall@10 against a real peer on the same split: the `implicit`
    library's ALS and BPR (same train matrix, same exclusions), and popularity.

    .venv/bin/python benchmarks/recsys_speed.py [--k 4] [--seed 0] [--threads 2] [--out runs/recsys_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns otherwise

import numpy as np  # noqa: E402

from personas.infra.assets import ml100k_dir  # noqa: E402
from recsys import MF, Popularity, Reranker, leave_last_out, load_movielens  # noqa: E402
from recsys.pipeline import reranked_top_k  # noqa: E402
from recsys.bench import BenchConfig  # noqa: E402
from recsys.offline import Variant, campaign_train_config, train_recommender  # noqa: E402
from recsys.metrics import ndcg, recall  # noqa: E402
from recsys.models import top_k  # noqa: E402


def best_time(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls, seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def implicit_rows(split, seed: int, threads: int) -> list[tuple[str, np.ndarray, float]]:
    """(name, top-10 ids [n_test, 10], fit seconds) for implicit ALS (64, 128 factors) and BPR (64)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    users = split.test_users
    out = []
    for name, model in (
        ("implicit ALS 64", AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15,
                                                    num_threads=threads, random_state=seed)),
        ("implicit ALS 128", AlternatingLeastSquares(factors=128, regularization=0.05, iterations=15,
                                                     num_threads=threads, random_state=seed)),
        ("implicit BPR 64", BayesianPersonalizedRanking(factors=64, iterations=100, num_threads=threads,
                                                        random_state=seed)),
    ):
        t0 = time.perf_counter()
        model.fit(split.train, show_progress=False)
        fit_s = time.perf_counter() - t0
        scores = model.user_factors[users] @ model.item_factors.T  # same exclusions as ours
        scores[split.seen[users].nonzero()] = -np.inf
        out.append((name, top_k(scores, 10)[0], fit_s))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=4, help="AMP-CF mixture components")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch and implicit threads")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    cfg = BenchConfig(seed=a.seed)
    cfg.train.seed = a.seed
    ds = load_movielens(ml100k_dir())
    split = leave_last_out(ds)
    genres, _ = ds.genre_matrix()
    users, n = split.test_users, len(split.test_users)
    pop = Popularity().fit(split.train)
    mf = MF(cfg.train).fit(split.train)
    variant = Variant("ampcf", a.k)
    amp = train_recommender(variant, split.train, campaign_train_config(variant, cfg.train))  # as campaigns do

    t_mf = best_time(lambda: mf.recommend(users, 10, exclude=split.seen))
    t_amp = best_time(lambda: amp.recommend(users, 10, exclude=split.seen))
    seen = split.seen_lists()
    dpp = Reranker("dpp", 0.7, cfg.candidates)

    t_dpp = best_time(lambda: reranked_top_k(mf, users, 10, seen=seen, reranker=dpp, genres=genres), repeat=1)
    ep_mf, ep_amp = float(np.median(mf.epoch_s)), float(np.median(amp.epoch_s))
    ratios = {"topk_ampcf_over_mf": t_amp / t_mf, "ampcf_over_mf_plus_dpp": t_amp / t_dpp,
              "epoch_ampcf_over_mf": ep_amp / ep_mf}
    print(f"ML-100k leave-last-out, ratings >= 4, full catalog minus rated items, {n} test users, "
          f"seed {a.seed}, {a.threads} threads")
    print(f"(a) top-10 over {ds.n_items} items: MF {1000 * t_mf / n:.3f} ms/user, AMP-CF K={a.k} "
          f"{1000 * t_amp / n:.3f} ms/user -> ratio {ratios['topk_ampcf_over_mf']:.2f} (target <= {a.k + 1})")
    print(f"(b) AMP-CF end to end {1000 * t_amp / n:.3f} ms/user vs MF + DPP {1000 * t_dpp / n:.3f} ms/user "
          f"-> ratio {ratios['ampcf_over_mf_plus_dpp']:.2f}")
    print(f"(c) training: MF {ep_mf:.2f} s/epoch, AMP-CF K={a.k} {ep_amp:.2f} s/epoch "
          f"-> ratio {ratios['epoch_ampcf_over_mf']:.2f}")

    liked = split.train[users[0]].indices[:8]
    t_fold = best_time(lambda: amp.fold_in(liked, seed=a.seed))
    print(f"(e) fold-in of a new user from {len(liked)} liked items: AMP-CF K={a.k} {1000 * t_fold:.0f} ms")

    rows = []
    for name, model in (("popularity (ours)", pop), ("MF (ours)", mf), (f"AMP-CF K={a.k} (ours)", amp)):
        ids, _ = model.recommend(users, 10, exclude=split.seen)
        rows.append((name, ids, model.train_s))
    rows += implicit_rows(split, a.seed, a.threads)
    best_peer = max(ndcg(ids, split.test_items, 10) for name, ids, _ in rows if name.startswith("implicit"))
    print("(d) accuracy on the same split:")
    table = []
    for name, ids, fit_s in rows:
        nd, rc = ndcg(ids, split.test_items, 10), recall(ids, split.test_items, 10)
        table.append({"variant": name, "ndcg@10": nd, "recall@10": rc, "train_s": fit_s})
        print(f"    {name:22s} NDCG@10 {nd:.4f}  Recall@10 {rc:.4f}  train {fit_s:6.1f} s  "
              f"({nd / best_peer:.2f} x best implicit)")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"ratios": ratios, "ms_per_user": {"mf": 1000 * t_mf / n, "ampcf": 1000 * t_amp / n,
                                     "mf_dpp": 1000 * t_dpp / n}, "fold_in_ms": 1000 * t_fold, "accuracy": table, "k": a.k, "seed": a.seed,
                                     "config_hash": cfg.hash()}, indent=2))


if __name__ == "__main__":
    main()
