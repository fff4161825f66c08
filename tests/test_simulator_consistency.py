"""Consistency metrics on hand-built transcripts with known scores; the judges' rules."""

from __future__ import annotations

import pytest

from personas.card import Fact, PersonaCard
from simulator import Item, QARecord, StructuredJudge, Transcript, Turn, rescore, summarize
from simulator.matching import concepts_in, stated_preferences, tokens

CARD = PersonaCard(
    id="p", name="Ana", summary="Ana likes to laugh.", likes=["Comedy", "Romance"], dislikes=["Horror"],
    facts=[Fact(key="job", question="Job?", value="nurse", choices=["nurse", "chef"])],
)
A = Item(id="a", title="Laugh Riot", facets={"genres": ["Comedy"], "year": ["1995"]})
B = Item(id="b", title="Night Terror", facets={"genres": ["Horror"]})
C = Item(id="c", title="Love Actually", facets={"genres": ["Romance", "Comedy"]})
D = Item(id="d", title="Gun Fight", facets={"genres": ["Action"]})
E = Item(id="e", title="Funny Bones", facets={"genres": ["Comedy"]})
F = Item(id="f", title="Blood Manor", facets={"genres": ["Horror"]})


def turn(t, slate, chosen, ratings, utterance, ok=True, qa=None) -> Turn:
    return Turn(user_id="u", persona_id="p", variant="layered", turn=t, seed=0, slate=slate, chosen=chosen,
                ratings=ratings, utterance=utterance, ok=ok, error=None if ok else "LLM: broken", qa=qa)


def qa(correct: bool) -> QARecord:
    return QARecord(key="job", question="Job?", choices=["nurse", "chef"], expected="nurse",
                    answer="nurse" if correct else "chef", correct=correct)


def transcript() -> Transcript:
    """Known answers: prompt-to-line per line [1, 0, 1]; line-to-line [None, 0, 0.5]; Q&A [1, 0]."""
    return Transcript(user_id="u", persona_id="p", variant="layered", seed=0, layers={"subtopic": "Comedy"}, turns=[
        turn(0, [A, B, C, D], ["a"], {"a": 5, "b": 1, "c": 4, "d": 3}, "I love comedy."),
        # P1 (chose horror) + P3 (praises horror); conflicts with line 0 (L2: rated horror 1; L3: b 1 -> 5)
        turn(1, [A, B, C, D], ["b"], {"a": 4, "b": 5, "c": 4, "d": 2}, "Horror is great tonight.", qa=qa(True)),
        # consistent with the persona and line 0; conflicts with line 1 (L1: horror +1 then -1)
        turn(2, [E, F], ["e"], {"e": 5, "f": 1}, "No more horror for me."),
        turn(3, [D], [], {}, "", ok=False, qa=qa(False)),
    ])


async def test_hand_built_transcript_has_known_scores():
    scored = await rescore(transcript(), CARD, StructuredJudge())
    got = [(t.consistency.get("prompt_to_line"), t.consistency.get("line_to_line")) for t in scored.turns[:3]]
    assert got == [(1.0, None), (0.0, 0.0), (1.0, 0.5)]
    assert scored.turns[3].consistency == {}  # a failed turn is no line
    s = summarize([scored])
    assert s["prompt_to_line"] == pytest.approx(2 / 3)
    assert s["prompt_to_line_inconsistency"] == pytest.approx(1 / 3)
    assert s["line_to_line"] == pytest.approx(0.25)
    assert s["qa"] == pytest.approx(0.5)
    assert (s["n_users"], s["n_turns"], s["n_lines"], s["n_failed"], s["n_questions"]) == (1, 4, 3, 1, 2)
    assert s["by_turn"] == {"0": 1.0, "1": 0.0, "2": 1.0}
    # with the card: every slate holds a liked or disliked item, so every line can fire and nothing changes
    with_card = summarize([scored], [CARD])
    assert with_card["n_can_fire"] == {"prompt_to_line": 3, "line_to_line": 2, "qa": 2}
    assert with_card["prompt_to_line"] == s["prompt_to_line"] and with_card["by_turn"] == s["by_turn"]
    reasons = " | ".join(scored.turns[1].reasons)
    assert "P1: chose 'Night Terror'" in reasons and "P3: says they like horror" in reasons
    assert "L2:" in reasons and "L3: rated 'Night Terror' 5, 1 at turn 0" in reasons
    assert any(r.startswith("L1: now dislikes horror") for r in scored.turns[2].reasons)


def test_rules_for_sought_subtopic_and_ambiguous_items():
    judge = StructuredJudge()
    # P2: rating the sought subtopic low contradicts; an item both liked and disliked is ambiguous (no P1)
    mixed = Item(id="m", title="Scary Movie", facets={"genres": ["Comedy", "Horror"]})
    line = turn(0, [A, mixed], ["m"], {"a": 1, "m": 5}, "Fine.")
    assert judge.persona_reasons(CARD, "Comedy", line) == ["P2: rated 'Laugh Riot' 1 though looking for Comedy"]
    # P3 with negation: "don't like" a liked concept
    line = turn(0, [D], [], {"d": 3}, "I don't like romantic films")
    assert judge.persona_reasons(CARD, None, line) == ["P3: says they dislike romance (liked)"]
    # empty summaries are None, not zero
    assert summarize([])["prompt_to_line"] is None and summarize([])["qa"] is None


def test_stated_preferences_keyword_and_negation_rules():
    vocab = ["Comedy", "Horror", "Sci-Fi", "Romance"]
    assert stated_preferences("I don't like horror, but I love comedies!", vocab) == {"horror": -1, "comedy": 1}
    assert stated_preferences("Not a fan of sci fi.", vocab) == {"sci-fi": -1}
    assert stated_preferences("Something funny please", vocab) == {}  # no cue: states nothing
    assert stated_preferences("I love horror. I hate horror.", vocab) == {}  # both ways: dropped
    assert stated_preferences("That one is too scary", vocab) == {"horror": -1}
    assert tokens("Children's comedies") == ["children", "comedy"]
    assert concepts_in("a romantic evening", vocab) == {"romance"}
