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
  by the number of sessions per persona: with run variance s2 and user
  variance t2 (users of one persona differing), U users per persona and R
  sessions per user, identical personas give between ~ t2 / U + s2 / (U R),
  so a ratio of order s2 / (t2 / U + s2 / (U R)) <= U R, the sessions per
  persona; larger on average with few personas (between then has few
  degrees of freedom and within / between a long right tail). A raw ratio
  is therefore read against that null, measured at the campaign's design
  (``null`` below).
- ratio = within / between; a persona's row divides its own within by the
  same between.
- null (``null_ratio``): the ratios identical personas would give at this
  design: persona labels permuted across users (a user keeps all its
  sessions, under every recommender variant; the number of users per
  persona is kept); within does not change, between is recomputed. Every
  distinct assignment is enumerated when there are at most ``n_perm``
  (exact), else ``n_perm`` random ones (Monte Carlo). One-sided p-value:
  the share of null ratios <= the observed one (Monte Carlo: (1 + k) /
  (1 + n_perm); exact: k / count, the observed assignment among them).
  Users are the permuted unit because the units of one user (its
  recommender variants) share the user: permuting them apart would shrink
  the null's between and make personas look distinguishable. The pooled
  headline permutes users across user variants too, which on average
  enlarges the null's between (conservative) when the user variants differ.
- ratio CI (``ratio_ci``): percentile bootstrap over users, stratified by
  persona (each persona's users resampled with replacement, a user bringing
  all its units).
- verdict: "personas distinguishable" when p <= alpha, else "not
  distinguishable from identical personas at this design" (with the
  smallest p the design can give when that exceeds alpha), or "undefined".
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

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evals.stats.bootstrap import percentile_interval, stratified_resample_indices

from evals.stats.testing import ALPHA, label_permutations, permutation_p_value
from evals.validity.drift_features import Embed, consistency_by_turn, consistency_trend, feature_blocks, session_features

HEADLINE = ("genres", "ratings", "acceptance")


def _as_matrix(X) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    return X[:, None] if X.ndim == 1 else X


def _total_var(x: np.ndarray) -> float:
    """Trace of the covariance (ddof=1) of rows x [m, d]."""
    return float(np.var(x, axis=0, ddof=1).sum())


def _tiny(scale: float) -> float:
    """Variances at or below this are rounding error next to rows of mean squared norm ``scale``."""
    return 1e-12 * max(1.0, scale)


def _negligible(value: float, X: np.ndarray) -> bool:
    """True for a variance that is rounding error relative to the size of X (e.g. sums of 1/3)."""
    return value <= _tiny(float((X ** 2).sum(axis=1).mean()) if len(X) else 0.0)


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


@dataclass(frozen=True)
class _Design:
    """Per-user sufficient statistics of the ratio: what the null permutes and the bootstrap resamples.

    A block is one user (all its units and sessions); b blocks, ordered by persona; d feature columns.
    """

    group: np.ndarray  # [b] persona index of each block
    sums: np.ndarray  # [b, d] sum of the block's session rows
    counts: np.ndarray  # [b] sessions in the block
    wsum: np.ndarray  # [b] sum of the within variances of the block's units with >= 2 sessions
    wcount: np.ndarray  # [b] number of such units
    scale: float  # mean squared row norm of X (what _negligible compares against)

    @property
    def n_personas(self) -> int:
        return int(self.group.max()) + 1 if len(self.group) else 0


