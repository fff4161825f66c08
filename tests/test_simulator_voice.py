"""The planned voice: what a plan holds, what the model is told, and a scripted turn through it."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import SessionSettings, run_session, sample_users
from simulator.faithfulness import faithfulness
from simulator.grounded import GroundedUser
from simulator.llm import LLMClient
from simulator.voice import Plan, clean, make_plan, nearest_liked, plan_messages, short_title
from tests.test_simulator_grounded import PERSONA, _grounding
from tests.test_simulator_session import ScriptedBackend


def test_short_titles_are_said_as_a_person_says_them():
    assert short_title("Shawshank Redemption, The (1994)") == "The Shawshank Redemption"
    assert short_title("Toy Story (1995)") == "Toy Story"
    assert short_title("Rock, The (1996)") == "The Rock"
    assert short_title("Heat") == "Heat"


def test_a_plan_names_the_choice_and_the_nearest_liked_film():
    grounding, _, _ = _grounding(use_llm=False)
    space, memory = grounding.space, grounding.memories["twin:3"]
    slate = np.asarray([i for i in range(len(space.ids)) if i not in set(memory.liked.tolist())][:3]
                       + [int(memory.liked[0])])  # a film the user liked in train is on the slate
    plan = make_plan(space, memory, slate, [1])
    like = nearest_liked(space, memory, slate[1:2], exclude=slate)
    others = memory.liked[1:]
    sims = space.vectors[others] @ space.vectors[slate[1]]
    assert like == int(others[int(np.argmax(sims))])  # the most similar liked film, not the first one
    assert make_plan(space, memory, slate, [1]).like != short_title(space.titles[slate[3]])  # never a slate film
    assert plan.chosen == (short_title(space.titles[slate[1]]),) and plan.like == short_title(space.titles[like])
    assert plan.genre in {g.lower() for g in space.genres[slate[1]]}
    text = plan.text()
    assert text.startswith(f"Watch: {plan.chosen[0]}. Why:") and plan.like in text
    # nothing chosen: the reason is the liked film nearest the slate as a whole, and no slate title is named
    none = make_plan(space, memory, slate, [])
    assert none.chosen == () and none.text() == f"Watch: nothing. Why: none of these is like {none.like}."
    assert none.like not in {short_title(space.titles[i]) for i in slate}
    # a memory with no other liked film gives no title to cite
    assert Plan(chosen=("Heat",), genre="", like="").text("buy") == "Buy: Heat. Why: it looks good."


def test_the_model_is_told_only_the_plan_after_its_worked_examples():
    grounding, _, _ = _grounding(use_llm=False)
    user = sample_users([PERSONA], 1, seed=0, variant="grounded", twins={"p0": ["3"]})[0]
    plan = Plan(chosen=("Toy Story",), genre="comedy", like="Aladdin")
    messages = plan_messages(plan, user)
    assert messages[0]["role"] == "system" and PERSONA.name in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * 4 + ["user"]
    assert messages[-1]["content"] == "Watch: Toy Story. Why: comedy, like Aladdin."


def test_clean_keeps_one_sentence_line_of_allowed_characters():
    assert clean('"I\'ll watch Heat, a thriller like Fargo."\nUser: more') == "I'll watch Heat, a thriller like Fargo."
    assert clean("") == "" and clean("   \n ") == ""
    long = "word " * 40
    assert len(clean(long, 30)) <= 30 and not clean(long, 30).endswith(" ")


def test_an_unknown_voice_is_refused():
    with pytest.raises(ValueError, match="voice 'loud'"):
        GroundedUser(None, voice="loud")


class PlanEcho(ScriptedBackend):
    """Says the plan back as a sentence (a model that copies well), or writes JSON for the free voice."""

    async def complete(self, messages, *, temperature, max_tokens, seed, json_schema):
        from simulator.llm.types import RawCompletion

        if json_schema is not None:
            return RawCompletion(text='{"utterance": "The app shows a JSON list"}', tokens_in=10, tokens_out=8)
        plan = messages[-1]["content"]
        chosen, why = plan.removeprefix("Watch: ").split(". Why: ")
        text = f"I'll watch {chosen}, {why}" if chosen != "nothing" else f"Nothing for me, {why}"
        return RawCompletion(text=text, tokens_in=10, tokens_out=len(text.split()))


async def test_a_planned_turn_carries_its_evidence_and_the_check_reads_it():
    grounding, items, pop = _grounding(use_llm=False)
    from simulator import PopularityRecommender

    user = sample_users([PERSONA], 1, seed=0, variant="grounded", twins={"p0": ["3"]})[0]
    out = {}
    for voice in ("planned", "free"):
        tr = await run_session(user, PopularityRecommender(items, pop), 3, 5, LLMClient(PlanEcho({})),
                               grounding=grounding, settings=SessionSettings(slate_size=4, user={"voice": voice}))
        out[voice] = tr
        assert all(t.ok for t in tr.turns), [t.error for t in tr.turns]
    planned, free = out["planned"].turns, out["free"].turns
    assert [t.chosen for t in planned] == [t.chosen for t in free]  # the voice does not touch the decision
    for t in planned:
        assert t.evidence and faithfulness(t, evidence=t.evidence).faithful, (t.utterance, t.evidence)
        assert t.consistency["faithful"] == 1.0
    assert all(t.consistency["faithful"] == 0.0 for t in free)  # JSON talk names nothing
    assert all(p.consistency["reward"] > f.consistency["reward"] for p, f in zip(planned, free))
