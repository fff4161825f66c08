"""Fair validation tuning: every variant gets the same budget, on a split carved from training.

The validation split is leave-second-to-last-out (`data.validation_split`): the test
positives are removed first, so nothing here ever sees a test item. Budget, the same
for every model variant (MF, AMP-CF K = 2, 4, 8, and AMP-CF K = 2, 4, 8 started from the
tuned MF): the same ``trials`` configurations
(the two incumbents -- the old MF and AMP-CF defaults -- and seeded draws from one
grid), each trained for ``max_epochs`` with validation NDCG@10 read after every epoch,
so the epoch count is chosen at no extra cost. Each reranker family (MMR, DPP,
calibration over the tuned MF; mixture calibration over each tuned AMP-CF)
gets the same number of lambdas; its chosen lambda is the most diverse one whose
validation NDCG@10 stays within ``accuracy_budget`` of its model's.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from recsys import metrics
from recsys.bench import AMPCF_BATCH, DEFAULT_TRAIN, BenchConfig, evaluate, make_model
from recsys.data import Dataset, validation_split
from recsys.offline import Variant, bench_variants
from recsys.pipeline import Reranker


@dataclass
class TuneConfig:
    seed: int = 0
    trials: int = 4
    max_epochs: int = 8
    mixture_ks: list[int] = field(default_factory=lambda: [2, 4, 8])
    #: AMP-CF variants whose components start from the tuned MF ('ampcf-kK-mf'); each gets the same budget
    pretrained: list[int] = field(default_factory=lambda: [2, 4, 8])
    #: tune only these model variants (None: all); MF is trained whatever the list, since the rerankers and
    #: the pre-trained variants start from it (its record is then in tune.json too)
    variants: list[str] | None = None
    space: dict[str, list] = field(default_factory=lambda: {"lr": [3e-3, 1e-2, 3e-2], "reg": [1e-3, 1e-2, 3e-2, 1e-1],
                                                            "batch_size": [256, 1024]})
    lams: dict[str, list[float]] = field(default_factory=lambda: {
        "mmr": BenchConfig().mmr, "dpp": BenchConfig().dpp, "calibration": BenchConfig().calibration,
        "mixture": BenchConfig().mixture_cal})
    accuracy_budget: float = 0.05

    def __post_init__(self):
        sizes = {len(v) for v in self.lams.values()}
        if len(sizes) != 1:
            raise ValueError(f"every reranker needs the same number of lambdas (same budget), got {self.lams}")
        if self.trials < 1 or self.max_epochs < 1:
            raise ValueError("trials and max_epochs must be >= 1")
        unknown = sorted(set(self.variants or []) - set(self.all_variants()))
        if unknown:
            raise ValueError(f"unknown variant(s) to tune: {', '.join(unknown)} (expected some of "
                             f"{', '.join(self.all_variants())})")

    def all_variants(self) -> list[str]:
        """The labels of the variants to tune: MF, AMP-CF with each K, and started from MF with each K."""
        return list(self.catalogue())

    def catalogue(self) -> dict[str, Variant]:
        """The variants by label (`recsys.offline.bench_variants`, without popularity)."""
        return {label: v for label, v in bench_variants(self.mixture_ks, self.pretrained).items() if v.kind != "pop"}

    def chosen_variants(self) -> list[str]:
        """MF first (the pre-trained variants start from it), then the rest in `all_variants` order."""
        return ["mf"] + [v for v in self.all_variants()[1:] if self.variants is None or v in self.variants]

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def trial_configs(cfg: TuneConfig) -> list[dict]:
    """The ``trials`` configurations every variant gets: the two incumbents, then seeded grid draws."""
    incumbents = [{"lr": DEFAULT_TRAIN.lr, "reg": DEFAULT_TRAIN.reg, "batch_size": DEFAULT_TRAIN.batch_size},
                  {"lr": DEFAULT_TRAIN.lr, "reg": DEFAULT_TRAIN.reg, "batch_size": AMPCF_BATCH}]
    grid = [dict(zip(cfg.space, vals)) for vals in itertools.product(*cfg.space.values())]
    rest = [g for g in grid if g not in incumbents]
    order = np.random.default_rng(cfg.seed).permutation(len(rest))
    return (incumbents + [rest[i] for i in order])[: cfg.trials]


def tune(ds: Dataset, cfg: TuneConfig | None = None, show_progress: bool = False) -> dict:
    """Tune every variant on the validation split; returns the record (`personasim recsys tune` writes it to
    OUT/tune.json)."""
    import torch

    cfg = cfg or TuneConfig()
    torch.manual_seed(cfg.seed)
    val = validation_split(ds)
    genres, _ = ds.genre_matrix()
    bench = BenchConfig(seed=cfg.seed, mixture_ks=cfg.mixture_ks, tuned={})
    bench.train.seed = cfg.seed
    trials = trial_configs(cfg)
    variants, best_models = {}, {}
    for name in cfg.chosen_variants():
        curve, best = [], (-1.0, None, None, None, None)
        for t, params in enumerate(trials):
            bench.tuned = {"mf": _train_keys(variants.get("mf", {})), name: {**params, "epochs": cfg.max_epochs}}
            model = make_model(cfg.catalogue()[name], bench)

            def on_epoch(epoch, m, t=t):
                nonlocal best
                recs, _ = m.recommend(val.test_users, 10, exclude=val.seen)
                nd = metrics.ndcg(recs, val.test_items, 10)
                curve.append({"trial": t, "epoch": epoch, "ndcg@10": nd})
                if nd > best[0]:
                    best = (nd, t, epoch, copy.deepcopy(m.net.state_dict()), m)

            # a pre-trained variant starts from the tuned MF itself (the MF its `pretrain` config would train)
            start = best_models["mf"] if cfg.catalogue()[name].from_mf else None
            model.fit(val.train, show_progress, on_epoch=on_epoch, start=start)
        nd, t, epoch, state, model = best
        model.net.load_state_dict(state)  # the best trial's model as it was after its best epoch
        model.net.eval()
        best_models[name] = model
        variants[name] = {**trials[t], "epochs": epoch, "val_ndcg@10": nd, "curve": curve}
    lambdas = _tune_lambdas(best_models, val, genres, cfg)
    record = {"split": f"{ds.name}: leave-second-to-last-out validation", "n_val_users": int(len(val.test_users)),
              "tune_config": asdict(cfg), "config_hash": cfg.hash(), "trials": trials, "variants": variants,
              "lambdas": lambdas,
              "tuned": {n: _train_keys(v) for n, v in variants.items()}}
    return record


def _train_keys(variant: dict) -> dict:
    """A tuned variant's training settings (its validation curve and score left out)."""
    return {k: variant[k] for k in ("lr", "reg", "batch_size", "epochs") if k in variant}


