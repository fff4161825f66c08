"""Grounded users: the time split, train/test hygiene, the written-down decision and its context shifts."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from evals.validity.grounding import heldout_pairs, item_space, memories
from recsys import DataError, Dataset, time_split
from simulator.choice import ChoiceModel, context_shift, decide, stop_logit
from simulator.evidence import EVIDENCE, ITEM_EVIDENCE, N_RATED, RECENT, RECENT_POP, evidence_features


def small_dataset(n_users=12, n_items=30, per_user=10, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for t, i in enumerate(items):
            rows.append((u, int(i), float(rng.integers(1, 6)), float(1000 * u + t)))
    ratings = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    genres = [["Horror"] if i % 3 == 0 else ["Children's"] if i % 3 == 1 else ["Comedy"] for i in range(n_items)]
    items = pd.DataFrame({"item_id": [str(i + 1) for i in range(n_items)], "title": [f"Film {i}" for i in range(n_items)],
                          "year": ["1995"] * n_items, "genres": genres})
    users = pd.DataFrame({"user_id": [str(u + 1) for u in range(n_users)]})
    return Dataset(ratings, items, users, "small")


def test_time_split_holds_out_each_users_latest_share_and_inner_never_sees_test():
    ds = small_dataset()
    split = time_split(ds, 0.2)
    for u, g in ds.ratings.groupby("user"):
        latest = g.sort_values("timestamp")["item"].tolist()[-2:]  # floor(0.2 * 10) = 2
        assert sorted(split.test[split.test["user"] == u]["item"]) == sorted(latest)
    assert len(split.train) + len(split.test) == len(ds.ratings)
    inner = split.inner()
    test_rows = set(map(tuple, split.test[["user", "item"]].to_numpy()))
    assert not test_rows & set(map(tuple, inner.train[["user", "item"]].to_numpy()))
    assert not test_rows & set(map(tuple, inner.test[["user", "item"]].to_numpy()))
    assert split.key != inner.key


def test_time_split_refuses_data_without_timestamps_or_positives():
    ds = small_dataset()
    flat = Dataset(ds.ratings.assign(timestamp=0.0), ds.items, ds.users, "flat")
    with pytest.raises(DataError, match="timestamp"):
        time_split(flat)
    panned = Dataset(ds.ratings.assign(rating=2.0), ds.items, ds.users, "panned")
    with pytest.raises(DataError, match="no interaction is a positive"):
        time_split(panned)
    implicit = Dataset(ds.ratings.assign(rating=5.0), ds.items, ds.users, "implicit")  # every interaction a positive
    assert (time_split(implicit).test["rating"] == 5.0).all()


def test_memories_and_item_space_are_the_same_whatever_the_held_out_part_says():
    """Hygiene: scramble every held-out rating and item; what a grounded user knows must not change."""
    ds = small_dataset()
    split = time_split(ds, 0.2)
    rng = np.random.default_rng(1)
    scrambled = ds.ratings.copy()
    test_idx = scrambled.sort_values(["user", "timestamp"]).groupby("user").tail(2).index
    scrambled.loc[test_idx, "rating"] = rng.integers(1, 6, len(test_idx)).astype(float)
    scrambled.loc[test_idx, "item"] = rng.integers(0, ds.n_items, len(test_idx))
    split2 = time_split(Dataset(scrambled, ds.items, ds.users, "small"), 0.2)
    persona_of = {str(u + 1): f"p{u % 3}" for u in range(ds.n_users)}
    a, b = item_space(ds, split.train), item_space(ds, split2.train)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.mean_rating, b.mean_rating)
    np.testing.assert_array_equal(a.factors, b.factors)
    ma, mb = memories(ds, split.train, persona_of, a), memories(ds, split2.train, persona_of, b)
    assert ma.keys() == mb.keys()
    for key in ma:
        np.testing.assert_array_equal(ma[key].liked, mb[key].liked)
        np.testing.assert_array_equal(ma[key].recent, mb[key].recent)
        np.testing.assert_array_equal(ma[key].persona_share, mb[key].persona_share)
        np.testing.assert_array_equal(ma[key].taste, mb[key].taste)
    test_pairs = set(map(tuple, split.test[["user", "item"]].to_numpy()))
    uid = {str(u + 1): u for u in range(ds.n_users)}
    for key, m in ma.items():
        if m.kind == "twin":
            u = uid[key.split(":")[1]]
            assert not {(u, int(i)) for i in np.concatenate([m.liked, m.recent, m.disliked])} & test_pairs


def test_movielens_documents_are_rendered_from_train_ratings_only():
    """Hygiene on the real data: the persona documents' counts equal the train part's, item by item."""
    from personas.infra.assets import ml100k_dir
    from personas.corpora import LIKED_MIN, ml100k_users
    from recsys import load_movielens

    ds = load_movielens(ml100k_dir())
    split = time_split(ds, 0.2)
    corpus = ml100k_users(exclude=heldout_pairs(ds, split.test))
    assert corpus.name == "ml-100k-users[train]"
    by_id = {d.id: d for d in corpus.documents}
    uid = ds.users["user_id"].astype(str).to_numpy()
    genres = ds.items["genres"].to_numpy()
    for u, g in list(split.train.groupby("user"))[:200]:
        doc = by_id[uid[u]]
        assert doc.metadata["n_ratings"] == len(g)
        liked = Counter(x for i in g.loc[g["rating"] >= LIKED_MIN, "item"] for x in genres[i] if x != "unknown")
        assert doc.metadata["genres"]["liked"] == dict(liked)
    full = {d.id: d for d in ml100k_users().documents}
    assert any(full[k].metadata["n_ratings"] != by_id[k].metadata["n_ratings"] for k in by_id)


def _model(features=EVIDENCE, coef=None) -> ChoiceModel:
    f = len(features)
    return ChoiceModel(kind="twin", features=list(features), mean=[0.0] * f, scale=[1.0] * f,
                       like_coef=coef or [1.0] * f, like_intercept=0.0, rating_coef=[1.0, 0.0] + [0.3] * f,
                       rating_intercept=0.0, rating_sd=0.5, take_level=0.0, watched_coef=[0.0] * f,
                       watched_intercept=0.0)


def test_context_shifts_do_what_the_table_says():
    horror, kids, comedy = ["Horror"], ["Children's"], ["Comedy"]
    alone = context_shift({"companions": "alone"}, [horror, kids, comedy])
    with_kids = context_shift({"companions": "with kids"}, [horror, kids, comedy])
    assert with_kids[0] < alone[0] and with_kids[1] > alone[1] and with_kids[2] == alone[2]
    short = context_shift({"time_available": "20 minutes"}, [horror, kids, comedy])
    assert (short < 0).all()
    assert stop_logit({"patience": "impatient"}, False) > stop_logit({"patience": "patient"}, False)
    assert stop_logit({}, True) > stop_logit({}, False)


def test_impatient_users_stop_sooner_and_short_evenings_accept_less():
    m = _model()
    X = np.zeros((5, len(EVIDENCE)))
    genres = [["Comedy"]] * 5

    def rates(context):
        stops = picks = 0
        for s in range(400):
            d = decide(m, X, user_mean=3.5, item_mean=np.full(5, 3.5), genres=genres, context=context,
                       rng=np.random.default_rng(s), max_choices=2, may_stop=True)
            stops += d.stop
            picks += len(d.chosen)
        return stops / 400, picks / 400

    patient, impatient = rates({"patience": "patient"}), rates({"patience": "impatient"})
    assert impatient[0] > patient[0] + 0.05
    evening, short = rates({"time_available": "a whole evening"}), rates({"time_available": "20 minutes"})
    assert short[1] < evening[1] - 0.1


def test_the_subtopic_layer_shifts_its_focus_genre_and_changes_what_is_taken():
    from simulator.choice import FOCUS_SHIFT, focus_shift

    genres = [["Horror"], ["Comedy", "Romance"], ["Drama"]]
    assert focus_shift(["Romance"], genres).tolist() == [0.0, FOCUS_SHIFT, 0.0]
    assert focus_shift([], genres).tolist() == [0.0, 0.0, 0.0]
    m = _model().model_copy(update={"take_level": -1.0})
    X = np.zeros((6, len(EVIDENCE)))
    slate = [["Comedy"], ["Drama"]] * 3
    kw = dict(user_mean=3.5, item_mean=np.full(6, 3.5), genres=slate, context={})
    plain = decide(m, X, rng=np.random.default_rng(0), **kw)
    focused = decide(m, X, rng=np.random.default_rng(0), focus=["Drama"], **kw)
    assert (focused.logits - plain.logits).tolist() == [0.0, FOCUS_SHIFT] * 3

    def drama_share(focus):
        taken = [slate[j][0] for s in range(400) for j in decide(m, X, rng=np.random.default_rng(s), focus=focus,
                                                                   **kw).chosen]
        return taken.count("Drama") / len(taken)

    assert drama_share([]) == pytest.approx(0.5, abs=0.05)
    assert drama_share(["Drama"]) > drama_share([]) + 0.08  # the layer reaches the choices, not just the prompt


def test_the_focus_term_is_what_the_training_sittings_say():
    """FOCUS_SHIFT's provenance: refitted on the default split's train part (evals.validity.sittings)."""
    from evals.validity.sittings import fit_focus_shift
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens
    from simulator.choice import FOCUS_SHIFT

    ds = load_movielens(ml100k_dir())
    fit = fit_focus_shift(time_split(ds, 0.2).train, ds.items["genres"].tolist(), n_boot=200, seed=0)
    assert fit["shift"] == pytest.approx(FOCUS_SHIFT, abs=0.01)
    assert fit["ci"][0] > 0 and fit["second"] > fit["base"]  # the focus persists into the sitting's second half
    assert fit["n_sittings"] > 500


def test_the_focus_fit_finds_a_planted_focus_and_none_where_there_is_none():
    from evals.validity.sittings import fit_focus_shift

    rng = np.random.default_rng(0)
    names = ["A", "B", "C", "D", "E"]
    genres = [[names[i % 5]] for i in range(100)]

    def logs(persist: bool) -> pd.DataFrame:
        rows = []
        for u in range(60):
            t = 0
            for _ in range(4):  # four sittings a user, a day apart
                focus = rng.integers(5)
                for k in range(10):
                    g = focus if persist and rng.random() < 0.6 else rng.integers(5)
                    rows.append((u, int(g + 5 * rng.integers(20)), 4.0, float(t)))
                    t += 60
                t += 86_400
        return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])

    planted = fit_focus_shift(logs(True), genres, n_boot=100)
    assert planted["ci"][0] > 1.0  # 60% of a sitting on its focus against 20%
    none = fit_focus_shift(logs(False), genres, n_boot=100)
    assert none["ci"][0] < 0.3 and abs(none["shift"]) < 0.5  # no persistence: the split halves keep selection out
    with pytest.raises(ValueError, match="no sitting"):
        fit_focus_shift(logs(True).head(5), genres)


def test_the_sittings_spread_finds_a_planted_spread_and_none_where_there_is_none():
    """`sitting_spread` recovers the variance of a genre's log-odds planted between sittings (two genres, so the
    planted shift is the genre's log-odds shift exactly)."""
    from scipy.special import expit

    from evals.validity.sittings import sitting_spread

    genres = [["A"] if i % 2 == 0 else ["B"] for i in range(400)]

    def logs(sd: float) -> pd.DataFrame:
        rng = np.random.default_rng(0)
        rows = []
        for u in range(150):
            level, t = rng.normal(-0.5, 0.7), 0
            for _ in range(6):  # six sittings a user, a day apart, each with its own draw of the genre's log-odds
                p = expit(level + rng.normal(0, sd))
                for _ in range(12):
                    rows.append((u, int(2 * rng.integers(200) + (rng.random() >= p)), 4.0, float(t)))
                    t += 60
                t += 86_400
        return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])

    none = sitting_spread(logs(0.0), genres, n_boot=100)
    assert abs(none["tau2"]) < 0.05 and none["ci"][0] < 0 < none["ci"][1] + 0.01
    planted = sitting_spread(logs(0.6), genres, n_boot=100)
    assert planted["ci"][0] < 0.36 < planted["ci"][1] and planted["ci"][0] > 0.15
    assert planted["n_sittings"] == 900 and planted["by_genre"]["A"]["weight"] == 0.5
    with pytest.raises(ValueError, match="no sitting"):
        sitting_spread(logs(0.6).head(5), genres)


