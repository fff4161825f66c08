"""The offline experiment: does AMP-CF give diversity without a reranker, at no accuracy cost?

Trains Pop, MF (softmax and BPR), AMP-CF (K in 1, 2, 4, 8), MF + each reranker
over a lambda sweep, and AMP-CF + mixture calibration (`rerank.mixture_allocate`)
over the same number of lambdas, on one leave-last-out split, and scores every
variant with the same metrics. Writes results.json and a Pareto plot through the caller's
``write`` (evals passes `personas.infra.files.write_whole`: recsys imports nothing of ours).

Hyper-parameters come from `TUNED`: chosen on a validation split carved from the
training part (leave-second-to-last-out) by `recsys.tune` with the same budget for
every variant; the test split is never looked at to choose them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from recsys import frontier, metrics
from recsys.data import Dataset, Split, leave_last_out
from recsys.factorised import AMPCF, MF
from recsys.models import Popularity, Recommender, TrainConfig
from recsys.offline import (AMPCF_BATCH, DEFAULT_TRAIN, LIST_METRICS, Variant, evaluate,  # noqa: F401 (re-exported)
                            make_recommender)
from recsys.pipeline import Reranker

#: Per-variant overrides of DEFAULT_TRAIN chosen on the validation split by `personasim recsys tune --seed 0`
#: (4 configurations x 8 epochs for every variant; recsys/README.md, "Validation tuning"); a variant missing
#: here trains with DEFAULT_TRAIN. Validation NDCG@10: MF 0.0985, K=2 0.0960, K=4 0.0929, K=8 0.0934.
TUNED: dict[str, dict] = {
    "mf": {"lr": 1e-2, "reg": 3e-2, "batch_size": 256, "epochs": 7},
    "ampcf-k2": {"lr": 1e-2, "reg": 3e-2, "batch_size": 256, "epochs": 7},
    "ampcf-k4": {"lr": 1e-2, "reg": 1e-2, "batch_size": 256, "epochs": 5},
    "ampcf-k8": {"lr": 1e-2, "reg": 3e-2, "batch_size": 1024, "epochs": 7},
    # started from the tuned MF; the same budget, `personasim recsys tune --variants ampcf-k2-mf,ampcf-k4-mf,
    # ampcf-k8-mf` (TuneConfig hash 12258d6533d1; MF re-tuned in that run: the same 0.0985 and lambdas).
    # Validation NDCG@10: K=2 0.1012, K=4 0.0998, K=8 0.1001.
    "ampcf-k2-mf": {"lr": 1e-2, "reg": 3e-2, "batch_size": 256, "epochs": 7},
    "ampcf-k4-mf": {"lr": 1e-2, "reg": 3e-2, "batch_size": 256, "epochs": 3},
    "ampcf-k8-mf": {"lr": 1e-2, "reg": 3e-2, "batch_size": 256, "epochs": 7},
}
#: Each reranker family's lambda chosen on validation by the same run: the most diverse lambda whose validation
#: NDCG@10 stays within 5% of its model's (the bench still sweeps the whole grid, so frontiers can be drawn).
TUNED_LAMBDAS: dict[str, float] = {"mf+mmr": 0.7, "mf+dpp": 0.7, "mf+calibration": 0.1, "ampcf-k2+mixture": 0.3,
                                   "ampcf-k4+mixture": 0.3, "ampcf-k8+mixture": 0.2, "ampcf-k2-mf+mixture": 0.6,
                                   "ampcf-k4-mf+mixture": 0.9, "ampcf-k8-mf+mixture": 0.1}

#: How recsys writes an output file: ``write(path, data)``, data being text, bytes or a function that writes the
#: temporary path it is given. evals passes `personas.infra.files.write_whole` (the file whole or not at all).
Write = Callable[[Path, str | bytes | Callable[[Path], None]], object]


@dataclass
class BenchConfig:
    seed: int = 0
    k: int = 10
    #: the K (mixture components) of each AMP-CF the bench trains; K = 1 is MF
    mixture_ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    #: AMP-CF variants whose components start from the bench's MF ('ampcf-kK-mf', `AMPCF._start_from_mf`). Default:
    #: K = 2 only, the best of the three on validation (recsys/README.md); all three took `--seed 0` to 213 s,
    #: past the 3-minute target. `recsys bench --pretrained 2,4,8` runs all three.
    pretrained: list[int] = field(default_factory=lambda: [2])
    tau: float = 0.5
    att_dim: int = 16
    peak_reg: float = 0.0
    spread_reg: float = 0.0
    ampcf_batch: int = AMPCF_BATCH
    #: the validation grids of `recsys.tune` (five lambdas for every family: the same budget)
    mmr: list[float] = field(default_factory=lambda: [0.95, 0.9, 0.8, 0.7, 0.5])
    dpp: list[float] = field(default_factory=lambda: [0.95, 0.9, 0.8, 0.7, 0.5])
    calibration: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.6, 0.9])
    #: mixture calibration (the 'mixture' reranker) over each AMP-CF with K > 1
    mixture_cal: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.6, 0.9])
    candidates: int = 100
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**asdict(DEFAULT_TRAIN)))
    #: more recommenders by registry name (`recsys.registry`: 'als', 'ease', 'pkg.module:factory', a service URL),
    #: trained on the same split with DEFAULT_TRAIN and scored as every other row
    models: list[str] = field(default_factory=list)
    #: per-variant TrainConfig overrides ('mf', 'ampcf-k4', ...); the seed always comes from ``seed``
    tuned: dict[str, dict] = field(default_factory=lambda: {k: dict(v) for k, v in TUNED.items()})

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def train_models(split: Split, cfg: BenchConfig, show_progress: bool = True, catalog=None) -> dict[str, Recommender]:
    """The bench's own variants, then ``cfg.models`` through the registry (``catalog``: `recsys.contract.Catalog`
    for the models that ask)."""
    from recsys.registry import Settings, train

    tc = cfg.train
    models: dict[str, Recommender] = {"pop": Popularity().fit(split.train)}
    models["mf"] = make_model(Variant("mf"), cfg).fit(split.train, show_progress)
    models["mf-bpr"] = MF(tc, loss="bpr", epochs=20, lr=5e-3, reg=1e-4).fit(split.train, show_progress)
    if 1 in cfg.mixture_ks:  # K = 1 is MF: MF's tuned config, so it must give MF's scores
        models["ampcf-k1"] = AMPCF(_tuned(cfg, "mf"), k=1).fit(split.train, show_progress)
    for k in [k for k in cfg.mixture_ks if k > 1]:
        models[Variant("ampcf", k).label] = make_model(Variant("ampcf", k), cfg).fit(split.train, show_progress)
    for k in cfg.pretrained:  # started from the MF above: the one its pretrain config trains, so it is reused
        model = make_model(Variant("ampcf", k, from_mf=True), cfg).fit(split.train, show_progress, start=models["mf"])
        model.train_s += models["mf"].train_s  # the pre-training is part of its cost
        models[model.name] = model
    for name in cfg.models:
        if name in models:
            raise ValueError(f"--models: {name!r} is already one of the bench's variants")
        models[name] = train(name, Settings(replace(tc), seed=cfg.seed), split.train, catalog=catalog,
                             show_progress=show_progress)
    return models


def _tuned(cfg: "BenchConfig", name: str) -> TrainConfig:
    """``cfg.train`` with the variant's tuned overrides (AMP-CF: its own batch size unless tuned)."""
    base = cfg.train if name == "mf" else replace(cfg.train, batch_size=cfg.ampcf_batch)
    return replace(base, **{k: v for k, v in cfg.tuned.get(name, {}).items() if k != "seed"})


