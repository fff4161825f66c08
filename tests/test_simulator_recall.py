"""A twin's Q&A about its own record (simulator.recall), a twin's re-drawn rating of a re-shown item (rule L3),
and pair collection with a re-shown item. No LLM decides anything here: a stub backend only voices."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from evals.validity.grounding import item_space, memories
from personas.card import Fact, PersonaCard
from recsys import Dataset, time_split
from simulator import Item, PopularityRecommender, SessionSettings, StructuredJudge, run_session, sample_users
from simulator.choice import ChoiceModel
from simulator.evidence import EVIDENCE, evidence_features
from simulator.grounded import Grounding, GroundedUser
from simulator.llm import Backend, LLMClient, RawCompletion
from simulator.recall import (NO, YES, answer_own, asks_own_fact, leave_out, own_column, persona_members,
                              recall_features, space_without)
from tests.test_grounding import small_dataset

PERSONA = PersonaCard(id="p0", name="Kim", summary="Kim watches family comedies and avoids horror.",
                      likes=["Comedy", "Children's"], dislikes=["Horror"])
FACTS = [Fact(key="age group", question="How old are you?", value="30-39", choices=["18-29", "30-39", "50+"])]


def _fill(schema: dict):
    """The smallest valid answer to a JSON schema: whatever the voice's schema asks, a line comes back."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {k: _fill(schema["properties"][k]) for k in schema.get("required", [])}
    if kind == "array":
        return [_fill(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "Fine"
    if kind == "boolean":
        return False
    return 1


class StubVoice(Backend):
    """Answers every schema with its smallest valid answer (a grounded user's decision is not the LLM's)."""

    name = "stub"
    model = "stub-1"

    async def complete(self, messages, *, temperature, max_tokens, seed, json_schema):
        return RawCompletion(text=json.dumps(_fill(json_schema or {"type": "string"})), tokens_in=1, tokens_out=1)


def _model(coef: dict[str, float] | None = None, intercept: float = 0.0, llm: bool = False) -> ChoiceModel:
    """A choice model whose P(like | watched) is sigmoid(intercept + sum coef_f x_f)."""
    features = list(EVIDENCE) + (["llm"] if llm else [])
    f = len(features)
    w = [float((coef or {}).get(name, 0.0)) for name in features]
    return ChoiceModel(kind="twin", features=features, mean=[0.0] * f, scale=[1.0] * f, like_coef=[1.0] * f,
                       like_intercept=0.0, rating_coef=[0.5, 0.5] + [0.1] * f, rating_intercept=0.0, rating_sd=0.8,
                       take_level=-1.0, watched_coef=w, watched_intercept=intercept)


def _grounding(ds, model: ChoiceModel, *, sampled: bool = True) -> Grounding:
    split = time_split(ds, 0.2)
    space = item_space(ds, split.train)
    mems = memories(ds, split.train, {str(u + 1): "p0" for u in range(ds.n_users)}, space)
    return Grounding(space, {"twin": model, "persona": model.model_copy(update={"kind": "persona"})}, mems,
                     sampled=sampled)


def _twin(grounding: Grounding, user_id: str, card: PersonaCard = PERSONA) -> GroundedUser:
    user = GroundedUser(LLMClient(StubVoice()), grounding=grounding)
    user.reset(sample_users([card], 1, seed=0, variant="grounded", twins={card.id: [user_id]})[0])
    return user


def _catalog(g) -> tuple[list[Item], list[float]]:
    """The grounding's items as a recommender shows them, and their popularity."""
    space = g.space
    items = [Item(id=space.ids[i], title=space.titles[i], facets={"genres": space.genres[i]}) for i in range(len(space.ids))]
    return items, np.exp(space.log_pop).tolist()


def taste_dataset(n_users: int = 40, n_items: int = 30, per_user: int = 15, seed: int = 0) -> Dataset:
    """Users who each love one genre of three (ratings 4-5) and pan the others (1-2): their record is
    predictable from the rest of it, so a twin that never saw a film can still say whether it liked it."""
    ds = small_dataset(n_users=1, n_items=n_items)
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, size=per_user, replace=False)):
            loved = int(i) % 3 == u % 3
            rows.append((u, int(i), float(rng.integers(4, 6) if loved else rng.integers(1, 3)), float(1000 * u + t)))
    users = pd.DataFrame({"user_id": [str(u + 1) for u in range(n_users)]})
    return Dataset(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]), ds.items, users, "taste")


# ---- 1. leave one out ---------------------------------------------------------------------------------------------


