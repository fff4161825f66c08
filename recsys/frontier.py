"""Accuracy-diversity frontiers: is a variant on or beyond what a reranker sweep reaches?

A frontier is the upper Pareto envelope of (diversity, NDCG@10) points, both
"higher is better" (pass -KL for calibration KL), joined by straight lines
and extended flat at both ends (a reranker more diverse than its last point
would cost more accuracy, so the flat end is generous to the frontier). A
variant's *margin* is its NDCG@10 minus the frontier's at its diversity:
>= 0 means on or beyond the frontier.
"""

from __future__ import annotations

import numpy as np

#: The families that make the "MF + best reranker" frontier.
RERANK_FAMILIES = ("mmr", "dpp", "calibration")
#: (metric, sign): diversity axes, each turned into "higher is better".
AXES = {"ild": ("ild@10", 1.0), "kl": ("calibration_kl@10", -1.0)}


def envelope(xs, ys) -> tuple[np.ndarray, np.ndarray]:
    """The upper Pareto envelope of points (x, y), both maximised: (x ascending, y descending)."""
    pts = sorted(zip(np.asarray(xs, float), np.asarray(ys, float)), key=lambda p: (-p[0], -p[1]))
    keep, best = [], -np.inf
    for x, y in pts:  # from the most diverse down: keep a point only if it is more accurate than all more diverse ones
        if np.isfinite(x) and np.isfinite(y) and y > best:
            keep.append((x, y))
            best = y
    keep.reverse()
    return np.array([p[0] for p in keep]), np.array([p[1] for p in keep])


def margin(frontier_x, frontier_y, x: float, y: float) -> float:
    """y minus the frontier's y at x (linear between envelope points, flat beyond them); NaN if undefined."""
    fx, fy = envelope(frontier_x, frontier_y)
    if not len(fx) or not (np.isfinite(x) and np.isfinite(y)):
        return float("nan")
    return float(y - np.interp(x, fx, fy))


def frontier_rows(rows: list[dict], base: str = "mf", families=RERANK_FAMILIES) -> list[dict]:
    """The base model's row and its reranked rows of the given families, read from the rows' fields ``model`` and
    ``reranker`` (`recsys.bench`), never from their labels."""
    return [r for r in rows if r["model"] == base and (r["reranker"] is None or r["reranker"] in families)]


def margins(rows: list[dict], axis: str = "ild", base: str = "mf", families=RERANK_FAMILIES) -> dict[str, float]:
    """Margin of every mixture variant (a row with ``mixture_k`` > 1, plain or mixture-calibrated) against the
    frontier of ``base`` + ``families`` on ``axis`` ('ild' or 'kl'), keyed by the rows' labels (chosen by their
    fields)."""
    col, sign = AXES[axis]
    front = frontier_rows(rows, base, families)
    fx = [sign * r[col] for r in front]
    fy = [r["ndcg@10"] for r in front]
    return {r["variant"]: margin(fx, fy, sign * r[col], r["ndcg@10"]) for r in rows
            if (r.get("mixture_k") or 1) > 1 and r["reranker"] in (None, "mixture")}
