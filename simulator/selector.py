"""A grounded user's choice as calibrated probabilities, sampled (recsim_ng's affinities and selector).

MovieLens records what people rated, not what they were shown, so no single fitted probability is "the
chance that this person takes this item". Each part of the choice is calibrated on what the data do
record instead:

- **take given shown**: ``P(take j) = sigmoid(a_j + level)``. The affinity ``a_j`` is the fitted like
  logit (`ChoiceModel.like_logit` plus the context shift): it ranks items, but it was fitted
  class-balanced, so its level means nothing. The no-choice ``level`` gives it one: it is fitted
  (`fit_level`) so that the expected takes of a recommender's top-k equal that recommender's real
  hit rate@k, the share of its top-k items the user went on to rate in the held-out period
  (consumption, the observable counterpart of taking). It is fitted on some recommenders on the
  validation part and checked on others.
- **like given watched**: ``P(like j | taken) = sigmoid(c + w . z_j)``, a logistic regression of
  "rated >= 4" on the same standardised features over *rated* items, unweighted, so its mean is the real
  like share. `reliability` measures it on held-out rated items (ECE and the diagram's rows).
- **rating**: a distribution over 1..5, an ordered probit around the expected rating ``mu_j`` with the
  fit's residual sd and cutpoints ``cuts`` (1.5 .. 4.5, or the 'matched' rule's fitted ones): its mean
  gives the rating error, its samples the histogram. A taken item's rating is drawn within the liked
  (>= 4) or the not-liked (<= 3) part, so a like and its rating agree.

- **the person's own level**: people differ in how generous they are beyond what the evidence features
  see (a fitted model regresses each user towards the mean: its users' like rates spread less than real
  users' do). Each simulated person draws one level ``z ~ N(0, 1)`` (`person_level`, seeded by its
  profile, so its runs share it as a real person's sittings do). It moves the like-given-watched logit by
  ``like_spread * z`` (a random intercept; the fitted coefficients are the population-averaged ones, so
  they are scaled up by ``sqrt(1 + 0.346 like_spread^2)`` to keep the population's probabilities where
  they were fitted: Zeger, Liang & Albert 1988) and the expected rating by ``rating_spread * z``.
  `fit_person_spread` fits both on the validation part: the spread over users of each user's like rate,
  then of each user's mean rating, on their rated items, simulated against real. An implicit log records
  neither; its person's level moves the take instead (``take_spread``, `fit_take_spread`: the spread over
  users of how many of a recommender's top-k they went on to take).

A run draws every part from a generator seeded per session and turn (`simulator.grounded`), so its
run-to-run variation is the model's own uncertainty, of measured size. The deterministic decision
(each probability > 0.5; the expected rating rounded) stays for debugging.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import norm

from simulator.layers import stable_digest

#: Cutpoints of the 'expected' rule: the expected rating rounded to the nearest of 1..5.
ROUNDING_CUTS = (1.5, 2.5, 3.5, 4.5)
#: A rating at or above this is a like.
LIKED_MIN = 4


def take_probability(affinity: np.ndarray, level: float, spread: float = 0.0, person: float = 0.0) -> np.ndarray:
    """P(take) [M] of items with affinities [M] at the no-choice ``level``; on an implicit log, for the person at
    ``person`` under its own level of sd ``spread`` (`take_logit`)."""
    return expit(take_logit(affinity, level, spread, person))


def fit_level(affinities: list[np.ndarray], hits: np.ndarray, *, bounds: tuple[float, float] = (-30.0, 30.0)) -> float:
    """The level at which the mean expected takes of users' top-k equal their mean real hits.

    affinities: one array [k_u] per (user, recommender) row, the affinities of that recommender's top-k;
    hits: [n_rows] how many of those k items the user rated in the period the fit reads."""
    hits = np.asarray(hits, dtype=float)
    if len(affinities) != len(hits) or not len(hits):
        raise ValueError(f"fit_level: {len(affinities)} affinity rows and {len(hits)} hit counts")
    flat = np.concatenate([np.asarray(a, dtype=float) for a in affinities])
    target = float(hits.sum())
    if not 0 < target < len(flat):
        raise ValueError(f"fit_level: {target:g} hits out of {len(flat)} shown items leave no level to fit")
    return float(brentq(lambda c: float(expit(flat + c).sum()) - target, *bounds, xtol=1e-6))


#: Zeger, Liang & Albert (1988): a logistic random intercept of sd s shrinks the population-averaged
#: coefficients by about sqrt(1 + RANDOM_INTERCEPT_C2 * s^2), RANDOM_INTERCEPT_C2 = (16 sqrt(3) / (15 pi))^2.
RANDOM_INTERCEPT_C2 = (16 * np.sqrt(3) / (15 * np.pi)) ** 2


def person_logit(logit: np.ndarray, spread: float, level: float) -> np.ndarray:
    """The logit [M] of the person at ``level`` (a standard normal draw) under a random intercept of sd ``spread``,
    whose population-averaged logit is ``logit`` [M] (module docstring)."""
    return np.asarray(logit, dtype=float) * np.sqrt(1.0 + RANDOM_INTERCEPT_C2 * spread**2) + spread * level


def person_level(*seed_parts: object) -> float:
    """A person's own level, a standard normal draw seeded by ``seed_parts`` (e.g. its profile; 64 bits of
    `simulator.layers.stable_digest`)."""
    digest = stable_digest("person level", *seed_parts)
    return float(np.random.default_rng(int.from_bytes(digest[:8], "big")).standard_normal())


def fit_person_spread(logit: np.ndarray, liked: np.ndarray, mu: np.ndarray, ratings: np.ndarray, groups: np.ndarray,
                      *, rating_sd: float, cuts=ROUNDING_CUTS, min_rows: int = 5, draws: int = 40, seed: int = 0,
                      like_grid: np.ndarray | None = None, rating_grid: np.ndarray | None = None) -> dict:
    """``like_spread`` and ``rating_spread`` (module docstring) fitted on rated items: n rows of one or more users.

    logit [n]: the population's like-given-watched logits (cross-validated, so they are not fitted to the rows);
    liked [n] 0/1 and ratings [n] 1..5: the real outcomes; mu [n]: the expected ratings; groups [n]: the user of
    each row. Users with at least ``min_rows`` rows enter. ``like_spread``: the grid value whose simulated sd over
    users of their like rate (mean over ``draws`` draws, common random numbers) is nearest the real one; then
    ``rating_spread`` likewise for the sd of users' mean ratings, with ``like_spread`` held. Returns both, the real
    and simulated sds, and the number of users."""
    logit, mu = np.asarray(logit, float), np.asarray(mu, float)
    liked, ratings = np.asarray(liked, float), np.asarray(ratings, float)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    counts = np.bincount(g)
    keep = counts[g] >= min_rows
    if len(np.unique(g[keep])) < 10:
        raise ValueError(f"fit_person_spread: {len(np.unique(g[keep]))} users with >= {min_rows} rated items; "
                         "at least 10 are needed")
    logit, mu, liked, ratings = logit[keep], mu[keep], liked[keep], ratings[keep]
    _, g = np.unique(g[keep], return_inverse=True)
    n_users, counts = g.max() + 1, np.bincount(g)

    def per_user_sd(values: np.ndarray) -> float:  # values [..., n] -> mean over draws of the sd of user means
        means = np.stack([np.bincount(g, weights=v, minlength=n_users) / counts for v in np.atleast_2d(values)])
        return float(means.std(axis=1).mean())

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((draws, n_users))[:, g]  # [draws, n] each row's user's level
    u_like, u_rate = rng.random((draws, len(g))), rng.random((draws, len(g)))
    like_grid = np.arange(0.0, 3.0001, 0.05) if like_grid is None else np.asarray(like_grid, float)
    rating_grid = np.arange(0.0, 1.5001, 0.025) if rating_grid is None else np.asarray(rating_grid, float)
    real_like, real_mean = per_user_sd(liked), per_user_sd(ratings)

    def likes_at(s: float) -> np.ndarray:
        return u_like < expit(person_logit(logit, s, z))

    sim_like = [per_user_sd(likes_at(s)) for s in like_grid]
    i = int(np.argmin(np.abs(np.asarray(sim_like) - real_like)))
    like_spread = float(like_grid[i])
    likes = likes_at(like_spread)

    def ratings_at(s: float, likes: np.ndarray) -> np.ndarray:
        out = np.empty_like(u_rate)
        for d in range(draws):
            out[d] = ratings_from_uniforms(rating_distribution(mu + s * z[d], rating_sd, cuts), likes[d].astype(int),
                                           u_rate[d])
        return out

    sim_mean = [per_user_sd(ratings_at(s, likes)) for s in rating_grid]
    j = int(np.argmin(np.abs(np.asarray(sim_mean) - real_mean)))
    return {"like_spread": like_spread, "rating_spread": float(rating_grid[j]), "n_users": int(n_users),
            "min_rows": min_rows, "real_sd_like_rate": round(real_like, 4),
            "sim_sd_like_rate": round(sim_like[i], 4),
            "sim_sd_like_rate_without": round(sim_like[0], 4),
            "real_sd_mean_rating": round(real_mean, 4), "sim_sd_mean_rating": round(sim_mean[j], 4),
            "sim_sd_mean_rating_without": round(per_user_sd(ratings_at(0.0, likes_at(0.0))), 4)}


def take_logit(affinity: np.ndarray, level: float, spread: float = 0.0, person: float = 0.0) -> np.ndarray:
    """The take logit [M] of items with affinities [M] at the no-choice ``level`` for the person at ``person`` (a
    standard normal draw) under a random intercept of sd ``spread`` on the take (an implicit log's own level,
    `fit_take_spread`); ``spread`` 0: the affinity plus the level."""
    logit = np.asarray(affinity, dtype=float) + level
    return person_logit(logit, spread, person) if spread else logit


def fit_take_spread(affinities: list[np.ndarray], hits: np.ndarray, level: float, *, draws: int = 200, seed: int = 0,
                    grid: np.ndarray | None = None) -> dict:
    """An implicit log's person's own level (module docstring, on the take): the sd of a random intercept on the take
    logit whose simulated sd over users of their hits on a recommender's top-k (mean over ``draws`` draws, common
    random numbers) is nearest the real one. An implicit log records takes and nothing else, so this is the one
    spread it can calibrate: people differ in how much of what they are shown they take, beyond what the evidence
    (their history's length among it) sees.

    affinities: one array [k] per user, the affinities of the recommender's top-k (`fit_level`'s rows); hits [n]:
    how many of those the user went on to take; level: the fitted no-choice level. Returns the spread, the real and
    simulated sds (with the spread, and without it), and the number of users."""
    hits = np.asarray(hits, dtype=float)
    if len(affinities) != len(hits) or len(hits) < 10:
        raise ValueError(f"fit_take_spread: {len(hits)} users; at least 10 are needed")
    A = np.stack([np.asarray(a, dtype=float) for a in affinities])  # [n, k]
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((draws, len(hits)))[:, :, None]
    u = rng.random((draws, *A.shape))
    grid = np.arange(0.0, 3.0001, 0.05) if grid is None else np.asarray(grid, float)
    real = float(hits.std())

    def simulated(spread: float) -> tuple[float, float]:  # (sd over users of hits, mean hits), over the draws
        sim_hits = (u < take_probability(A[None], level, spread, z)).sum(2)
        return float(sim_hits.std(axis=1).mean()), float(sim_hits.mean())

    sims = [simulated(s) for s in grid]
    i = int(np.argmin(np.abs(np.asarray([sd for sd, _ in sims]) - real)))
    return {"take_spread": round(float(grid[i]), 4), "n_users": int(len(hits)), "real_sd_hits": round(real, 4),
            "sim_sd_hits": round(sims[i][0], 4),
            "sim_sd_hits_without": round((sims[0] if grid[0] == 0 else simulated(0.0))[0], 4),
            "real_mean_hits": round(float(hits.mean()), 4), "sim_mean_hits": round(sims[i][1], 4)}


def rating_distribution(mu: np.ndarray, sd: float, cuts=ROUNDING_CUTS) -> np.ndarray:
    """P(rating = 1..5) [M, 5] of an ordered probit around expected ratings ``mu`` [M] with residual ``sd``."""
    mu = np.asarray(mu, dtype=float)[:, None]
    edges = np.concatenate([[-np.inf], np.asarray(cuts, dtype=float), [np.inf]])
    cdf = norm.cdf((edges[None, :] - mu) / max(float(sd), 1e-6))
    return np.clip(np.diff(cdf, axis=1), 0.0, 1.0)


def _within(P: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``P`` [M, 5] restricted to each row's ``part`` [M] (1 liked: 4-5, 0 not liked: 1-3, -1 any) and
    renormalised; a row with no mass in its part takes that part's closest rating (4, 3; 3 for any)."""
    P = np.asarray(P, dtype=float).copy()
    part = np.asarray(part)
    P[part == 1, :LIKED_MIN - 1] = 0.0
    P[part == 0, LIKED_MIN - 1:] = 0.0
    empty = P.sum(1) <= 0
    P[empty & (part == 1), LIKED_MIN - 1] = 1.0
    P[empty & (part == 0), LIKED_MIN - 2] = 1.0
    P[empty & (part == -1), 2] = 1.0
    return P / P.sum(1, keepdims=True)