def make_model(variant: Variant, cfg: "BenchConfig") -> MF | AMPCF:
    """An untrained MF or AMP-CF ``variant`` with the bench's settings, tuned under its label."""
    pretrain = _tuned(cfg, "mf") if variant.from_mf else None
    return make_recommender(variant, _tuned(cfg, variant.label), pretrain=pretrain, **_attention(cfg))


def _attention(cfg: "BenchConfig") -> dict:
    return {"tau": cfg.tau, "att_dim": cfg.att_dim, "peak_reg": cfg.peak_reg, "spread_reg": cfg.spread_reg}


def run_bench(ds: Dataset, out_dir: str | Path, cfg: BenchConfig | None = None, show_progress: bool = True, *,
              write: Write) -> list[dict]:
    """Train, evaluate and ``write`` OUT/results.json + OUT/pareto.png; returns the rows."""
    import torch

    cfg = cfg or BenchConfig()
    cfg.train.seed = cfg.seed
    torch.manual_seed(cfg.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from recsys.contract import Catalog

    split = leave_last_out(ds)
    genres, _ = ds.genre_matrix()
    models = train_models(split, cfg, show_progress, Catalog.of(ds.items))
    rows = [{**evaluate(name, m, split, genres, cfg.k), **row_fields(name, m)} for name, m in models.items()]
    rows += rerank_rows(models, split, genres, cfg)
    mf_per_user = rows[[r["variant"] for r in rows].index("mf")]["_per_user_ndcg"]
    for r in rows:
        # paired bootstrap over test users: this variant's NDCG@10 minus MF's, 95% interval
        diff, lo, hi = metrics.paired_bootstrap_ci(r.pop("_per_user_ndcg"), mf_per_user, seed=cfg.seed)
        r.update({"ndcg@10_minus_mf": diff, "ndcg@10_minus_mf_ci95": [lo, hi],
                  "lambda_tuned": r["lambda"] is not None and
                  TUNED_LAMBDAS.get(f"{r['model']}+{r['reranker']}") == r["lambda"],
                  "seed": cfg.seed, "config_hash": cfg.hash(), "dataset": ds.name, "n_test_users": int(len(split.test_users))})
    write(out_dir / "results.json", json.dumps(rows, indent=2))
    write(out_dir / "pareto.png", lambda tmp: pareto_plot(rows, tmp))
    return rows


def rerank_rows(models: dict[str, Recommender], split: Split, genres: np.ndarray, cfg: BenchConfig) -> list[dict]:
    """MF + each reranker over its lambdas, then each AMP-CF (K > 1) + mixture calibration."""
    sweeps = [("mf", "mmr", cfg.mmr), ("mf", "dpp", cfg.dpp),
              ("mf", "calibration", cfg.calibration if genres.shape[1] else [])]  # calibration needs genres
    sweeps += [(name, "mixture", cfg.mixture_cal) for name, m in models.items() if isinstance(m, AMPCF) and m.k > 1]
    return [{**evaluate(f"{base}+{kind}@{lam}", models[base], split, genres, cfg.k,
                        Reranker(kind, lam, cfg.candidates)), **row_fields(base, models[base], kind, lam)}
            for base, kind, lams in sweeps for lam in lams]


def row_fields(model_label: str, model: Recommender, reranker: str | None = None, lam: float | None = None) -> dict:
    """What a result row is, as fields (never parsed back out of its label): the model's label, its mixture
    components (AMP-CF only, else None), the reranker family and its lambda (None without a reranker)."""
    return {"model": model_label, "mixture_k": model.k if isinstance(model, AMPCF) else None,
            "reranker": reranker, "lambda": None if lam is None else float(lam)}


#: Columns summarised across seeds by `run_seeds`.
SUMMARY_COLS = ["ndcg@10", *[c for c, m in LIST_METRICS.items() if m.summarised], "ndcg@10_minus_mf", "train_s",
                "recommend_ms_per_user"]


def run_seeds(ds: Dataset, out_dir: str | Path, cfg: BenchConfig, seeds: list[int],
              show_progress: bool = True, *, write: Write) -> list[dict]:
    """`run_bench` once per seed into OUT/seed-S/, then OUT/summary.json: one row per variant with the
    mean and sample standard deviation of each metric over seeds, and how many seeds beat MF.

    One seed is not enough to rank AMP-CF against MF on ML-100k: training order and initialisation
    move its NDCG@10 by about as much as the gap (README: "Results")."""
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"run_seeds needs at least two distinct seeds, got {seeds}")
    out_dir = Path(out_dir)
    per_seed = [run_bench(ds, out_dir / f"seed-{s}", replace(cfg, seed=s, train=replace(cfg.train)), show_progress,
                          write=write) for s in seeds]
    base = replace(cfg, seed=-1, train=replace(cfg.train, seed=-1)).hash()  # the configuration bar its seed
    summary = []
    for i, first in enumerate(per_seed[0]):
        rows = [rs[i] for rs in per_seed]
        row = {"variant": first["variant"], **{f: first[f] for f in ("model", "mixture_k", "reranker", "lambda")},
               "n_seeds": len(seeds), "seeds": seeds,
               "config_hash": base, "dataset": first["dataset"], "n_test_users": first["n_test_users"]}
        for col in SUMMARY_COLS:
            vals = np.array([r[col] for r in rows], dtype=float)
            row[col] = float(vals.mean())
            row[f"{col}_sd"] = float(vals.std(ddof=1))
        row["seeds_above_mf"] = int(sum(r["ndcg@10_minus_mf"] > 0 for r in rows))
        row["ndcg@10_minus_mf_ci95"] = list(t_interval([r["ndcg@10_minus_mf"] for r in rows]))
        summary.append(row)
    write(out_dir / "summary.json", json.dumps(summary, indent=2))
    write(out_dir / "frontier.json", json.dumps(frontier_summary(per_seed), indent=2))
    write(out_dir / "pareto.png", lambda tmp: pareto_plot(summary, tmp))
    return summary


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of paired per-seed differences [S]."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    half = stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan
    return float(v.mean() - half), float(v.mean() + half)


