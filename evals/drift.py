"""Drift: is a simulated user's behaviour across repeated runs tighter than the gap between personas?

Definitions (pure functions over the campaign events; no model is needed
unless an ``embed`` callable is passed):

- session: one (user_variant, variant, persona_id, user_id, run); only turns
  with ``ok`` count.
- features of a session (each a block of columns):
  * ``genres``: distribution of the chosen items over the genre vocabulary
    found in all slates (an item's unit weight is split evenly over its
    genres; the vector sums to 1). NaN when nothing was chosen: such a session
    has no genre distribution and leaves the genre block (only).
  * ``ratings``: mean rating given, divided by 5 (so in [0.2, 1]).
  * ``acceptance``: items chosen / items shown (chosen ids not in the slate
    are not counted).
  * ``embeddings`` (only with ``embed``): mean of ``embed(utterances)``.
  The headline (``ratio_within_over_between``, ``icc``, ``per_persona``) uses
  genres + ratings + acceptance concatenated, on sessions where all three are
  defined; embeddings are reported apart (``by_feature``) because their 384
  dimensions would otherwise dominate the sum.
- unit: one simulated user under one recommender variant and user variant,
  observed over its runs.
- within: per unit, the total variance (trace of the covariance, ddof=1) of
  its session rows across runs; averaged over units with >= 2 runs.
- between: the total variance (ddof=1) of the persona means (mean of all the
  persona's session rows) across personas. Run noise enters it too, shrunk
  by the number of sessions per persona, so identical personas give a ratio
  near that number (>= 1), and a ratio near or above 1 is the warning:
  personas are no more distinguishable than one user's run-to-run noise.
- ratio = within / between; a persona's row divides its own within by the
  same between.
- ICC(1) (Shrout & Fleiss 1979, one-way random effects, single measure)
  with personas as groups and sessions as observations:
  (MSB - MSW) / (MSB + (k0 - 1) MSW), where for multivariate rows MSB and MSW
  are summed over dimensions, and k0 = (n - sum n_g^2 / n) / (g - 1) is the
  usual group size for unbalanced groups. It can be negative (groups closer
  than chance).
- consistency per turn: the mean of each consistency score (prompt_to_line,
  line_to_line, qa, reward, ...) over ok turns with that turn index; its
  ``consistency_trend`` is the least-squares slope of those means per turn.

Undefined values are None (never NaN, so the report is strict JSON) with a
``reason``: fewer than two personas (no between), no unit observed over two
runs (no within), zero between-persona variance (ratio undefined).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

KEYS = ["user_variant", "variant", "persona_id", "user_id", "run"]
REQUIRED = KEYS + ["turn", "ok", "slate", "chosen", "ratings", "utterance", "consistency"]
HEADLINE = ("genres", "ratings", "acceptance")

Embed = Callable[[list[str]], np.ndarray]


def _check_columns(events: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in events.columns]
    if missing:
        raise ValueError(f"events: missing column(s) {missing}; expected TurnEvent rows (evals.events.events_frame)")
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


def _as_matrix(X) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    return X[:, None] if X.ndim == 1 else X


def _total_var(x: np.ndarray) -> float:
    """Trace of the covariance (ddof=1) of rows x [m, d]."""
    return float(np.var(x, axis=0, ddof=1).sum())


def _negligible(value: float, X: np.ndarray) -> bool:
    """True for a variance that is rounding error relative to the size of X (e.g. sums of 1/3)."""
    return value <= 1e-12 * max(1.0, float((X ** 2).sum(axis=1).mean()) if len(X) else 0.0)


def variance_ratio(X, persona, unit) -> dict:
    """Within-unit-across-runs over across-persona total variance (module docstring).

    X: [n, d] (or [n]) session features; persona, unit: [n] labels. Rows with
    any NaN are dropped. Returns within, between, ratio_within_over_between
    (None when undefined, then also ``reason``), n_sessions and per_persona
    rows {persona_id, ratio, within, n_users, n_runs} (n_users: units with
    >= 2 runs; n_runs: the most runs of one of them).
    """
    X, persona, unit = _as_matrix(X), np.asarray(persona), np.asarray(unit)
    if not (len(X) == len(persona) == len(unit)):
        raise ValueError(f"variance_ratio: X, persona and unit differ in length ({len(X)}, {len(persona)}, {len(unit)})")
    keep = ~np.isnan(X).any(axis=1)
    X, persona, unit = X[keep], persona[keep], unit[keep]
    personas = sorted(set(persona.tolist()))
    between = _total_var(np.stack([X[persona == p].mean(0) for p in personas])) if len(personas) >= 2 else None
    per_unit = {u: _total_var(X[unit == u]) for u in sorted(set(unit.tolist())) if (unit == u).sum() >= 2}
    within = float(np.mean(list(per_unit.values()))) if per_unit else None
    defined = between is not None and not _negligible(between, X)

    rows = []
    for p in personas:
        units = sorted({u for u in unit[persona == p].tolist() if u in per_unit})
        w = float(np.mean([per_unit[u] for u in units])) if units else None
        rows.append({"persona_id": p, "ratio": w / between if w is not None and defined else None, "within": w,
                     "n_users": len(units), "n_runs": int(max(((unit == u).sum() for u in units), default=0))})
    out = {"ratio_within_over_between": within / between if within is not None and defined else None,
           "within": within, "between": between, "n_sessions": int(len(X)), "per_persona": rows}
    if between is None:
        out["reason"] = "fewer than two personas: no between-persona variance"
    elif within is None:
        out["reason"] = "no user observed over two runs: no within-user variance"
    elif not defined:
        out["reason"] = "personas have identical mean behaviour: between-persona variance is zero"
    return out


def icc(X, groups) -> float | None:
    """ICC(1) of rows X [n, d] (or [n]) grouped by ``groups`` [n] (module docstring).

    Rows with any NaN are dropped. None when fewer than two groups, no group
    has two rows (n <= g), or all rows are equal up to rounding (0 / 0).
    """
    X, groups = _as_matrix(X), np.asarray(groups)
    if len(X) != len(groups):
        raise ValueError(f"icc: X and groups differ in length ({len(X)}, {len(groups)})")
    keep = ~np.isnan(X).any(axis=1)
    X, groups = X[keep], groups[keep]
    labels = sorted(set(groups.tolist()))
    n, g = len(X), len(labels)
    if g < 2 or n <= g:
        return None
    grand = X.mean(0)
    sizes = np.array([(groups == lab).sum() for lab in labels], dtype=float)
    means = np.stack([X[groups == lab].mean(0) for lab in labels])
    msb = float((sizes[:, None] * (means - grand) ** 2).sum()) / (g - 1)
    msw = float(sum(((X[groups == lab] - m) ** 2).sum() for lab, m in zip(labels, means))) / (n - g)
    k0 = (n - (sizes ** 2).sum() / n) / (g - 1)
    denom = msb + (k0 - 1) * msw
    return None if _negligible(denom, X) else float((msb - msw) / denom)


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


def _blocks(features: pd.DataFrame) -> dict[str, np.ndarray]:
    blocks = {"genres": np.stack(features["genres"].to_numpy()),
              "ratings": features["rating"].to_numpy(float)[:, None],
              "acceptance": features["acceptance"].to_numpy(float)[:, None]}
    if "embedding" in features:
        blocks["embeddings"] = np.stack(features["embedding"].to_numpy())
    return blocks


def _report(events: pd.DataFrame, features: pd.DataFrame) -> dict:
    persona = features["persona_id"].to_numpy()
    unit = (features["user_variant"] + "|" + features["variant"] + "|" + features["user_id"]).to_numpy()
    blocks = _blocks(features)
    by_feature = {}
    for name, X in blocks.items():
        res = variance_ratio(X, persona, unit)
        by_feature[name] = {"ratio": res["ratio_within_over_between"], "icc": icc(X, persona), "within": res["within"],
                            "between": res["between"], "n_sessions": res["n_sessions"], "reason": res.get("reason")}
    headline = variance_ratio(np.concatenate([blocks[b] for b in HEADLINE], axis=1), persona, unit)
    by_turn = consistency_by_turn(events)
    return {**headline, "icc": icc(np.concatenate([blocks[b] for b in HEADLINE], axis=1), persona),
            "by_feature": by_feature, "consistency_by_turn": by_turn, "consistency_trend": consistency_trend(by_turn),
            "n_personas": int(features["persona_id"].nunique()), "n_sessions_total": int(len(features))}


def drift_report(events: pd.DataFrame, embed: Embed | None = None) -> dict:
    """JSON-ready drift report over all sessions, and the same per user variant under ``by_user_variant``
    (e.g. {"layered": {...}, "naive": {...}}) so the two simulated users compare in one place.

    Keys: ratio_within_over_between, icc, within, between, per_persona, by_feature (genres, ratings,
    acceptance[, embeddings]: ratio, icc, within, between), consistency_by_turn, consistency_trend,
    n_sessions (used by the headline), n_sessions_total, n_personas, [reason], by_user_variant.
    """
    features = session_features(events, embed)
    report = _report(events, features)
    report["by_user_variant"] = {
        uv: _report(events[events["user_variant"] == uv], features[features["user_variant"] == uv])
        for uv in sorted(features["user_variant"].unique())
    }
    return report
