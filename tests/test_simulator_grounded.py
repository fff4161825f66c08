"""The grounded user on the real embedded model; the reward's commitment term; the re-shown probe."""

from __future__ import annotations

import numpy as np

from evals.validity.grounding import item_space, memories
from personas.card import PersonaCard
from recsys import time_split
from simulator import Item, PopularityRecommender, SessionSettings, StructuredJudge, Turn, run_session, sample_users
from simulator.choice import ChoiceModel
from simulator.consistency import score_line
from simulator.evidence import EVIDENCE
from simulator.grounded import Grounding
from simulator.llm import LLMClient
from tests.test_grounding import small_dataset
from tests.test_simulator_session import CARD, ITEMS, POP, ScriptedBackend

PERSONA = PersonaCard(id="p0", name="Kim", summary="Kim watches family comedies and avoids horror.",
                      likes=["Comedy", "Children's"], dislikes=["Horror"])


async def test_commitment_scores_above_an_answer_that_commits_to_nothing():
    slate = ITEMS[:4]  # two comedies, two horror films
    common = dict(user_id="u", persona_id="nurse", variant="layered", turn=0, seed=0, slate=slate)
    empty = Turn(**common, chosen=[], ratings={it.id: 3 for it in slate}, utterance="Okay then.")
    aligned = Turn(**common, chosen=["1"], ratings={"1": 5, "2": 1, "3": 4, "4": 2}, utterance="A comedy, great.")
    s_empty, _, _ = await score_line(StructuredJudge(), CARD, "Comedy", empty, [])
    s_aligned, _, _ = await score_line(StructuredJudge(), CARD, "Comedy", aligned, [])
    assert s_empty["prompt_to_line"] == s_aligned["prompt_to_line"] == 1.0  # neither contradicts the card
    assert s_empty["alignment"] == 0.0 and s_aligned["alignment"] == 1.0
    assert s_aligned["reward"] > s_empty["reward"]


async def test_a_re_shown_item_lets_line_to_line_fire():
    def rate(value):  # every item rated ``value``: re-rating an item 3+ points apart is rule L3
        return lambda ids: {"utterance": "Hmm", "ratings": {i: value for i in ids}, "chosen": [], "stop": False}

    seed = 11
    llm = LLMClient(ScriptedBackend({}))
    from simulator import derive_seed

    llm.backend.replies = {derive_seed(seed, "turn", 0, 0): rate(5), derive_seed(seed, "turn", 1, 0): rate(1)}
    u = sample_users([CARD], 1, seed=0)[0]
    tr = await run_session(u, PopularityRecommender(ITEMS, POP), 2, seed, llm,
                           settings=SessionSettings(slate_size=2, reshow_from=1))
    first, second = tr.turns
    assert len(second.slate) == 3 and second.slate[-1].id in {it.id for it in first.slate}
    probe = second.slate[-1].id
    assert (first.ratings[probe], second.ratings[probe]) == (5, 1)
    assert second.consistency["line_to_line"] == 0.0 and any(r.startswith("L3") for r in second.reasons)
    never = await run_session(u, PopularityRecommender(ITEMS, POP), 2, seed, llm,
                              settings=SessionSettings(slate_size=2, reshow_from=None))
    assert len(never.turns[1].slate) == 2


def _grounding(use_llm: bool) -> tuple[Grounding, list[Item], list[float]]:
    ds = small_dataset(n_users=30, n_items=24, per_user=10)
    split = time_split(ds, 0.2)
    space = item_space(ds, split.train)
    mems = memories(ds, split.train, {str(u + 1): "p0" for u in range(ds.n_users)}, space)
    features = list(EVIDENCE) + (["llm"] if use_llm else [])
    f = len(features)
    models = {kind: ChoiceModel(kind=kind, features=features, mean=[0.0] * f, scale=[1.0] * f,
                                like_coef=[1.0] * f, like_intercept=0.5, rating_coef=[0.5, 0.5] + [0.1] * f,
                                rating_intercept=0.0, rating_sd=0.8, take_level=-1.0, watched_coef=[0.2] * f,
                                watched_intercept=0.5) for kind in ("twin", "persona")}
    items = [Item(id=space.ids[i], title=space.titles[i], facets={"genres": space.genres[i]}) for i in range(len(space.ids))]
    pop = np.exp(space.log_pop).tolist()
    return Grounding(space, models, mems), items, pop


