"""The calibrated, sampled choice: the no-choice level, the rating distribution and the reliability check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from simulator.selector import fit_level, rating_distribution, reliability, sample_ratings, take_probability


def test_fit_level_recovers_a_planted_level():
    rng = np.random.default_rng(0)
    affinities = [rng.normal(0, 1.5, 10) for _ in range(3000)]
    hits = np.array([(rng.random(10) < expit(a - 3.0)).sum() for a in affinities])
    assert fit_level(affinities, hits) == pytest.approx(-3.0, abs=0.1)
    # the fitted level reproduces the hit rate it was fitted on
    level = fit_level(affinities, hits)
    assert np.mean([take_probability(a, level).sum() for a in affinities]) == pytest.approx(hits.mean(), rel=1e-4)


def test_fit_level_refuses_data_with_no_level_to_fit():
    with pytest.raises(ValueError, match="no level"):
        fit_level([np.zeros(5)], np.array([0]))
    with pytest.raises(ValueError, match="2 affinity rows and 1"):
        fit_level([np.zeros(5), np.zeros(5)], np.array([1]))


def test_rating_distribution_is_a_distribution_around_its_mean():
    P = rating_distribution(np.array([1.0, 3.0, 4.6, 9.0]), 0.8)
    assert P.shape == (4, 5) and np.allclose(P.sum(1), 1.0)
    assert P[1].argmax() == 2 and P[2].argmax() == 4 and P[3, 4] > 0.999
    assert abs((P[1] * np.arange(1, 6)).sum() - 3.0) < 0.05  # symmetric around an inner mean


def test_sampled_ratings_stay_in_their_part_and_follow_the_distribution():
    rng = np.random.default_rng(1)
    P = rating_distribution(np.full(20000, 3.4), 1.0)
    liked = sample_ratings(P, np.ones(20000, int), rng)
    panned = sample_ratings(P, np.zeros(20000, int), rng)
    free = sample_ratings(P, np.full(20000, -1), rng)
    assert set(liked) <= {4, 5} and set(panned) <= {1, 2, 3}
    assert np.bincount(free, minlength=6)[1:] / 20000 == pytest.approx(P[0], abs=0.015)
    share5 = P[0, 4] / P[0, 3:].sum()
    assert np.mean(liked == 5) == pytest.approx(share5, abs=0.015)
    # no mass in the part: the part's closest rating
    assert sample_ratings(rating_distribution(np.array([1.0]), 0.01), np.array([1]), rng).tolist() == [4]


def test_reliability_tells_calibrated_from_overconfident():
    rng = np.random.default_rng(2)
    p = rng.random(50000)
    y = rng.random(50000) < p
    good = reliability(p, y, n_null=200)
    assert good["ece"] < 0.02 and abs(good["mean_p"] - good["real_share"]) < 0.01
    bad = reliability(np.full(1000, 0.9), rng.random(1000) < 0.5)
    assert bad["ece"] == pytest.approx(0.4, abs=0.05) and len(bad["bins"]) == 1
    assert bad["ece_if_calibrated"]["p_value"] == 0.0  # no calibrated model shows 0.4 on 1,000 items
    with pytest.raises(ValueError):
        reliability(np.array([0.5]), np.array([]))


def test_a_watched_items_rating_likes_with_p_like_and_keeps_the_shape_within_each_part():
    from simulator.selector import watched_distribution

    P = rating_distribution(np.array([2.0, 3.5, 4.8]), 0.9)
    p_like = np.array([0.1, 0.5, 0.9])
    W = watched_distribution(P, p_like)
    assert W.sum(1) == pytest.approx(np.ones(3))
    assert W[:, 3:].sum(1) == pytest.approx(p_like)  # the like share is P(like | watched), whatever the mean says
    # within a part, the shares are P's: 4 against 5, and 1, 2, 3
    assert W[:, 3] / W[:, 4] == pytest.approx(P[:, 3] / P[:, 4])
    assert W[:, 0] / W[:, 2] == pytest.approx(P[:, 0] / P[:, 2])
    draws = sample_ratings(np.repeat(W[1:2], 20000, axis=0), np.full(20000, -1), np.random.default_rng(0))
    assert (draws >= 4).mean() == pytest.approx(0.5, abs=0.015)
    # no mass in a part: its closest rating
    edge = watched_distribution(np.array([[0, 0, 0, 0.5, 0.5]]), np.array([0.3]))
    assert edge[0] == pytest.approx([0, 0, 0.7, 0.15, 0.15])


def _people(spread: float, n_users: int = 150, per_user: int = 25, seed: int = 0):
    """Rated items of people who differ by a like level of sd ``spread`` (the features see none of it)."""
    from simulator.selector import person_logit

    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_users), per_user)
    logit = rng.normal(0.3, 1.0, len(groups))  # what the features say
    z = rng.standard_normal(n_users)[groups]
    liked = rng.random(len(groups)) < expit(person_logit(logit, spread, z))
    ratings = np.where(liked, rng.choice([4, 5], len(groups)), rng.choice([1, 2, 3], len(groups)))
    return logit, liked, ratings, groups


@pytest.mark.parametrize("planted", [0.0, 1.0])
def test_the_persons_spread_is_recovered_from_users_like_rates(planted):
    from simulator.selector import fit_person_spread

    logit, liked, ratings, groups = _people(planted)
    fit = fit_person_spread(logit, liked, np.full(len(logit), 3.5), ratings, groups, rating_sd=1.0, seed=0)
    assert abs(fit["like_spread"] - planted) <= 0.3, fit
    assert abs(fit["sim_sd_like_rate"] - fit["real_sd_like_rate"]) < 0.01
    if planted:  # people who differ spread more than the features alone give
        assert fit["sim_sd_like_rate_without"] < fit["real_sd_like_rate"] - 0.03


def test_the_persons_level_keeps_the_populations_probabilities():
    from simulator.selector import person_logit

    logit = np.linspace(-2.5, 2.5, 11)
    z = np.random.default_rng(0).standard_normal(200_000)
    marginal = expit(person_logit(logit[:, None], 1.2, z[None, :])).mean(1)
    assert np.abs(marginal - expit(logit)).max() < 0.01  # averaged over persons: the fitted probability
    assert (person_logit(logit, 0.0, 3.0) == logit).all()  # no spread: every person at the population


def test_too_few_users_for_a_spread_is_refused():
    from simulator.selector import fit_person_spread

    logit, liked, ratings, groups = _people(1.0, n_users=8)
    with pytest.raises(ValueError, match="8 users with >= 5 rated items; at least 10"):
        fit_person_spread(logit, liked, np.full(len(logit), 3.5), ratings, groups, rating_sd=1.0)


def test_a_calibrated_model_on_a_thousand_items_has_an_ece_floor_above_0_02():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.2, 0.9, 1128)  # the size of the fidelity benchmark's held-out rated items
    floors = []
    for n in (1128, 20000):
        q = rng.uniform(0.2, 0.9, n)
        r = reliability(q, rng.random(n) < q, n_null=400, seed=1)
        assert r["ece_if_calibrated"]["p_value"] > 0.01  # a calibrated model is not flagged
        floors.append(r["ece_if_calibrated"]["median"])
    assert floors[0] > 0.02 > floors[1]  # on ~1,000 items even a perfect model's ECE is above 0.02
    shifted = reliability(p, rng.random(len(p)) < np.clip(p - 0.08, 0, 1), n_null=400)
    assert shifted["ece_if_calibrated"]["p_value"] < 0.01  # 8 points off is told from noise at this size