def watched_distribution(P: np.ndarray, p_like: np.ndarray) -> np.ndarray:
    """P(rating = 1..5 | watched) [M, 5]: liked with ``p_like`` [M], then rated within 4-5 (else 1-3) as ``P``
    [M, 5] shares that part out; the rating `simulator.choice.decide` draws for a taken item. Its like share
    (rating >= 4) is ``p_like`` exactly. A part of ``P`` with no mass takes its closest rating."""
    m = len(P)
    p = np.asarray(p_like, dtype=float)[:, None]
    return p * _within(P, np.ones(m, int)) + (1 - p) * _within(P, np.zeros(m, int))


def sample_ratings(P: np.ndarray, part: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One rating 1..5 per row of ``P`` [M, 5], drawn within ``part`` [M]: 1 liked (4-5), 0 not liked (1-3),
    -1 any. A row with no mass in its part takes that part's closest rating."""
    return ratings_from_uniforms(P, part, rng.random(len(P)))


def ratings_from_uniforms(P: np.ndarray, part: np.ndarray, u: np.ndarray) -> np.ndarray:
    """`sample_ratings` with its uniform draws ``u`` [M] given: the inverse CDF of each row of ``P`` within its
    ``part`` at ``u`` (common random numbers, as `fit_person_spread` uses them)."""
    cum = np.cumsum(_within(P, part), axis=1)
    return 1 + np.minimum((np.asarray(u)[:, None] > cum).sum(1), 4).astype(int)


def _ece(p: np.ndarray, y: np.ndarray, idx: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of outcomes ``y`` [..., n] against ``p`` [n] in the bins ``idx`` [n] (equal width, weighted by share)."""
    y = np.atleast_2d(y)
    out = np.zeros(len(y))
    for b in range(n_bins):
        m = idx == b
        if m.any():
            out += m.mean() * np.abs(p[m].mean() - y[:, m].mean(axis=1))
    return out


def reliability(p: np.ndarray, y: np.ndarray, n_bins: int = 10, *, n_null: int = 1000, seed: int = 0) -> dict:
    """Calibration of probabilities ``p`` [n] against outcomes ``y`` [n] (0/1): the expected calibration error
    (bins of equal width, weighted by their share), the mean probability against the real share, the
    reliability diagram's rows {low, high, n, mean_p, share}, and what ECE a perfectly calibrated model would
    show on these n items ('ece_if_calibrated': outcomes drawn from ``p`` itself ``n_null`` times, the
    consistency resampling of Bröcker & Smith 2007; its median, 95% quantile and the share of draws at or above
    the observed ECE, a one-sided p). A finite sample gives any model an ECE above 0: below that floor an ECE
    target cannot be told from noise."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    if len(p) != len(y) or not len(p):
        raise ValueError(f"reliability: {len(p)} probabilities and {len(y)} outcomes")
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        if m.any():
            rows.append({"low": b / n_bins, "high": (b + 1) / n_bins, "n": int(m.sum()),
                         "mean_p": round(float(p[m].mean()), 4), "share": round(float(y[m].mean()), 4)})
    ece = float(_ece(p, y, idx, n_bins)[0])
    out = {"ece": round(ece, 4), "mean_p": round(float(p.mean()), 4), "real_share": round(float(y.mean()), 4),
           "n": int(len(p)), "bins": rows}
    if n_null:
        rng = np.random.default_rng(seed)
        null = np.concatenate([_ece(p, rng.random((min(200, n_null - i), len(p))) < p, idx, n_bins)
                               for i in range(0, n_null, 200)])
        out["ece_if_calibrated"] = {"median": round(float(np.median(null)), 4),
                                    "q95": round(float(np.quantile(null, 0.95)), 4),
                                    "p_value": round(float((null >= ece - 1e-12).mean()), 4), "n_draws": int(n_null)}
    return out