def _design(X, persona, unit, block) -> _Design:
    X, persona, unit = _as_matrix(X), np.asarray(persona), np.asarray(unit)
    block = unit if block is None else np.asarray(block)
    if not (len(X) == len(persona) == len(unit) == len(block)):
        raise ValueError(f"X, persona, unit and block differ in length "
                         f"({len(X)}, {len(persona)}, {len(unit)}, {len(block)})")
    keep = ~np.isnan(X).any(axis=1)
    X, persona, unit, block = X[keep], persona[keep], unit[keep], block[keep]
    for inner, outer, what in ((unit, block, "unit lies in two blocks"),
                               (block, persona, "block lies in two personas")):
        pairs = set(zip(inner.tolist(), outer.tolist()))
        if len(pairs) != len({i for i, _ in pairs}):
            raise ValueError(f"labels not nested: a {what}")
    personas = sorted(set(persona.tolist()))
    blocks = sorted(set(block.tolist()), key=lambda b: (personas.index(persona[block == b][0]), b))
    group, sums, counts, wsum, wcount = [], [], [], [], []
    for b in blocks:
        rows = block == b
        within = [_total_var(X[unit == u]) for u in sorted(set(unit[rows].tolist())) if (unit == u).sum() >= 2]
        group.append(personas.index(persona[rows][0]))
        sums.append(X[rows].sum(0))
        counts.append(rows.sum())
        wsum.append(sum(within))
        wcount.append(len(within))
    scale = float((X ** 2).sum(axis=1).mean()) if len(X) else 0.0
    return _Design(np.array(group, dtype=int), np.array(sums, dtype=float).reshape(len(blocks), X.shape[1]),
                   np.array(counts, dtype=float), np.array(wsum, dtype=float), np.array(wcount, dtype=float), scale)