async def test_grounded_user_decides_by_the_written_down_model_and_the_llm_voices_it(embedded_backend):
    grounding, items, pop = _grounding(use_llm=True)
    llm = LLMClient(embedded_backend)
    twin = sample_users([PERSONA], 1, seed=0, variant="grounded", twins={"p0": ["3"]})[0]
    assert twin.twin == "3" and twin.layers()["twin"] == "3"
    tr = await run_session(twin, PopularityRecommender(items, pop), 2, 5, llm, grounding=grounding,
                           settings=SessionSettings(slate_size=4, best_of=2, reshow_from=None), pool=items[:6])
    assert [t.ok for t in tr.turns] == [True, True], [t.error for t in tr.turns]
    memory = grounding.memories["twin:3"]
    latest_liked = [grounding.space.ids[i] for i in memory.recent[::-1] if i in set(memory.liked.tolist())]
    assert tr.onboarding.liked == (latest_liked or [grounding.space.ids[i] for i in memory.liked])[:10]
    assert not {it.id for t in tr.turns for it in t.slate} & set(tr.onboarding.liked)  # onboarded items are not shown again
    for t in tr.turns:
        assert t.utterance and set(t.decision) == {it.id for it in t.slate}
        row = next(iter(t.decision.values()))
        assert set(row) == {"p_take", "p_like", *EVIDENCE, "llm"} and 0.0 <= row["p_like"] <= 1.0
        # the chosen items were drawn from P(take), at most max_choices; a chosen item's rating says whether
        # it was liked (>= 4) or not (<= 3), and nothing is chosen that was all but impossible to take
        assert len(t.chosen) <= 2 and all(t.decision[i]["p_take"] >= 0.01 for i in t.chosen)
    # best-of-2 candidates share the decision: the same session gives the same choices with best-of-1
    one = await run_session(twin, PopularityRecommender(items, pop), 2, 5, llm, grounding=grounding,
                            settings=SessionSettings(slate_size=4, best_of=1, reshow_from=None), pool=items[:6])
    assert [t.chosen for t in one.turns] == [t.chosen for t in tr.turns]
    assert [t.ratings for t in one.turns] == [t.ratings for t in tr.turns]


async def test_an_items_judgement_is_asked_once_per_persona_and_shared_by_its_users(embedded_backend):
    grounding, items, pop = _grounding(use_llm=True)
    grounding.judge_seed = 3
    llm = LLMClient(embedded_backend)
    settings = SessionSettings(slate_size=4, best_of=1, reshow_from=None)
    first = sample_users([PERSONA], 1, seed=0, variant="grounded", twins={"p0": ["3"]})[0]
    tr = await run_session(first, PopularityRecommender(items, pop), 2, 5, llm, grounding=grounding,
                           settings=settings, pool=items[:6])
    shown = list(dict.fromkeys(it.id for t in tr.turns for it in t.slate))
    assert set(grounding.judged) == {("p0", i) for i in shown}
    # each value is the judgement asked afresh with the calibration's seed, and what the decision used
    from simulator.grounded import llm_judgement
    space = grounding.space
    fresh = await llm_judgement(LLMClient(embedded_backend), PERSONA, grounding.memories["persona:p0"], space,
                                space.index(shown), seed=3)
    assert np.allclose([grounding.judged[("p0", i)] for i in shown], fresh)
    # another user of the persona is served from the shared judgements, not asked again: poisoned values show
    grounding.judged.update({("p0", it.id): 8.0 for it in items})
    second = first.model_copy(update={"user_id": "u2", "twin": "4"})
    tr = await run_session(second, PopularityRecommender(items, pop), 2, 9, llm, grounding=grounding,
                           settings=settings, pool=items[:6])
    assert all(row["llm"] == 8.0 for t in tr.turns for row in t.decision.values())