def test_the_film_asked_about_is_left_out_of_the_memory_and_the_item_space():
    ds = small_dataset(n_users=30, n_items=24, per_user=10)
    g = _grounding(ds, _model())
    space = g.space
    m = g.memories["twin:3"]
    liked = set(m.liked.tolist())
    item = next((int(i) for i in m.recent if int(i) in liked), int(m.liked[0]))  # liked, and recent if it can be
    before = {k: getattr(m, k).copy() for k in ("liked", "disliked", "recent", "watched", "taste", "persona_share")}
    n = persona_members(g, "p0")
    assert n == sum(1 for k in g.memories if k.startswith("twin:")) == 30
    out = leave_out(m, item, space, members=n)
    assert item not in out.liked and item not in out.disliked and item not in out.recent and out.watched[item] == 0
    assert len(out.liked) == len(m.liked) - 1 and out.watched.sum() == m.watched.sum() - 1
    np.testing.assert_allclose(out.taste, m.taste - space.factors[item])  # taste: the sum of the rated items' factors
    assert out.persona_share[item] == pytest.approx(m.persona_share[item] - 1 / n)  # the twin's own like is gone
    assert np.delete(out.persona_share, item).tolist() == np.delete(m.persona_share, item).tolist()
    for k, v in before.items():  # the grounding's memory (and the persona's shared array) is not changed
        np.testing.assert_array_equal(getattr(m, k), v)
    # the item space without the twin's rating: its column of the item's kNN vector, its positive
    col = own_column(space, m)
    assert col == 2  # user '3' is row 2 of the data set
    lean = space_without(space, m, item)
    assert space.vectors[item, col] > 0 and lean.vectors[item, col] == 0
    assert np.linalg.norm(lean.vectors[item]) == pytest.approx(1.0)
    assert np.array_equal(np.delete(lean.vectors, item, 0), np.delete(space.vectors, item, 0))
    assert np.expm1(lean.log_pop[item]) == pytest.approx(np.expm1(space.log_pop[item]) - 1)
    # the evidence of the film is not the full memory's: history no longer holds its own cosine of 1
    full = evidence_features(space, m, np.asarray([item]))[0]
    loo = recall_features(space, m, item, members=n)[0]
    f = {name: j for j, name in enumerate(EVIDENCE)}
    assert full[f["history"]] > loo[f["history"]]
    assert full[f["n_rated"]] > loo[f["n_rated"]] and full[f["persona"]] > loo[f["persona"]]
    assert full[f["popularity"]] > loo[f["popularity"]]
    with pytest.raises(ValueError, match="only a twin"):
        leave_out(g.memories["persona:p0"], item, space)


def test_a_disliked_film_keeps_the_personas_share_and_popularity():
    ds = small_dataset(n_users=30, n_items=24, per_user=10)
    g = _grounding(ds, _model())
    m = next(v for k, v in g.memories.items() if k.startswith("twin:") and len(v.disliked))
    item = int(m.disliked[0])
    out = leave_out(m, item, g.space, members=persona_members(g, "p0"))
    assert item not in out.disliked and out.watched[item] == 0
    assert out.persona_share[item] == m.persona_share[item]  # shares count likes only
    assert space_without(g.space, m, item).log_pop[item] == g.space.log_pop[item]


# ---- 1. graded against the real record ----------------------------------------------------------------------------


@pytest.mark.parametrize("sampled", [False, True])
async def test_the_answer_is_graded_against_the_real_record(sampled):
    ds = small_dataset(n_users=30, n_items=24, per_user=10)
    m = _grounding(ds, _model()).memories["twin:3"]
    liked, disliked = int(m.liked[0]), int(m.disliked[0])
    yes = _twin(_grounding(ds, _model(intercept=8.0), sampled=sampled), "3")  # P(like | watched) ~ 1: says yes
    no = _twin(_grounding(ds, _model(intercept=-8.0), sampled=sampled), "3")  # ~ 0: says no
    right = await answer_own(yes, seed=1, item=liked)
    assert (right.expected, right.answer, right.correct) == (YES, YES, True) and right.p_yes > 0.99
    assert right.choices == [YES, NO] and right.question.startswith("Did you like ") and right.key.startswith("own:")
    wrong = await answer_own(yes, seed=1, item=disliked)  # "yes" of a film the real user panned
    assert (wrong.expected, wrong.answer, wrong.correct) == (NO, YES, False)
    wrong = await answer_own(no, seed=1, item=liked)
    assert (wrong.expected, wrong.answer, wrong.correct) == (YES, NO, False)
    # flipping the real record flips the grade: the same film, now panned in the twin's history
    g = _grounding(ds, _model(intercept=8.0), sampled=sampled)
    g.memories["twin:3"] = dataclasses.replace(m, liked=m.liked[m.liked != liked],
                                               disliked=np.append(m.disliked, liked))
    flipped = await answer_own(_twin(g, "3"), seed=1, item=liked)
    assert (flipped.expected, flipped.answer, flipped.correct) == (NO, YES, False)
    with pytest.raises(ValueError, match="neither liked nor disliked"):
        await answer_own(yes, seed=1, item=next(i for i in range(24) if m.watched[i] == 0))
    # a twin whose record holds only 3s has nothing to be asked: a recorded failure, not a grade
    g.memories["twin:3"] = dataclasses.replace(m, liked=m.liked[:0], disliked=m.disliked[:0])
    none = await _twin(g, "3").answer(None, seed=1)
    assert none.correct is None and "no liked or disliked training film" in none.error