def frontier_summary(per_seed: list[list[dict]]) -> dict:
    """Per mixture variant, its NDCG@10 margin over the MF + MMR frontier and the MF + best-reranker frontier,
    on ILD@10 and on calibration KL@10: mean over seeds, the per-seed values and a paired t interval."""
    out: dict = {}
    for label, families in (("mf+mmr", ("mmr",)), ("mf+best", frontier.RERANK_FAMILIES)):
        for axis in frontier.AXES:
            per = [frontier.margins(rows, axis, families=families) for rows in per_seed]
            out[f"{label}:{axis}"] = {v: {"margin": float(np.mean([p[v] for p in per])),
                                          "per_seed": [p[v] for p in per],
                                          "ci95": list(t_interval([p[v] for p in per]))} for v in per[0]}
    return out


def pareto_plot(rows: list[dict], path) -> None:
    """NDCG@10 against ILD@10 per variant, as a PNG. ``path``: a file path (any suffix) or a binary file object."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        colour = "tab:orange" if r.get("mixture_k") else "tab:grey" if r["model"] == "pop" else "tab:blue"
        if "ndcg@10_sd" in r:  # a multi-seed summary: mean with one standard deviation each way
            ax.errorbar(r["ild@10"], r["ndcg@10"], xerr=r["ild@10_sd"], yerr=r["ndcg@10_sd"], color=colour, fmt="o",
                        ms=4, lw=0.8)
        else:
            ax.scatter(r["ild@10"], r["ndcg@10"], color=colour)
        ax.annotate(r["variant"], (r["ild@10"], r["ndcg@10"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("intra-list diversity @10 (genre Jaccard distance; embedding cosine without genres)")
    ax.set_ylabel("NDCG@10 (leave-last-out)")
    ax.set_title(f"{rows[0].get('dataset', '')}: accuracy vs diversity (orange: AMP-CF, blue: MF + reranker)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