def test_the_layers_vary_a_session_less_than_real_sittings_vary():
    """The stated context shifts and the fitted focus term (`simulator.choice.session_variance`, an upper bound per
    genre) give a session a genre mix that varies less, pooled over genres with the real figure's weights, than real
    sittings of the default split's train part do (`evals.validity.sittings.sitting_spread`): the population's
    spread is not wider than real people's."""
    from evals.validity.sittings import layers_against_sittings
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens
    from recsys.time_splits import make_split
    from simulator.choice import session_variance

    ds = load_movielens(ml100k_dir())
    check = layers_against_sittings(make_split(ds, "global").train, ds.items["genres"].tolist(), n_boot=200, seed=0)
    real, simulated = check["real"], check["simulated_at_most"]
    assert 0 < simulated < real["ci"][0] and check["within_real"]
    assert simulated == pytest.approx(sum(g["weight"] * session_variance(name) for name, g in real["by_genre"].items()),
                                      abs=1e-4)
    assert session_variance("Horror") > session_variance("Drama") > 0  # "with kids" moves horror most
    no_sittings = layers_against_sittings(make_split(ds, "global").train.head(5), ds.items["genres"].tolist())
    assert "no sitting" in no_sittings["not_measured"]


def test_a_subtopic_names_a_genre_or_a_film():
    from simulator.grounded import focus_genres

    ds = small_dataset()
    space = item_space(ds, time_split(ds, 0.2).train)
    assert focus_genres(space, "Horror") == ["Horror"]
    assert focus_genres(space, "Film 1") == ["Children's"]  # a film: its genres
    assert focus_genres(space, "Opera") == [] and focus_genres(space, None) == []


