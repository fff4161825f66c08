"""Is an utterance faithful to its line's decision (simulator/faithfulness.py, rules F1-F5); the reward that
pays for commitment both ways and for a faithful voice; summarize's faithfulness and can-fire counts."""

from __future__ import annotations

import pytest

from personas.card import PersonaCard
from simulator import Item, StructuredJudge, Transcript, Turn, reward_of, summarize
from simulator.consistency import score_line
from simulator.faithfulness import Faithfulness, faithfulness, faithfulness_of, names, polarity
from simulator.judges import alignment, can_fire

TOY = Item(id="1", title="Toy Story (1995)", facets={"genres": ["Animation", "Children's", "Comedy"], "year": ["1995"]})
HEAT = Item(id="2", title="Heat (1995)", facets={"genres": ["Action", "Crime", "Thriller"], "year": ["1995"]})
FIELD = Item(id="3", title="Field of Dreams (1989)", facets={"genres": ["Drama"], "year": ["1989"]})
SHAWSHANK = Item(id="4", title="Shawshank Redemption, The (1994)", facets={"genres": ["Drama"]})
SLATE = [TOY, HEAT, FIELD, SHAWSHANK]
LIKED = ["Aladdin (1992)"]

CARD = PersonaCard(id="nurse", name="Maya", summary="A nurse who loves comedies. She avoids horror.",
                   likes=["Comedy"], dislikes=["Horror"])
LAUGH = Item(id="a", title="Laugh Riot", facets={"genres": ["Comedy"]})
TERROR = Item(id="b", title="Night Terror", facets={"genres": ["Horror"]})
GUNS = Item(id="c", title="Gun Fight", facets={"genres": ["Action"]})


def line(utterance, chosen=(), ratings=None, slate=SLATE, evidence=(), turn=0) -> Turn:
    ratings = ratings or {it.id: 5 if it.id in chosen else 2 for it in slate}
    return Turn(user_id="u", persona_id=CARD.id, variant="grounded", turn=turn, seed=0, slate=slate,
                chosen=list(chosen), ratings=ratings, utterance=utterance, evidence=list(evidence))


def test_names_normalises_titles():
    shawshank = "Shawshank Redemption, The (1994)"
    assert names("I loved The Shawshank Redemption!", shawshank)
    assert names("shawshank redemption it is", shawshank)  # no article, lower case
    assert names("Toy-Story, please", "Toy Story (1995)")  # punctuation ignored
    assert not names("Toy Stories for kids", "Toy Story (1995)")  # whole words only
    assert names("Se7en, tonight", "Seven (Se7en) (1995)")  # the aka counts
    assert names("I'd watch Heat", "Heat (1995)") and not names("the heat of the moment", "Heat (1995)")
    englishman = "Englishman Who Went Up a Hill, But Came Down a Mountain, The (1995)"
    assert names("The Englishman Who Went Up, sure", englishman)  # 4+ words: up to the 3rd significant word
    assert not names("An Englishman went up", englishman)
    assert names("Cite des enfants perdus", "City of Lost Children, The (Cité des enfants perdus, La) (1995)")


def test_sentiment_lexicon_and_negation():
    assert polarity("I loved it") == 1 and polarity("Great pick") == 1
    assert polarity("not good") == -1 and polarity("I don't like it") == -1 and polarity("It isn't for me") == -1
    assert polarity("Not bad at all") == 1  # a negation flips a negative cue too
    assert polarity("a comedy like Aladdin") == 0  # "like" compares here
    assert polarity("No, I love it") == 1  # the negation is in another clause
    assert polarity("Love Actually") == 1  # alone it is a cue; inside a line, a slate title is taken out first
    love = Item(id="9", title="Love Actually (2003)", facets={"genres": ["Romance"]})
    f = faithfulness(line("Love Actually, a romance", chosen=["9"], slate=[love], ratings={"9": 3}))
    assert f.sentiment == 0 and f.faithful


def test_a_faithful_line_passes_every_rule():
    f = faithfulness(line("I'll watch Toy Story, a comedy like Aladdin that I loved", chosen=["1"]), evidence=LIKED)
    assert f == Faithfulness(parsed=True, names_chosen=True, names_passed=[], sentiment=1, sentiment_agrees=True,
                             reason=True, degenerate=[], faithful=True)
    assert f.reasons() == []
    # the line's own evidence counts as the caller's does
    own = line("I'll watch Toy Story, like Aladdin that I loved", chosen=["1"], evidence=LIKED)
    assert faithfulness(own).faithful and faithfulness_of(own)["reason"] is True
    assert faithfulness(line("I'll watch Toy Story, like Aladdin that I loved", chosen=["1"])).reason is False


