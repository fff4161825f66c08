"""What drift compares: the features of each session, and consistency per turn (`evals.validity.drift`'s
module docstring defines them: the ``genres``, ``ratings``, ``acceptance`` and ``embeddings`` blocks,
and the per-turn means of the consistency scores with their least-squares trend)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

KEYS = ["user_variant", "variant", "persona_id", "user_id", "run"]
REQUIRED = KEYS + ["turn", "ok", "slate", "chosen", "ratings", "utterance", "consistency"]

Embed = Callable[[list[str]], np.ndarray]


def _check_columns(events: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in events.columns]
    if missing:
        raise ValueError(f"events: missing column(s) {missing}; expected TurnEvent rows (evals.campaign.events.events_frame)")
    if events.empty:
        raise ValueError("events: no rows")


def _session_row(session: pd.DataFrame, index: dict[str, int]) -> dict:
    dist = np.zeros(len(index))
    shown = chosen = 0
    ratings: list[float] = []
    texts: list[str] = []
    for e in session[session["ok"]].itertuples(index=False):
        by_id = {s["id"]: s for s in e.slate}
        shown += len(e.slate)
        ratings += [float(r) for r in e.ratings.values()]
        if e.utterance:
            texts.append(e.utterance)
        for item_id in dict.fromkeys(e.chosen):  # de-duplicated, order kept
            if item_id not in by_id:
                continue
            chosen += 1
            genres = by_id[item_id].get("genres") or []
            for g in genres:
                dist[index[g]] += 1.0 / len(genres)
    total = dist.sum()
    return {
        "genres": dist / total if total > 0 else np.full(len(index), np.nan),
        "rating": float(np.mean(ratings)) / 5.0 if ratings else np.nan,
        "acceptance": chosen / shown if shown else np.nan,
        "texts": texts,
    }


def session_features(events: pd.DataFrame, embed: Embed | None = None) -> pd.DataFrame:
    """One row per session: the KEYS columns plus 'genres' (array [n_genres]), 'rating', 'acceptance'
    and, with ``embed`` (list[str] -> array [n, d]), 'embedding' (array [d]; NaN when the session said nothing)."""
    _check_columns(events)
    vocab = sorted({g for slate in events["slate"] for s in slate for g in (s.get("genres") or [])})
    index = {g: i for i, g in enumerate(vocab)}
    rows = [dict(zip(KEYS, key), **_session_row(session, index))
            for key, session in events.groupby(KEYS, sort=True)]
    frame = pd.DataFrame(rows)
    if embed is not None:
        vecs = [np.asarray(embed(texts), dtype=float).mean(0) if texts else None for texts in frame["texts"]]
        dim = next((len(v) for v in vecs if v is not None), 1)
        frame["embedding"] = [v if v is not None else np.full(dim, np.nan) for v in vecs]
    return frame.drop(columns="texts")


def consistency_by_turn(events: pd.DataFrame) -> dict[str, dict[int, float]]:
    """{score name: {turn index: mean over ok turns}}; None and NaN scores are skipped."""
    ok = events[events["ok"]]
    values: dict[str, dict[int, list[float]]] = {}
    for turn, scores in zip(ok["turn"], ok["consistency"]):
        for name, v in (scores or {}).items():
            if v is not None and np.isfinite(v):
                values.setdefault(name, {}).setdefault(int(turn), []).append(float(v))
    return {name: {t: float(np.mean(v)) for t, v in sorted(per_turn.items())}
            for name, per_turn in sorted(values.items())}


def consistency_trend(by_turn: dict[str, dict[int, float]]) -> dict[str, float | None]:
    """Least-squares slope (score units per turn) of each per-turn mean; None with fewer than two turns."""
    out: dict[str, float | None] = {}
    for name, points in by_turn.items():
        t = np.array(list(points), dtype=float)
        out[name] = float(np.polyfit(t, np.array(list(points.values())), 1)[0]) if len(t) >= 2 else None
    return out


def feature_blocks(features: pd.DataFrame) -> dict[str, np.ndarray]:
    blocks = {"genres": np.stack(features["genres"].to_numpy()),
              "ratings": features["rating"].to_numpy(float)[:, None],
              "acceptance": features["acceptance"].to_numpy(float)[:, None]}
    if "embedding" in features:
        blocks["embeddings"] = np.stack(features["embedding"].to_numpy())
    return blocks