def test_a_sampled_decision_draws_its_calibrated_probabilities():
    m = _model(coef=[2.0] + [0.0] * (len(EVIDENCE) - 1))
    m = m.model_copy(update={"take_level": -1.0, "watched_coef": [1.0] + [0.0] * (len(EVIDENCE) - 1)})
    X = np.zeros((200, len(EVIDENCE)))
    X[:, 0] = np.linspace(-2, 2, 200)
    kw = dict(user_mean=3.5, item_mean=np.full(200, 3.5), genres=[[]] * 200, context={})
    p_take, p_like = 1 / (1 + np.exp(-(2 * X[:, 0] - 1.0))), 1 / (1 + np.exp(-X[:, 0]))
    fixed = [decide(m, X, sampled=False, rng=np.random.default_rng(s), **kw) for s in range(3)]
    assert all(set(d.chosen) == set(np.flatnonzero(p_take > 0.5)) for d in fixed)  # deterministic: any seed
    runs = [decide(m, X, rng=np.random.default_rng(s), **kw) for s in range(400)]
    taken = np.mean([np.isin(np.arange(200), d.chosen) for d in runs], 0)
    assert np.abs(taken - p_take).mean() < 0.03  # takes follow P(take)
    liked_given_taken = sum(d.liked.sum() for d in runs) / sum(len(d.chosen) for d in runs)
    expected = (p_take * p_like).sum() / p_take.sum()
    assert abs(liked_given_taken - expected) < 0.02  # likes follow P(like | watched)
    assert runs[0].chosen != runs[1].chosen  # two runs of one user differ
    for d in runs[:20]:
        part = np.zeros(200, int) - 1
        part[d.chosen] = d.liked[d.chosen]
        assert (d.ratings[part == 1] >= 4).all() and (d.ratings[part == 0] <= 3).all()  # a like and its rating agree
    capped = decide(m, X, rng=np.random.default_rng(0), max_choices=2, **kw)
    assert len(capped.chosen) <= 2 and capped.liked.sum() <= len(capped.chosen)
    old = _model().model_copy(update={"take_level": None})
    with pytest.raises(ValueError, match="no base rates.*personasim calibrate"):
        decide(old, X, rng=np.random.default_rng(0), **kw)