def _within_between(design: _Design, picks: np.ndarray, labels: np.ndarray):
    """Within and between (each [B]) of B resampled designs: row i takes blocks picks[i] [b] with persona
    indices labels[i] [b]. Within is NaN when no picked unit has two sessions."""
    n_p, (b, d) = design.n_personas, design.sums.shape
    chunk = max(1, 4_000_000 // max(1, b * max(d, n_p)))  # bounds the [chunk, b, d] temporaries
    within, between = [], []
    for start in range(0, len(picks), chunk):
        pk, lb = picks[start:start + chunk], labels[start:start + chunk]
        cell = (np.arange(len(pk))[:, None] * n_p + lb).ravel()  # (resample, persona) of each picked block
        n = np.bincount(cell, weights=design.counts[pk].ravel(), minlength=len(pk) * n_p)
        sums = design.sums[pk].reshape(-1, d)
        means = np.stack([np.bincount(cell, weights=sums[:, j], minlength=len(pk) * n_p) / n for j in range(d)], -1)
        between.append(means.reshape(len(pk), n_p, d).var(axis=1, ddof=1).sum(-1))
        wc = design.wcount[pk].sum(1)
        within.append(np.where(wc > 0, design.wsum[pk].sum(1) / np.maximum(wc, 1), np.nan))
    return np.concatenate(within), np.concatenate(between)


def _ratios(design: _Design, within: np.ndarray, between: np.ndarray) -> np.ndarray:
    """within / between; inf where between is rounding error (identical persona means)."""
    tiny = _tiny(design.scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(between > tiny, within / np.where(between > tiny, between, 1.0), np.inf)


def _observed(design: _Design) -> tuple[float, float] | None:
    """(within, between) of the design as observed; None when the ratio is undefined (variance_ratio's reasons)."""
    if design.n_personas < 2 or design.wcount.sum() == 0:
        return None
    ident = np.arange(len(design.group))[None]
    within, between = _within_between(design, ident, design.group[None])
    return None if between[0] <= _tiny(design.scale) else (float(within[0]), float(between[0]))


def _finite(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def null_ratio(X, persona, unit, *, block=None, n_perm: int = 2000, seed: int | np.random.Generator = 0,
               alpha: float = ALPHA) -> dict | None:
    """The ratio identical personas would give at this design (module docstring, "null").

    X: [n, d] (or [n]) session features; persona, unit: [n] labels; block: [n] labels of the permuted
    users (default: unit), each unit inside one block and each block inside one persona (else ValueError).
    Rows with a NaN are dropped. Returns None when the observed ratio is undefined, else
    {mean, q025, q975 (of the null ratios; mean over the finite ones, a quantile None when infinite),
    p_value (one-sided: null ratios <= observed), min_p (the smallest p this design could give: exact, the
    share of assignments tied at the largest between; Monte Carlo, the share of assignments that only swap
    the labels of equal-sized personas (1 with one user per persona), at least 1 / (1 + n_perm)), n_perm
    (assignments used), exact (all distinct assignments enumerated), detectable_below (the design's smallest
    detectable effect: an observed ratio below it gives p <= ``alpha`` against these null ratios; None when no
    ratio could)}.
    """
    design = _design(X, persona, unit, block)
    observed = _observed(design)
    if observed is None:
        return None
    sizes = np.bincount(design.group).tolist()
    labels, count, exact = label_permutations(design.group, n_perm=n_perm, seed=seed)
    picks = np.broadcast_to(np.arange(len(design.group)), labels.shape)
    _, between = _within_between(design, picks, labels)
    ratios = _ratios(design, np.full(len(between), observed[0]), between)
    # ratio <= observed <=> between >= observed between (within is fixed); compared on between so a design
    # without run noise (within 0, every ratio 0) still orders the assignments
    k = int((between >= observed[1] * (1 - 1e-9)).sum())
    tied_at_max = float((between >= between.max() * (1 - 1e-9)).mean())
    # swapping the labels of equal-sized personas never changes between: that many assignments tie with any one
    relabellings = math.prod(math.factorial(c) for c in np.unique(sizes, return_counts=True)[1].tolist())
    finite = ratios[np.isfinite(ratios)]
    with np.errstate(invalid="ignore"):  # inf - inf between two infinite ratios: NaN, reported as None
        q025, q975 = np.quantile(ratios, [0.025, 0.975])
    # p <= alpha <=> at most m null ratios lie at or below the observed one (exact: k / count, the observed
    # assignment among them; Monte Carlo: (1 + k) / (1 + n_perm)): any ratio below the (m+1)-th smallest passes
    m = math.floor(alpha * count + 1e-9) if exact else math.floor(alpha * (1 + len(ratios)) + 1e-9) - 1
    ordered = np.sort(ratios)
    detectable = _finite(ordered[m]) if 0 <= m < len(ordered) else None
    min_p = tied_at_max if exact else max(relabellings / count, 1 / (1 + n_perm))
    if min_p > alpha:
        detectable = None
    return {"mean": float(finite.mean()) if len(finite) else None, "q025": _finite(q025), "q975": _finite(q975),
            "p_value": permutation_p_value(k, count, n_perm, exact),
            "min_p": min_p, "n_perm": int(len(labels)), "exact": bool(exact), "detectable_below": detectable}


def ratio_ci(X, persona, unit, *, block=None, n_boot: int = 2000, confidence: float = 0.95,
             seed: int | np.random.Generator = 0) -> list[float | None] | None:
    """Percentile bootstrap CI [low, high] of the observed ratio: each persona's blocks (users; default
    the units) resampled with replacement, a block bringing all its sessions. Arguments as null_ratio.
    None when the observed ratio is undefined; a bound is None when infinite (resamples with no between).

    Resampling adds noise to the persona means, so resampled betweens run larger than the observed
    one: when the observed between is near zero (personas nearly identical) the interval can lie below
    the observed ratio. The verdict rests on the null, not on this interval."""
    design = _design(X, persona, unit, block)
    if _observed(design) is None:
        return None
    # blocks are ordered by persona, so column j keeps persona group[j]
    picks = stratified_resample_indices(design.group, n_boot=n_boot, seed=seed)
    within, between = _within_between(design, picks, np.broadcast_to(design.group, picks.shape))
    ratios = _ratios(design, within, between)
    ratios = ratios[~np.isnan(ratios)]
    if not len(ratios):
        return None
    low, high = percentile_interval(ratios, confidence)
    return [_finite(low), _finite(high)]


def _g(v) -> str:
    """Two significant digits, without exponents for numbers >= 10."""
    return "n/a" if v is None else f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}"


def drift_verdict(ratio: float | None, reason: str | None, null: dict | None, ci: list | None,
                  alpha: float = ALPHA) -> str:
    """One line: are personas distinguishable from identical ones at this design (p <= alpha)?"""
    if ratio is None or null is None:
        return f"undefined: {reason or 'no null distribution'}"
    ci_text = f"[{_g(ci[0])}, {_g(ci[1])}]" if ci else "[n/a]"
    null_text = f"{_g(null['mean'])} [{_g(null['q025'])}, {_g(null['q975'])}]"
    if null["p_value"] <= alpha:
        return (f"personas distinguishable: ratio {_g(ratio)} {ci_text} below the identical-persona null "
                f"{null_text} (p={_g(null['p_value'])})")
    text = (f"not distinguishable from identical personas at this design (ratio {_g(ratio)} {ci_text} vs null "
            f"{null_text}, p={_g(null['p_value'])})")
    if null.get("detectable_below") is not None:
        text += f"; this design detects a ratio below {_g(null['detectable_below'])}"
    if null["min_p"] > alpha:
        text += (f"; this design cannot reach p <= {alpha:g} (smallest possible p {_g(null['min_p'])}: too few users "
                 f"and personas to permute)")
    return text


def _against_null(X: np.ndarray, persona, unit, user, headline: dict, *, seed: int, n_perm: int, n_boot: int) -> dict:
    """The headline's null, ratio_ci and verdict (users permuted and resampled, see the module docstring)."""
    null = null_ratio(X, persona, unit, block=user, n_perm=n_perm, seed=np.random.default_rng([seed, 0]))
    ci = ratio_ci(X, persona, unit, block=user, n_boot=n_boot, seed=np.random.default_rng([seed, 1]))
    return {"null": null, "ratio_ci": ci,
            "verdict": drift_verdict(headline["ratio_within_over_between"], headline.get("reason"), null, ci)}


def _report(events: pd.DataFrame, features: pd.DataFrame, *, seed: int, n_perm: int, n_boot: int) -> dict:
    persona = features["persona_id"].to_numpy()
    unit = (features["user_variant"] + "|" + features["variant"] + "|" + features["user_id"]).to_numpy()
    user = (features["user_variant"] + "|" + features["user_id"]).to_numpy()
    blocks = feature_blocks(features)
    by_feature = {}
    for name, X in blocks.items():
        res = variance_ratio(X, persona, unit)
        by_feature[name] = {"ratio": res["ratio_within_over_between"], "icc": icc(X, persona), "within": res["within"],
                            "between": res["between"], "n_sessions": res["n_sessions"], "reason": res.get("reason")}
    X = np.concatenate([blocks[b] for b in HEADLINE], axis=1)
    headline = variance_ratio(X, persona, unit)
    headline.update(_against_null(X, persona, unit, user, headline, seed=seed, n_perm=n_perm, n_boot=n_boot))
    by_turn = consistency_by_turn(events)
    return {**headline, "icc": icc(X, persona),
            "by_feature": by_feature, "consistency_by_turn": by_turn, "consistency_trend": consistency_trend(by_turn),
            "n_personas": int(features["persona_id"].nunique()), "n_sessions_total": int(len(features))}


def drift_report(events: pd.DataFrame, embed: Embed | None = None, *, seed: int = 0, n_perm: int = 2000,
                 n_boot: int = 2000) -> dict:
    """JSON-ready drift report over all sessions, and the same per user variant under ``by_user_variant``
    (e.g. {"layered": {...}, "naive": {...}}) so the two simulated users compare in one place.

    Keys: ratio_within_over_between, icc, within, between, per_persona, by_feature (genres, ratings,
    acceptance[, embeddings]: ratio, icc, within, between), consistency_by_turn, consistency_trend,
    n_sessions (used by the headline), n_sessions_total, n_personas, [reason], by_user_variant, and the
    headline read against its null: null (null_ratio's dict, None when the ratio is undefined), ratio_ci
    ([low, high], 95% bootstrap over users, or None) and verdict (one line, drift_verdict). ``seed``
    seeds the permutations and resamples (n_perm, n_boot of them).
    """
    features = session_features(events, embed)
    opts = dict(seed=seed, n_perm=n_perm, n_boot=n_boot)
    report = _report(events, features, **opts)
    report["by_user_variant"] = {
        uv: _report(events[events["user_variant"] == uv], features[features["user_variant"] == uv], **opts)
        for uv in sorted(features["user_variant"].unique())
    }
    return report