async def test_twins_answer_their_own_record_better_than_chance_and_both_answers_are_asked():
    # P(like | watched) rises with the genre lift of the twin's *other* likes: the film itself is left out
    g = _grounding(taste_dataset(), _model({"genre": 3.0}))
    twins = sorted(k.split(":")[1] for k in g.memories if k.startswith("twin:"))
    records = [await _twin(g, u).answer(None, seed=s) for u in twins for s in range(4)]
    assert all(r.error is None and r.correct is not None and 0.0 <= r.p_yes <= 1.0 for r in records)
    expected = [r.expected for r in records]
    assert 0.3 < expected.count(YES) / len(expected) < 0.7  # liked and disliked films are both asked
    accuracy = np.mean([r.correct for r in records])
    expected_accuracy = np.mean([r.p_yes if r.expected == YES else 1 - r.p_yes for r in records])
    assert accuracy > 0.8 and expected_accuracy > 0.8, (accuracy, expected_accuracy)
    # the same questions asked of a twin whose model ignores its record are answered at chance
    blind = _grounding(taste_dataset(), _model())
    coin = [await _twin(blind, u).answer(None, seed=s) for u in twins for s in range(4)]
    assert [r.key for r in coin] == [r.key for r in records]  # the question is drawn from the seed, not the model
    assert 0.3 < np.mean([r.correct for r in coin]) < 0.7


async def test_a_session_asks_a_twin_its_own_record_and_a_persona_level_user_the_card():
    g = _grounding(small_dataset(n_users=30, n_items=24, per_user=10), _model({"genre": 1.0}))
    items, pop = _catalog(g)
    llm = LLMClient(StubVoice())
    settings = SessionSettings(slate_size=3, qa_turns=[1])
    for card in (PERSONA, PERSONA.model_copy(update={"facts": FACTS})):  # the card's facts or none: its own record
        twin = sample_users([card], 1, seed=0, variant="grounded", twins={"p0": ["3"]})[0]
        tr = await run_session(twin, PopularityRecommender(items, pop), 2, 4, llm, grounding=g, settings=settings)
        qa = tr.turns[1].qa
        assert qa is not None and qa.key.startswith("own:") and qa.choices == [YES, NO] and qa.p_yes is not None
        assert tr.turns[1].consistency["qa"] == float(qa.correct) and tr.turns[0].qa is None
    persona_level = sample_users([PERSONA.model_copy(update={"facts": FACTS})], 1, seed=0, variant="grounded")[0]
    sim = GroundedUser(llm, grounding=g)
    sim.reset(persona_level)
    assert not asks_own_fact(sim)
    tr = await run_session(persona_level, PopularityRecommender(items, pop), 2, 4, llm, grounding=g, settings=settings)
    assert tr.turns[1].qa.key == "age group" and tr.turns[1].qa.p_yes is None  # the card's fact, as before
    no_facts = sample_users([PERSONA], 1, seed=0, variant="grounded")[0]
    tr = await run_session(no_facts, PopularityRecommender(items, pop), 2, 4, llm, grounding=g, settings=settings)
    assert all(t.qa is None for t in tr.turns)


async def test_a_twin_of_an_implicit_log_is_asked_the_card_not_its_own_record():
    """Its record holds only what it took, each kept (`ChoiceModel.implicit`): "did you like it?" would be "yes" by
    construction, so the session asks the card's fact, as it asks a persona-level user's."""
    explicit = _model({"genre": 1.0})
    implicit = explicit.model_copy(update={"implicit": True})
    ds = small_dataset(n_users=30, n_items=24, per_user=10)
    assert asks_own_fact(_twin(_grounding(ds, explicit), "3"))
    g = _grounding(ds, implicit)
    assert not asks_own_fact(_twin(g, "3"))
    items, pop = _catalog(g)
    twin = sample_users([PERSONA.model_copy(update={"facts": FACTS})], 1, seed=0, variant="grounded",
                        twins={"p0": ["3"]})[0]
    tr = await run_session(twin, PopularityRecommender(items, pop), 2, 4, LLMClient(StubVoice()), grounding=g,
                           settings=SessionSettings(slate_size=3, qa_turns=[1]))
    assert tr.turns[1].qa.key == "age group" and tr.turns[1].qa.p_yes is None
    assert all(set(t.ratings.values()) <= {3, 5} for t in tr.turns)  # the log's values: taken 5, the rest 3