def test_evidence_features_rank_the_users_own_neighbourhood_first():
    ds = small_dataset(n_users=40, n_items=30, per_user=12)
    split = time_split(ds, 0.2)
    space = item_space(ds, split.train)
    persona_of = {str(u + 1): "p0" for u in range(ds.n_users)}
    mems = memories(ds, split.train, persona_of, space)
    twin = mems["twin:1"]
    X = evidence_features(space, twin, np.arange(ds.n_items))
    assert X.shape == (ds.n_items, len(EVIDENCE))
    liked = set(twin.liked.tolist())
    # a liked item is its own nearest neighbour: history is highest on the liked items themselves
    if liked:
        assert X[list(liked), 0].mean() > X[[i for i in range(ds.n_items) if i not in liked], 0].mean()
    # cf: a percentile of the whole catalog, and the user's own items rank above the rest
    cf = X[:, EVIDENCE.index("cf")]
    assert cf.min() == 0.0 and cf.max() == 1.0 and len(np.unique(cf)) == ds.n_items
    rated = split.train.loc[split.train["user"] == 0, "item"].unique()
    assert cf[rated].mean() > cf[np.setdiff1d(np.arange(ds.n_items), rated)].mean()
    # ease: a percentile too, and items watched with the user's own items rank above the rest
    ease = X[:, EVIDENCE.index("ease")]
    assert ease.min() == 0.0 and ease.max() == 1.0 and len(np.unique(ease)) == ds.n_items
    assert ease[rated].mean() > ease[np.setdiff1d(np.arange(ds.n_items), rated)].mean()
    with pytest.raises(KeyError, match="not in the item space"):
        space.index(["no-such-item"])
    # n_rated: log(1 + the items the twin rated in train), the same for every item; each product is the
    # item feature times it
    n = X[:, EVIDENCE.index(N_RATED)]
    assert np.all(n == np.log1p(len(rated)))
    for f in ITEM_EVIDENCE:
        np.testing.assert_allclose(X[:, EVIDENCE.index(f"{f}*{N_RATED}")], X[:, EVIDENCE.index(f)] * n)
    # a persona's n_rated is its members' mean history: between its shortest and longest member's
    per_user = np.log1p(split.train.groupby("user")["item"].nunique().to_numpy())
    n_persona = evidence_features(space, mems["persona:p0"], np.arange(3))[0, EVIDENCE.index(N_RATED)]
    assert per_user.min() <= n_persona <= per_user.max()
    # recent_pop: the mean log(1 + train positives) of the RECENT items the twin rated last, the same for every
    # item; its product is the item's popularity times it
    own = split.train[split.train["user"] == 0].sort_values(["timestamp", "item"], kind="stable")
    last = own["item"].to_numpy()[-RECENT:]
    r = X[:, EVIDENCE.index(RECENT_POP)]
    np.testing.assert_allclose(r, space.log_pop[last].mean())
    np.testing.assert_allclose(X[:, EVIDENCE.index(f"popularity*{RECENT_POP}")], space.log_pop * r)