@pytest.mark.parametrize("utterance, chosen, rule", [
    ("A comedy, just like Aladdin that I loved", ["1"], "F1"),  # does not name the chosen
    ("Toy Story, a comedy, and Heat too", ["1"], "F2"),  # names a passed-over film
    ("What a great comedy and action slate, love it", [], "F3"),  # positive words, nothing chosen
    ("I'll watch Toy Story", ["1"], "F4"),  # no reason
    ("Fantasy, Fantasy, Fantasy, Fantasy", [], "F5"),  # a repeated word
    ("No, no, no, no, none of these is like Aladdin", [], "F5"),  # a small word 4 times in a row
    ("This is the perfect JSON response", [], "F5"),  # talk of the machinery
])
def test_each_rule_fails_on_a_crafted_line(utterance, chosen, rule):
    f = faithfulness(line(utterance, chosen=chosen), evidence=LIKED)
    assert f.parsed and f.faithful is False
    assert [r[:2] for r in f.reasons()].count(rule) >= 1, f.reasons()
    assert {r[:2] for r in f.reasons()} <= {rule, "F4"} or rule == "F5"  # the crafted rule, at most no reason too


def test_a_title_inside_a_longer_named_title_is_not_named():
    slate = [Item(id="1", title="Terminator, The (1984)", facets={"genres": ["Action"]}),
             Item(id="2", title="Heat (1995)", facets={"genres": ["Action"]})]
    common = dict(user_id="u", persona_id="p", variant="grounded", turn=0, seed=0, slate=slate,
                  ratings={"1": 2, "2": 4}, evidence=["Terminator 2: Judgment Day"])
    longer = faithfulness(Turn(**common, chosen=["2"], utterance="Heat, action like Terminator 2: Judgment Day"))
    assert longer.names_passed == [] and longer.reason and longer.faithful
    alone = faithfulness(Turn(**common, chosen=["2"], utterance="Heat, and The Terminator too"))
    assert alone.names_passed == ["Terminator, The (1984)"]


def test_the_parts_of_the_crafted_lines():
    assert faithfulness(line("Toy Story, a comedy, and Heat too", chosen=["1"])).names_passed == ["Heat (1995)"]
    assert faithfulness(line("Fantasy, Fantasy, Fantasy, Fantasy")).degenerate == ["'fantasy' 4 times"]
    assert faithfulness(line("No, no, no, no, no")).degenerate == ["'no' 5 times in a row"]
    assert faithfulness(line("No, it is not the one, no, not this, no, no thanks")).degenerate == []  # not in a row
    assert faithfulness(line("This is the perfect JSON response")).degenerate == ["talks of 'json'", "talks of 'response'"]
    nothing = faithfulness(line("What a great comedy and action slate, love it"))
    assert nothing.names_chosen is None and nothing.sentiment == 1 and nothing.sentiment_agrees is False
    # a chosen item rated 3 on average: any sentiment agrees
    meh = line("Toy Story, a comedy, not great", chosen=["1"], ratings={"1": 3, "2": 1, "3": 1, "4": 1})
    assert faithfulness(meh).sentiment == -1 and faithfulness(meh).faithful


def test_the_issues_example_is_unfaithful():
    f = faithfulness(line("I'm not sure about the rest of the show Field of Dreams", chosen=["3"]))
    assert f.names_chosen is True and f.faithful is False
    assert f.sentiment_agrees is False and "talks of 'the show'" in f.degenerate
    assert faithfulness(line("Field of Dreams, a drama I'd like", chosen=["3"])).faithful  # same decision, said well


@pytest.mark.parametrize("utterance", ["", "   ", "...", "123 456"])
async def test_an_unparseable_line_is_never_faithful(utterance):
    bad = line(utterance, chosen=["1"])
    f = faithfulness(bad)
    assert f.parsed is False and f.faithful is None and f.reason is None and f.reasons()[0].startswith("F0")
    scores, _, _ = await score_line(StructuredJudge(), CARD, None, bad, [])
    assert "faithful" in scores and scores["faithful"] is None
    assert reward_of(scores) == reward_of({**scores, "faithful": 0.0})  # counts 0 in the reward
    good = line("Toy Story, a comedy I loved", chosen=["1"])
    s = summarize([Transcript(user_id="u", persona_id=CARD.id, variant="grounded", seed=0, turns=[bad, good])])
    assert s["n_unparseable"] == 1 and s["faithful"] == 1.0  # the share of parsed lines; the other never counts