async def test_the_llm_feature_is_the_personas_shared_judgement_and_the_question_adds_none():
    ds = small_dataset(n_users=30, n_items=24, per_user=10)
    g = _grounding(ds, _model({"llm": 1.0}, llm=True))
    item = int(g.memories["twin:3"].liked[0])
    for value, answer in ((8.0, YES), (-8.0, NO)):  # stored judgements (the stub cannot judge): they are read
        g.judged.update({("p0", i): value for i in g.space.ids})
        rec = await answer_own(_twin(g, "3"), seed=0, item=item)
        assert rec.answer == answer and rec.error is None
    g.judged.pop(("p0", g.space.ids[item]))
    from simulator.grounded import llm_judgement

    rec = await answer_own(_twin(g, "3"), seed=0, item=item, judge=llm_judgement)  # not stored: asked, the stub fails
    assert rec.answer is None and rec.correct is None and "LLM judgement" in rec.error
    assert ("p0", g.space.ids[item]) not in g.judged


# ---- 2. a twin's re-shown item is rated again -------------------------------------------------------------------


async def test_a_twins_re_shown_item_is_rated_afresh_and_a_far_rating_fires_l3():
    g = _grounding(small_dataset(n_users=30, n_items=24, per_user=10), _model({"genre": 1.0}))
    items, pop = _catalog(g)
    llm = LLMClient(StubVoice())
    twin = sample_users([PERSONA], 1, seed=0, variant="grounded", twins={"p0": ["3"]})[0]

    async def reshown_ratings(grounding, seed):
        tr = await run_session(twin, PopularityRecommender(items, pop), 3, seed, llm, grounding=grounding,
                               settings=SessionSettings(slate_size=3, qa_turns=[], reshow_from=1))
        assert all(t.ok for t in tr.turns), [t.error for t in tr.turns]
        # (earlier rating, later rating) of each re-shown item chosen in both lines or in neither: its features
        # are the same (the memory does not change in a session), so only the draw can change its rating
        pairs = [(a.ratings[i], b.ratings[i]) for k, b in enumerate(tr.turns) for a in tr.turns[:k]
                 for i in set(a.ratings) & set(b.ratings) if (i in a.chosen) == (i in b.chosen)]
        return tr, pairs

    differ = []
    for seed in range(8):  # sampled (the default): each turn's ratings are drawn with that turn's seed
        tr, pairs = await reshown_ratings(g, seed)
        differ.append(any(a != b for a, b in pairs))
    assert any(differ), "a re-shown item's rating is drawn again at each turn"
    fixed = Grounding(g.space, g.models, g.memories, sampled=False)  # the deterministic decision: the same rating
    compared = 0
    for seed in range(8):
        _, pairs = await reshown_ratings(fixed, seed)
        assert all(a == b for a, b in pairs)
        compared += len(pairs)
    assert compared
    # rule L3 on twin lines: the real first line, and a second rating one of its items 3+ points apart
    first = tr.turns[0]
    item_id, r = next(iter(first.ratings.items()))
    far = r + 3 if r <= 2 else r - 3
    second = first.model_copy(update={"turn": 1, "ratings": {**first.ratings, item_id: far}})
    verdict = await StructuredJudge().against_earlier(PERSONA, second, first)
    assert verdict.contradiction and any(x.startswith("L3") for x in verdict.reasons)
    same = await StructuredJudge().against_earlier(PERSONA, first.model_copy(update={"turn": 1}), first)
    assert not any(x.startswith("L3") for x in same.reasons)


# ---- 3. pair collection re-shows an item ------------------------------------------------------------------------


async def test_pair_collection_re_shows_an_item_so_l3_can_rank_candidates():
    from simulator.training import RESHOW_FROM, collect_pairs
    from tests.test_simulator_session import CARD, ITEMS, POP, ScriptedBackend

    assert RESHOW_FROM == 1
    users = sample_users([CARD], 1, seed=0)
    _, transcripts = await collect_pairs(users, lambda u: PopularityRecommender(ITEMS, POP),
                                         llm=LLMClient(ScriptedBackend()), turns=2, best_of=2, seed=3,
                                         show_progress=False)
    first, second = transcripts[0].turns
    assert len(second.slate) == 2 and second.slate[-1].id in {it.id for it in first.slate}  # 1 new item + the probe
    assert all(t.qa is None for t in transcripts[0].turns)  # Q&A is an evaluation, never a reward