def test_sources_group_each_feature_with_its_products():
    """What `personasim calibrate` leaves out together: an item feature and its products; n_rated and every
    product with it; recent_pop and its product with popularity; the llm alone."""
    from simulator.evidence import sources

    groups = sources([*EVIDENCE, "llm"])
    assert set(groups) == {*ITEM_EVIDENCE, N_RATED, RECENT_POP, "llm"}
    assert [EVIDENCE[j] for j in groups["ease"]] == ["ease", f"ease*{N_RATED}"]
    assert [EVIDENCE[j] for j in groups["popularity"]] == ["popularity", f"popularity*{N_RATED}",
                                                             f"popularity*{RECENT_POP}"]
    assert [EVIDENCE[j] for j in groups[RECENT_POP]] == [RECENT_POP, f"popularity*{RECENT_POP}"]
    assert len(groups[N_RATED]) == 1 + len(ITEM_EVIDENCE) and groups["llm"] == [len(EVIDENCE)]


def test_ease_weights_are_each_items_ridge_regression_on_the_others():
    """EASE's closed form equals, column by column, scikit-learn's ridge regression (no intercept) of an item's
    column on every other item's column with the same penalty: the zero-diagonal constraint, solved exactly."""
    from sklearn.linear_model import Ridge

    from simulator.evidence import ease_weights

    X = (np.random.default_rng(0).random((60, 12)) < 0.3).astype(float)
    B = ease_weights(X, lam=5.0)
    assert np.all(np.diag(B) == 0.0)
    for j in range(X.shape[1]):
        others = np.delete(np.arange(X.shape[1]), j)
        ridge = Ridge(alpha=5.0, fit_intercept=False).fit(X[:, others], X[:, j])
        np.testing.assert_allclose(B[others, j], ridge.coef_, rtol=1e-4, atol=1e-5)