def test_alignment_is_two_sided():
    slate = [LAUGH, TERROR, GUNS]
    assert alignment(CARD, None, line("x", [], {"a": 3, "b": 3, "c": 3}, slate)) == 0.0
    assert alignment(CARD, None, line("x", ["a"], {"a": 5, "b": 1, "c": 3}, slate)) == 1.0
    assert alignment(CARD, None, line("x", [], {"a": 4, "b": 3, "c": 3}, slate)) == 0.5
    assert alignment(CARD, None, line("x", ["b"], {"a": 4, "b": 2, "c": 3}, slate)) == 0.5  # chosen: not avoided
    assert alignment(CARD, None, line("x", [], {"b": 1, "c": 3}, [TERROR, GUNS])) == 1.0  # only the disliked side
    assert alignment(CARD, None, line("x", [], {"c": 3}, [GUNS])) is None  # neither side
    assert can_fire(CARD, None, line("x", [], {"b": 1}, [TERROR]))
    assert not can_fire(CARD, None, line("Okay", [], {"c": 3}, [GUNS]))
    assert can_fire(CARD, None, line("I hate horror", [], {"c": 3}, [GUNS]))  # a stated preference can fire P3


async def _reward(answer: Turn, kind: str = "structured") -> float:
    scores, _, _ = await score_line(StructuredJudge(), CARD, None, answer, [], kind)
    return scores["reward"]


async def test_the_reward_pays_for_commitment_on_either_side():
    # no liked item, a disliked one: rating everything 3 and choosing nothing scores below rating horror low
    slate = [TERROR, GUNS]
    flat = line("No horror for me", [], {"b": 3, "c": 3}, slate)
    avoids = line("No horror for me", [], {"b": 1, "c": 3}, slate)
    for kind in ("structured", "ranking", "rules"):
        assert await _reward(flat, kind) < await _reward(avoids, kind)
    # a liked item on the slate: the non-committal answer scores below the persona-aligned one
    slate = [LAUGH, TERROR, GUNS]
    flat = line("Okay then", [], {"a": 3, "b": 3, "c": 3}, slate)
    aligned = line("Laugh Riot, a comedy I love", ["a"], {"a": 5, "b": 1, "c": 3}, slate)
    for kind in ("structured", "ranking", "rules"):
        assert await _reward(flat, kind) < await _reward(aligned, kind)


async def test_a_faithful_utterance_raises_the_reward_on_the_same_decision():
    slate = [LAUGH, TERROR, GUNS]
    decision = dict(chosen=["a"], ratings={"a": 5, "b": 1, "c": 3}, slate=slate)
    faithful = line("Laugh Riot, a comedy I love", **decision)
    unfaithful = line("Gun Fight was the perfect JSON response", **decision)
    for kind in ("structured", "ranking"):
        assert await _reward(faithful, kind) > await _reward(unfaithful, kind)
    scores, reasons, _ = await score_line(StructuredJudge(), CARD, None, unfaithful, [])
    assert scores["faithful"] == 0.0 and reasons == []  # the judge's reasons only; the rest is recomputable
    assert [r[:2] for r in faithfulness(unfaithful).reasons()] == ["F1", "F2", "F4", "F5", "F5"]


def test_summarize_reports_each_metric_where_it_can_fire():
    quiet = [line("Gun Fight, some action", ["c"], {"c": 5}, [GUNS], turn=0),
             line("Nothing here", [], {"c": 2}, [GUNS], turn=1)]
    tr = Transcript(user_id="u", persona_id=CARD.id, variant="grounded", seed=0, turns=quiet)
    s = summarize([tr], [CARD])
    assert s["n_can_fire"] == {"prompt_to_line": 0, "line_to_line": 1, "qa": 0}
    assert s["prompt_to_line"] is None and s["prompt_to_line_inconsistency"] is None and s["qa"] is None
    assert summarize([tr])["n_can_fire"]["prompt_to_line"] == 2  # without the card every line counts
    assert s["faithful"] == 0.5 and s["n_unparseable"] == 0
    assert s["faithful_parts"] == {"names_chosen": 1.0, "no_passed": 1.0, "sentiment_agrees": 1.0, "reason": 0.5,
                                   "not_degenerate": 1.0}
    empty = summarize([])
    assert empty["faithful"] is None and empty["n_can_fire"] == {"prompt_to_line": 0, "line_to_line": 0, "qa": 0}
