"""Drift: is a simulated user's behaviour across repeated runs tighter than the gap between personas?

Definitions (features are per session = one (variant, user, run)):
- features: genre distribution of the chosen items (each item's weight spread
  over its genres, normalised), mean rating given / 5, acceptance rate (chosen /
  shown), and optionally the mean utterance embedding (``embed``).
- within: for each unit (a simulated user under one recommender variant,
  observed over its runs), the total variance (trace of the covariance,
  ddof=1) of its session features across runs; averaged over units.
- between: the total variance (ddof=1) of the persona means across personas.
- ratio = within / between. Near or above 1: a persona is no more
  recognisable than one user's run-to-run noise (the seed's warning).
- ICC(1) (Shrout & Fleiss 1979, one-way random effects) with personas as
  groups and sessions as observations; multivariate features use mean squares
  summed over dimensions; unbalanced groups use the adjusted group size k0.
Undefined cases return None with a ``reason``: one persona (no between), no
unit with two runs (no within).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

KEYS = ["user_variant", "variant", "persona_id", "user_id", "run"]
CONSISTENCY = ("prompt_to_line", "line_to_line", "qa")


def session_features(events: pd.DataFrame, embed: Callable[[list[str]], np.ndarray] | None = None) -> pd.DataFrame:
    """One row per session: KEYS plus feature blocks 'genres' (array), 'rating', 'acceptance', 'embedding'."""
    vocab = sorted({g for slate in events["slate"] for s in slate for g in s.get("genres", [])})
    index = {g: i for i, g in enumerate(vocab)}
    rows = []
    for key, session in events.groupby(KEYS, sort=True):
        ok = session[session["ok"]]
        dist = np.zeros(len(vocab))
        shown = chosen = 0
        ratings, texts = [], []
        for e in ok.itertuples(index=False):
            by_id = {s["id"]: s for s in e.slate}
            shown += len(e.slate)
            chosen += len(e.chosen)
            ratings += list(e.ratings.values())
            if e.utterance:
                texts.append(e.utterance)
            for i in e.chosen:
                gs = by_id.get(i, {}).get("genres", [])
                for g in gs:
                    dist[index[g]] += 1.0 / len(gs)
        row = dict(zip(KEYS, key))
        row.update(genres=dist / dist.sum() if dist.sum() else dist, rating=np.mean(ratings) / 5 if ratings else np.nan,
                   acceptance=chosen / shown if shown else np.nan, texts=texts)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if embed is not None and len(frame):
        dim = None
        vecs = []
        for texts in frame["texts"]:
            if texts:
                v = np.asarray(embed(texts), dtype=float).mean(0)
                dim = len(v)
                vecs.append(v)
            else:
                vecs.append(None)
        frame["embedding"] = [v if v is not None else np.full(dim or 1, np.nan) for v in vecs]
    return frame.drop(columns="texts")


def _total_var(x: np.ndarray) -> float:
    return float(np.var(x, axis=0, ddof=1).sum())


def variance_ratio(X: np.ndarray, persona: np.ndarray, unit: np.ndarray) -> dict:
    """within / between as defined in the module docstring; per-persona rows included."""
    X, persona, unit = np.asarray(X, float), np.asarray(persona), np.asarray(unit)
    if X.ndim == 1:
        X = X[:, None]
    keep = ~np.isnan(X).any(1)
    X, persona, unit = X[keep], persona[keep], unit[keep]
    personas = sorted(set(persona))
    means = np.stack([X[persona == p].mean(0) for p in personas]) if personas else np.zeros((0, X.shape[1]))
    between = _total_var(means) if len(personas) >= 2 else None
    per_unit = {u: _total_var(X[unit == u]) for u in sorted(set(unit)) if (unit == u).sum() >= 2}
    within = float(np.mean(list(per_unit.values()))) if per_unit else None
    rows = []
    for p in personas:
        units = sorted({u for u, q in zip(unit, persona) if q == p and u in per_unit})
        w = float(np.mean([per_unit[u] for u in units])) if units else None
        rows.append({"persona_id": p, "within": w, "n_users": len(units),
                     "n_runs": int(max(((unit == u).sum() for u in units), default=0)),
                     "ratio": w / between if w is not None and between else None})
    out = {"within": within, "between": between, "per_persona": rows,
           "ratio_within_over_between": within / between if within is not None and between else None}
    if between is None:
        out["reason"] = "fewer than two personas: no between-persona variance"
    elif within is None:
        out["reason"] = "no user observed over two runs: no within-user variance"
    return out


def icc(X: np.ndarray, groups: np.ndarray) -> float | None:
    """ICC(1) with groups = personas; multivariate X sums mean squares over dimensions."""
    X, groups = np.asarray(X, float), np.asarray(groups)
    if X.ndim == 1:
        X = X[:, None]
    keep = ~np.isnan(X).any(1)
    X, groups = X[keep], groups[keep]
    labels = sorted(set(groups))
    n, g = len(X), len(labels)
    if g < 2 or n <= g:
        return None
    grand = X.mean(0)
    sizes = np.array([(groups == lab).sum() for lab in labels])
    means = np.stack([X[groups == lab].mean(0) for lab in labels])
    ssb = float((sizes[:, None] * (means - grand) ** 2).sum())
    ssw = float(sum(((X[groups == lab] - m) ** 2).sum() for lab, m in zip(labels, means)))
    msb, msw = ssb / (g - 1), ssw / (n - g)
    k0 = (n - (sizes ** 2).sum() / n) / (g - 1)
    denom = msb + (k0 - 1) * msw
    return float((msb - msw) / denom) if denom > 0 else None


def _blocks(features: pd.DataFrame) -> dict[str, np.ndarray]:
    blocks = {"genres": np.stack(features["genres"].to_numpy()) if len(features) else np.zeros((0, 0)),
              "ratings": features["rating"].to_numpy(float)[:, None],
              "acceptance": features["acceptance"].to_numpy(float)[:, None]}
    if "embedding" in features:
        blocks["embeddings"] = np.stack(features["embedding"].to_numpy())
    return blocks


def consistency_by_turn(events: pd.DataFrame) -> dict[str, dict[int, float]]:
    ok = events[events["ok"]]
    out: dict[str, dict[int, float]] = {}
    for metric in CONSISTENCY:
        per_turn = {}
        for t, part in ok.groupby("turn"):
            vals = [c.get(metric) for c in part["consistency"] if c.get(metric) is not None]
            if vals:
                per_turn[int(t)] = float(np.mean(vals))
        if per_turn:
            out[metric] = per_turn
    return out


def _report(events: pd.DataFrame, features: pd.DataFrame) -> dict:
    persona = features["persona_id"].to_numpy()
    unit = (features["user_variant"] + "|" + features["variant"] + "|" + features["user_id"]).to_numpy()
    blocks = _blocks(features)
    by_feature = {}
    for name, X in blocks.items():
        res = variance_ratio(X, persona, unit)
        by_feature[name] = {"ratio": res["ratio_within_over_between"], "icc": icc(X, persona)}
    combined = np.concatenate([blocks["genres"], blocks["ratings"], blocks["acceptance"]], axis=1)
    overall = variance_ratio(combined, persona, unit)
    return {**overall, "icc": icc(combined, persona), "by_feature": by_feature,
            "consistency_by_turn": consistency_by_turn(events), "n_sessions": int(len(features))}


def drift_report(events: pd.DataFrame, embed: Callable[[list[str]], np.ndarray] | None = None) -> dict:
    """Pooled drift report plus the same per user variant (layered vs naive) under ``by_user_variant``."""
    features = session_features(events, embed)
    report = _report(events, features)
    report["by_user_variant"] = {
        uv: _report(events[events["user_variant"] == uv], features[features["user_variant"] == uv])
        for uv in sorted(features["user_variant"].unique())
    }
    return report
