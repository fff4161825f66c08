"""A world generator with controlled taste structure, in the same `Dataset` form as ML-100k.

Items sit in ``n_clusters`` planted tastes: item i of taste c has latent vector
x_i = separation * mu_c + eps_i (mu_c a random unit vector in ``dim`` dims,
eps_i ~ N(0, I / dim), so the within-taste spread is about 1 and
``separation`` is the between / within ratio). A user mixes 1..``tastes``
planted tastes (uniform count, Dirichlet(2) weights, each taste vector
mu_c + a small personal offset); their positives are ``per_user`` distinct
items drawn from (1 - noise) * sum_k w_k p_k + noise * uniform, with
p_k(i) proportional to pop_i * exp(sharpness * <v_k, x_i>) and pop_i a Zipf
law of exponent ``pop_skew`` over a random item order. Every positive has
rating 5 and a random timestamp, so leave-last-out holds out a random
positive; an item's genre is its planted taste, so ILD, calibration KL and
taste coverage mean the same thing as on MovieLens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from recsys.data import Dataset, _index

#: The knobs a map may sweep (the other fields are sizes, fixed per map).
KNOBS = ("tastes", "separation", "dim", "pop_skew", "noise")


class KnobError(ValueError):
    """An unknown knob or a knob value out of range."""


@dataclass
class WorldConfig:
    tastes: int = 2            # each user mixes 1..tastes planted tastes
    separation: float = 2.0    # taste centroid norm / within-taste spread
    dim: int = 8               # latent dimension of the world
    pop_skew: float = 0.8      # Zipf exponent of item popularity (0: uniform)
    noise: float = 0.1         # share of a user's positives drawn uniformly from the catalog
    n_clusters: int = 16
    n_users: int = 300
    n_items: int = 480
    per_user: int = 30
    sharpness: float = 3.0
    seed: int = 0

    def __post_init__(self):
        checks = {"tastes": 1 <= self.tastes <= self.n_clusters, "separation": self.separation >= 0,
                  "dim": self.dim >= 1, "pop_skew": self.pop_skew >= 0, "noise": 0 <= self.noise < 1,
                  "per_user": 3 <= self.per_user < self.n_items, "n_clusters": 1 <= self.n_clusters <= self.n_items}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise KnobError(f"world knob {bad[0]}={getattr(self, bad[0])!r} is out of range")

    @classmethod
    def with_knobs(cls, base: "WorldConfig | None" = None, **knobs) -> "WorldConfig":
        """``base`` with knobs replaced; an unknown name raises KnobError naming it and the known ones."""
        names = {f.name for f in fields(cls)}
        unknown = [k for k in knobs if k not in names]
        if unknown:
            raise KnobError(f"unknown knob {unknown[0]!r}; knobs are {', '.join(KNOBS)}")
        return cls(**{**asdict(base or cls()), **knobs})


def generate(cfg: WorldConfig) -> Dataset:
    """One seeded world as a `Dataset` (ratings all 5, random timestamps, genres = planted tastes)."""
    rng = np.random.default_rng(cfg.seed)
    mu = rng.normal(size=(cfg.n_clusters, cfg.dim))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    cluster = rng.permutation(np.arange(cfg.n_items) % cfg.n_clusters)
    x = cfg.separation * mu[cluster] + rng.normal(scale=1 / np.sqrt(cfg.dim), size=(cfg.n_items, cfg.dim))
    log_pop = -cfg.pop_skew * np.log(1.0 + rng.permutation(cfg.n_items))
    rows_u, rows_i, user_tastes = [], [], []
    for u in range(cfg.n_users):
        m = int(rng.integers(1, cfg.tastes + 1))
        chosen = rng.choice(cfg.n_clusters, m, replace=False)
        w = rng.dirichlet(np.full(m, 2.0))
        v = mu[chosen] + rng.normal(scale=0.3 / np.sqrt(cfg.dim), size=(m, cfg.dim))
        logits = cfg.sharpness * (v @ x.T) + log_pop  # [m, N]
        p = np.exp(logits - logits.max(1, keepdims=True))
        p = (w[:, None] * p / p.sum(1, keepdims=True)).sum(0)
        p = (1 - cfg.noise) * p + cfg.noise / cfg.n_items
        items = rng.choice(cfg.n_items, cfg.per_user, replace=False, p=p / p.sum())
        rows_u += [u] * cfg.per_user
        rows_i += list(items)
        user_tastes.append(sorted(int(c) for c in chosen))
    ratings = pd.DataFrame({"user_id": [str(u) for u in rows_u], "item_id": [f"i{i}" for i in rows_i],
                            "rating": 5.0, "timestamp": rng.permutation(len(rows_u)).astype(float)})
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(cfg.n_items)], "title": [f"item {i}" for i in range(cfg.n_items)],
                          "year": "", "genres": [[f"taste{c}"] for c in cluster]})
    users = pd.DataFrame({"user_id": [str(u) for u in range(cfg.n_users)], "tastes": [" ".join(map(str, t)) for t in user_tastes]})
    return _index(ratings, items, users, f"world({', '.join(f'{k}={getattr(cfg, k)}' for k in KNOBS)}, seed={cfg.seed})")