async def test_grounded_user_without_a_calibration_or_memory_is_a_recorded_failure():
    llm = LLMClient(ScriptedBackend({}))
    grounding, items, pop = _grounding(use_llm=False)
    u = sample_users([PERSONA], 1, seed=0, variant="grounded")[0]
    tr = await run_session(u, PopularityRecommender(items, pop), 2, 1, llm)
    assert not tr.turns[0].ok and "calibrat" in tr.turns[0].error
    stranger = u.model_copy(update={"twin": "no-such-user"})
    tr = await run_session(stranger, PopularityRecommender(items, pop), 2, 1, llm, grounding=grounding)
    assert not tr.turns[0].ok and "no memory for twin 'no-such-user'" in tr.turns[0].error


async def test_a_persons_own_level_reaches_its_likes_and_ratings_and_stays_across_runs():
    from scipy.special import expit

    from simulator.grounded import GroundedUser
    from simulator.selector import person_logit

    grounding, items, _ = _grounding(use_llm=False)
    grounding.models = {k: m.model_copy(update={"like_spread": 1.5, "rating_spread": 0.6})
                        for k, m in grounding.models.items()}
    users = sample_users([PERSONA], 6, seed=0, variant="grounded", twins={"p0": ["1", "2", "3", "4", "5", "6"]})
    user = GroundedUser(LLMClient(ScriptedBackend({})), grounding=grounding)
    levels, p_like, expected = [], [], []
    slate = items[:8]
    for profile in users:
        user.reset(profile)
        level = user.level()
        user.reset(profile)
        assert user.level() == level  # the person's own: every run of the same user shares it
        X = await user.features(slate)
        model = grounding.models["twin"]
        d = user._decide(slate, X, seed=1, max_choices=None, may_stop=False)
        logit = model.watched_intercept + model.z(X) @ np.asarray(model.watched_coef)
        assert np.allclose(d.p_like, expit(person_logit(logit, 1.5, level)))
        memory = grounding.memories[f"twin:{profile.twin}"]
        flat = model.expected_rating(X, memory.mean_rating, grounding.space.mean_rating[grounding.space.index(
            [it.id for it in slate])])
        assert np.allclose(d.rating_scores, flat + 0.6 * level)
        levels.append(level)
    assert len(set(levels)) == len(users) and np.std(levels) > 0.3  # persons differ


async def test_the_grounding_decides_which_layers_a_grounded_users_decision_plays():
    from simulator.choice import CONTEXT_SHIFTS, FOCUS_SHIFT
    from simulator.grounded import GroundedUser

    grounding, items, _ = _grounding(use_llm=False)
    profile = sample_users([PERSONA], 1, seed=0, variant="grounded", twins={"p0": ["3"]})[0]
    profile = profile.model_copy(update={"subtopic": "Comedy", "context": {"time_available": "20 minutes"}})
    assert ("time_available", "20 minutes") in CONTEXT_SHIFTS
    slate = items[:8]
    logits = {}
    for layers in ((), ("subtopic",), ("context",), ("subtopic", "context")):
        grounding.layers = layers
        user = GroundedUser(LLMClient(ScriptedBackend({})), grounding=grounding)
        user.reset(profile)
        X = await user.features(slate)
        logits[layers] = user._decide(slate, X, seed=1, max_choices=None, may_stop=False).logits
    bare = grounding.models["twin"].like_logit(X)
    assert np.allclose(logits[()], bare)  # no layer: the twin's own affinity
    comedy = np.array(["Comedy" in (it.facets or {}).get("genres", []) for it in slate])
    assert comedy.any() and not comedy.all()
    focus = logits[("subtopic",)] - bare
    assert np.allclose(focus[comedy], FOCUS_SHIFT) and np.allclose(focus[~comedy], 0.0)  # the fitted focus shift
    assert np.allclose(logits[("context",)] - bare, -0.75)  # "20 minutes" lowers every item
    assert np.allclose(logits[("subtopic", "context")], bare + focus - 0.75)
