"""Are the personas really distinct? Metrics over unit-norm vectors (n, d) and labels (n,).

* ``silhouette``: cosine silhouette (sampled, see cluster.silhouette); 1 = tight and apart.
* ``between_within_ratio``: mean Euclidean distance between pairs of centroids divided
  by the mean distance of a point to its own centroid. < 1: personas overlap.
* ``pc1_variance_share``: share of the centroids' variance (centred, unweighted) on
  their first principal component. With K >= 3, a share above ``COLLAPSE_PC1_SHARE``
  (0.6) means the personas differ along one axis only (e.g. only sentiment): a
  "collapse toward one mode" and ``collapse_alarm`` is true. With K = 2 the share is
  1 by construction, so the alarm then uses the ratio alone.
* ``collapse_alarm``: pc1 rule above (K >= 3) or ``between_within_ratio`` < ``COLLAPSE_RATIO`` (0.5).
* ``confusion``: for each pair (a, b), the nearest-centroid confusion rate expected when
  each persona's members are modelled as a Gaussian along the axis joining the two
  centroids: 0.5 * (P_a(past the midpoint) + P_b(past the midpoint)). On the clustered
  data itself the empirical rate is 0 for k-means by construction (every point is
  nearest its own centroid), so the Gaussian tail is the informative estimate.
  Two 1-D unit-variance Gaussians at distance 2 give Phi(-1) = 0.159.
"""

from __future__ import annotations

from math import erf, sqrt

import numpy as np

COLLAPSE_PC1_SHARE = 0.6
COLLAPSE_RATIO = 0.5


def centroids(vectors: np.ndarray, labels: np.ndarray) -> tuple[list[int], np.ndarray]:
    """(sorted cluster ids, (k, d) mean vectors); label -1 (noise) ignored."""
    ids = sorted(int(c) for c in set(labels.tolist()) if c >= 0)
    return ids, np.stack([vectors[labels == c].mean(axis=0) for c in ids])


def between_within_ratio(vectors: np.ndarray, labels: np.ndarray) -> float:
    ids, cents = centroids(vectors, labels)
    if len(ids) < 2:
        return float("nan")
    diff = cents[:, None, :] - cents[None, :, :]
    dist = np.sqrt((diff ** 2).sum(-1))
    between = dist[np.triu_indices(len(ids), 1)].mean()
    mask = labels >= 0
    index = {c: i for i, c in enumerate(ids)}
    own = cents[[index[int(c)] for c in labels[mask]]]
    within = np.linalg.norm(vectors[mask] - own, axis=1).mean()
    return float(between / within) if within > 0 else float("inf")


def pc1_variance_share(cents: np.ndarray) -> float:
    if len(cents) < 2:
        return float("nan")
    centred = cents - cents.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False) ** 2
    return float(s[0] / s.sum()) if s.sum() > 0 else 1.0


def _upper_tail(z: float) -> float:
    return 0.5 * (1.0 - erf(z / sqrt(2.0)))


def pair_confusion(xa: np.ndarray, xb: np.ndarray, ca: np.ndarray, cb: np.ndarray) -> float:
    """Gaussian-model nearest-centroid confusion of two groups (see module doc)."""
    axis = cb - ca
    length = float(np.linalg.norm(axis))
    if length == 0:
        return 0.5
    axis = axis / length
    mid = length / 2.0
    pa, pb = (xa - ca) @ axis, (xb - ca) @ axis
    tails = []
    for proj, toward_b in ((pa, True), (pb, False)):
        mu, sd = float(proj.mean()), float(proj.std())
        if sd == 0:
            tails.append(float((proj > mid).mean() if toward_b else (proj < mid).mean()))
        else:
            tails.append(_upper_tail((mid - mu) / sd) if toward_b else _upper_tail((mu - mid) / sd))
    return 0.5 * (tails[0] + tails[1])


def separability_report(vectors: np.ndarray, labels: np.ndarray, seed: int = 0,
                        persona_ids: dict[int, str] | None = None) -> dict:
    """All metrics as a JSON-ready dict (pairs keyed by persona id)."""
    from personas.cluster import silhouette

    ids, cents = centroids(vectors, labels)
    names = persona_ids or {c: f"p{c}" for c in ids}
    ratio = between_within_ratio(vectors, labels)
    pc1 = pc1_variance_share(cents)
    confusion = []
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            rate = pair_confusion(vectors[labels == ids[i]], vectors[labels == ids[j]], cents[i], cents[j])
            confusion.append({"a": names[ids[i]], "b": names[ids[j]], "confusion": round(rate, 6)})
    alarm = bool((len(ids) >= 3 and pc1 > COLLAPSE_PC1_SHARE) or ratio < COLLAPSE_RATIO)
    return {
        "k": len(ids),
        "silhouette": round(silhouette(vectors, labels, seed), 6),
        "between_within_ratio": round(ratio, 6),
        "pc1_variance_share": round(pc1, 6),
        "collapse_alarm": alarm,
        "collapse_rule": f"K>=3 and pc1_variance_share > {COLLAPSE_PC1_SHARE}, or between_within_ratio < "
                         f"{COLLAPSE_RATIO}",
        "sizes": {names[c]: int((labels == c).sum()) for c in ids},
        "noise": int((labels < 0).sum()),
        "confusion": confusion,
        "max_confusion": max((c["confusion"] for c in confusion), default=0.0),
    }


def format_table(report: dict) -> str:
    """A plain-text table of the report (for the CLI)."""
    lines = ["separability", "-" * 44]
    for key in ("k", "n_documents", "n_chunks", "n_duplicates", "silhouette", "between_within_ratio",
                "pc1_variance_share", "max_confusion", "collapse_alarm"):
        if key in report:
            lines.append(f"{key:<24}{report[key]}")
    if report.get("k_curve"):
        lines.append("k_curve (silhouette)    " + "  ".join(f"{p['k']}:{p['silhouette']:.3f}" for p in report["k_curve"]))
    if report.get("sizes"):
        lines.append("sizes                   " + "  ".join(f"{k}:{v}" for k, v in report["sizes"].items()))
    worst = sorted(report.get("confusion", []), key=lambda c: -c["confusion"])[:5]
    if worst:
        lines.append("most confusable pairs")
        lines += [f"  {c['a']} vs {c['b']:<12}{c['confusion']:.3f}" for c in worst]
    return "\n".join(lines)