def _tune_lambdas(models: dict, val, genres: np.ndarray, cfg: TuneConfig) -> dict:
    """Each reranker family's validation sweep and its chosen lambda (the most diverse within the accuracy budget)."""
    families = [("mf", kind) for kind in ("mmr", "dpp", "calibration") if kind != "calibration" or genres.shape[1]]
    families += [(name, "mixture") for name in models if cfg.catalogue()[name].kind == "ampcf"]
    out = {}
    for base, kind in families:
        plain = evaluate(base, models[base], val, genres, 10)
        sweep = [evaluate(f"{base}+{kind}@{lam}", models[base], val, genres, 10, Reranker(kind, lam)) for lam in cfg.lams[kind]]
        grid = [{"lam": lam, "ndcg@10": r["ndcg@10"], "ild@10": r["ild@10"], "calibration_kl@10": r["calibration_kl@10"]}
                for lam, r in zip(cfg.lams[kind], sweep)]
        ok = [g for g in grid if g["ndcg@10"] >= (1 - cfg.accuracy_budget) * plain["ndcg@10"]]
        chosen = max(ok, key=lambda g: g["ild@10"])["lam"] if ok else None
        out[f"{base}+{kind}"] = {"base_ndcg@10": plain["ndcg@10"], "base_ild@10": plain["ild@10"], "grid": grid,
                                 "chosen": chosen}
    return out