def test_the_matched_rating_rule_gives_the_real_histogram_in_the_same_order():
    """A regression's expected ratings shrink to the mean: rounded, they pile up at 3-4; binned at cutpoints
    fitted on the real ratings, they spread over 1..5 as the real ones do, and a higher expected rating never
    gets a lower rating."""
    from simulator.choice import rating_cuts

    rng = np.random.default_rng(0)
    real = rng.choice([1, 2, 3, 4, 5], size=2000, p=[0.07, 0.11, 0.27, 0.34, 0.21])
    expected = 3.5 + 0.3 * (real - 3.5) + rng.normal(0, 0.3, len(real))  # shrunk and noisy
    m = _model().model_copy(update={"rating_cuts": rating_cuts(expected, real)})
    hist = lambda r: np.bincount(r, minlength=6)[1:]  # noqa: E731
    rounded, matched = m.rating(expected), m.rating(expected, "matched")
    assert hist(rounded)[0] + hist(rounded)[4] < 0.1 * len(real)  # expected: 1s and 5s all but vanish
    assert np.abs(hist(matched) - hist(real)).max() <= 2  # matched: the real shares, up to ties at a cut
    order = np.argsort(expected)
    assert (np.diff(matched[order]) >= 0).all()  # monotone in the expected rating
    assert np.corrcoef(matched, real)[0, 1] > 0.5
    # items taken but not liked, which the rating model pans: each rule's own rating, at most 3
    X = np.zeros((3, len(EVIDENCE)))
    keen = m.model_copy(update={"like_intercept": 1.0})
    kw = dict(user_mean=1.0, item_mean=np.full(3, 1.0), genres=[[]] * 3, context={}, sampled=False,
              rng=np.random.default_rng(0))
    panned = keen.expected_rating(X, 1.0, np.full(3, 1.0))
    assert (keen.rating(panned) < 3).all() and (keen.rating(panned, "matched") < 3).all()
    d_expected, d_matched = decide(keen, X, **kw), decide(keen, X, rating_rule="matched", **kw)
    assert len(d_expected.chosen) == len(d_matched.chosen) == 3 and not d_expected.liked.any()
    assert (d_expected.ratings == keen.rating(panned)).all()
    assert (d_matched.ratings == keen.rating(panned, "matched")).all()
    with pytest.raises(ValueError, match="no rating cutpoints"):
        _model().rating(expected, "matched")
    with pytest.raises(ValueError, match="rating rule 'median'"):
        m.rating(expected, "median")


def test_hard_negatives_come_from_the_top_of_the_twins_own_rankings_and_were_never_rated():
    from evals.validity.calibration import HARD_FAMILIES, HARD_TOP, hard_negatives

    ds = small_dataset(n_users=40, n_items=120, per_user=12)
    split = time_split(ds, 0.2)
    space = item_space(ds, split.train)
    twin = memories(ds, split.train, {str(u + 1): "p0" for u in range(ds.n_users)}, space)["twin:1"]
    rated = set(split.train.loc[split.train["user"] == 0, "item"].tolist())
    X = evidence_features(space, twin, np.arange(ds.n_items))
    tops = {f: [int(i) for i in np.argsort(-X[:, ITEM_EVIDENCE.index(f)], kind="stable") if int(i) not in rated]
            for f in HARD_FAMILIES}
    allowed = set().union(*(t[:HARD_TOP] for t in tops.values()))
    got = hard_negatives(np.random.default_rng(0), space, twin, rated, 5)
    assert len(got) == 5 == len(set(got.tolist())) and set(got.tolist()) <= allowed and not set(got.tolist()) & rated
    everything = set(hard_negatives(np.random.default_rng(0), space, twin, rated, 10_000).tolist())
    assert everything == allowed  # asked for more than there are: each family's top HARD_TOP never-rated items
    assert len(allowed) < ds.n_items - len(rated)  # a subset of the catalog, not all of it
    assert not len(hard_negatives(np.random.default_rng(0), space, twin, rated, 0))
