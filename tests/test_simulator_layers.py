"""Layer sampling: seeded, distinct, within documented ranges; prompts from templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from personas.card import PersonaCard, read_personas
from simulator import CONTEXT, TRAIT_JITTER, sample_users
from simulator.layers import describe_traits
from simulator.user import NaiveUser, SimulatedUser

PERSONAS = Path(__file__).parent / "data" / "personas_movies.jsonl"


@pytest.fixture(scope="module")
def cards() -> list[PersonaCard]:
    return read_personas(PERSONAS)


def test_same_seed_same_users_other_seed_other_users(cards):
    a, b, c = sample_users(cards, 12, seed=5), sample_users(cards, 12, seed=5), sample_users(cards, 12, seed=6)
    assert [u.model_dump() for u in a] == [u.model_dump() for u in b]
    assert [u.model_dump() for u in a] != [u.model_dump() for u in c]


def test_users_are_distinct_and_personas_balanced(cards):
    users = sample_users(cards, 30, seed=0)
    assert len({u.signature() for u in users}) == 30
    assert len({u.user_id for u in users}) == 30
    counts = {c.id: sum(u.persona.id == c.id for u in users) for c in cards}
    assert set(counts.values()) == {10}


def test_layers_stay_in_documented_ranges(cards):
    assert len(CONTEXT) >= 10 and all(2 <= len(v) <= 6 for v in CONTEXT.values())
    for u in sample_users(cards, 30, seed=1):
        assert u.subtopic in u.persona.likes
        assert set(u.context) == set(CONTEXT)
        assert all(u.context[k] in CONTEXT[k] for k in CONTEXT)
        for name, value in u.traits.model_dump().items():
            base = getattr(u.persona.traits, name)
            assert 0.0 <= value <= 1.0 and abs(value - base) <= TRAIT_JITTER + 1e-9
        layers = u.layers()
        assert layers["persona_id"] == u.persona.id and layers["subtopic"] == u.subtopic
        assert layers["context"] == u.context and set(layers["traits"]) == set(u.traits.model_dump())


def test_bad_persona_sets_are_clear_errors(cards):
    with pytest.raises(ValueError, match="empty persona list"):
        sample_users([], 3, seed=0)
    no_likes = cards[0].model_copy(update={"likes": [], "id": "bare"})
    users = sample_users([no_likes], 3, seed=0)
    assert all(u.subtopic is None for u in users)  # the session records this as a failed turn


def test_prompts_come_from_templates_and_variants_differ(cards):
    user = sample_users(cards, 1, seed=0)[0]
    layered, naive = SimulatedUser(llm=None), NaiveUser(llm=None)
    layered.reset(user)
    naive.reset(user)
    full = layered.system_prompt()
    assert user.persona.name in full and f"Today you want: {user.subtopic}." in full
    assert user.context["mood"] in full and user.context["device"] in full
    short = naive.system_prompt()
    assert short.count(".") == 1 and user.subtopic not in short and user.context["mood"] not in short
    assert naive.layers() == {"variant": "naive", "persona_id": user.persona.id}
    assert layered.profile_problem(user) is None


def test_describe_traits_names_only_strong_traits(cards):
    t = cards[1].traits  # openness 0.8, extraversion 0.3, neuroticism 0.3
    assert describe_traits(t) == "open to new things, reserved, calm"


def test_a_layer_list_from_the_command_line_is_parsed_or_refused_naming_the_layer():
    from simulator.layers import parse_layers

    assert parse_layers("subtopic,context") == ("subtopic", "context")
    assert parse_layers(" context , subtopic ") == ("context", "subtopic")
    assert parse_layers("none") == () == parse_layers("")
    with pytest.raises(ValueError, match="'topic' is not a layer"):
        parse_layers("subtopic,topic")
