"""The offline experiment: does AMP-CF give diversity without a reranker, at no accuracy cost?

Trains Pop, MF (softmax and BPR), AMP-CF (K in 1, 2, 4, 8) and MF + each
reranker over a lambda sweep on one leave-last-out split, and scores every
variant with the same metrics. Writes results.json and a Pareto plot.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recsys import metrics
from recsys.data import Dataset, Split, leave_last_out
from recsys.models import AMPCF, MF, Popularity, Recommender, TrainConfig
from recsys.pipeline import Reranker, slate

#: Tuned once on the ML-100k leave-last-out split (README: "Recommender results").
DEFAULT_TRAIN = TrainConfig(dim=64, epochs=6, lr=1e-2, reg=1e-2, batch_size=1024, loss="softmax")


@dataclass
class BenchConfig:
    seed: int = 0
    k: int = 10
    personas: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    tau: float = 0.5
    mmr: list[float] = field(default_factory=lambda: [0.9, 0.7, 0.5])
    dpp: list[float] = field(default_factory=lambda: [0.9, 0.7, 0.5])
    calibration: list[float] = field(default_factory=lambda: [0.3, 0.6, 0.9])
    candidates: int = 100
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**asdict(DEFAULT_TRAIN)))

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def evaluate(name: str, model: Recommender, split: Split, genres: np.ndarray, k: int,
             reranker: Reranker | None = None) -> dict:
    """Score one variant on the split's test users (seen items excluded)."""
    users = split.test_users
    histories = split.train_lists()
    t0 = time.perf_counter()
    if reranker is None:
        recs, _ = model.recommend(users, k)
    else:
        scores = model.score_all(users)
        emb = model.item_embeddings()
        recs = np.stack([slate(scores[i], k, exclude=histories[u], reranker=reranker, genres=genres, embeddings=emb,
                               history=histories[u]) for i, u in enumerate(users)])
    ms = 1000 * (time.perf_counter() - t0) / len(users)
    hist = [histories[u] for u in users]
    return {
        "variant": name,
        "ndcg@10": metrics.ndcg(recs, split.test_items, k),
        "recall@10": metrics.recall(recs, split.test_items, k),
        "mrr@10": metrics.mrr(recs, split.test_items, k),
        "ild@10": metrics.intra_list_diversity(recs, metrics.genre_jaccard_sim(genres)),
        "coverage@10": metrics.coverage(recs, split.n_items),
        "gini@10": metrics.gini(recs, split.n_items),
        "calibration_kl@10": metrics.calibration_kl(recs, hist, genres),
        "persona_coverage@10": metrics.persona_coverage(recs, hist, genres),
        "train_s": round(model.train_s, 2),
        "recommend_ms_per_user": round(ms, 3),
    }


def train_models(split: Split, cfg: BenchConfig, show_progress: bool = True) -> dict[str, Recommender]:
    tc = cfg.train
    models: dict[str, Recommender] = {"pop": Popularity().fit(split.train)}
    models["mf"] = MF(tc).fit(split.train, show_progress)
    models["mf-bpr"] = MF(tc, loss="bpr", epochs=20, lr=5e-3, reg=1e-4).fit(split.train, show_progress)
    for k in cfg.personas:
        models[f"ampcf-k{k}"] = AMPCF(tc, k=k, tau=cfg.tau).fit(split.train, show_progress)
    return models


def run_bench(ds: Dataset, out_dir: str | Path, cfg: BenchConfig | None = None, show_progress: bool = True) -> list[dict]:
    """Train, evaluate and write OUT/results.json + OUT/pareto.png; returns the rows."""
    import torch

    cfg = cfg or BenchConfig()
    cfg.train.seed = cfg.seed
    torch.manual_seed(cfg.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = leave_last_out(ds)
    genres, _ = ds.genre_matrix()
    models = train_models(split, cfg, show_progress)
    rows = [evaluate(name, m, split, genres, cfg.k) for name, m in models.items()]
    for kind, lams in (("mmr", cfg.mmr), ("dpp", cfg.dpp), ("calibration", cfg.calibration)):
        for lam in lams:
            rr = Reranker(kind, lam, cfg.candidates)
            row = evaluate(f"mf+{kind}@{lam}", models["mf"], split, genres, cfg.k, rr)
            rows.append(row)
    for r in rows:
        r.update({"seed": cfg.seed, "config_hash": cfg.hash(), "dataset": ds.name, "n_test_users": int(len(split.test_users))})
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2))
    pareto_plot(rows, out_dir / "pareto.png")
    return rows


def pareto_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        colour = "tab:orange" if r["variant"].startswith("ampcf") else "tab:grey" if r["variant"] == "pop" else "tab:blue"
        ax.scatter(r["ild@10"], r["ndcg@10"], color=colour)
        ax.annotate(r["variant"], (r["ild@10"], r["ndcg@10"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("intra-list diversity @10 (genre Jaccard distance)")
    ax.set_ylabel("NDCG@10 (leave-last-out)")
    ax.set_title("MovieLens-100k: accuracy vs diversity (orange: AMP-CF, blue: MF + reranker)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
