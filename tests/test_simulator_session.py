"""Sessions, best-of-N selection, preference export and bad input, on a scripted backend.

The scripted backend is a real `Backend` behind the real `LLMClient` (JSON
validation, repair, accounting); its answers are a function of the call's
seed, so best-of-N outcomes are known in advance.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from personas.card import Fact, PersonaCard
from simulator import (
    Item, LLMJudge, PopularityRecommender, SessionSettings, StructuredJudge, Turn, derive_seed, run_session,
    sample_users, summarize, write_preferences,
)
from simulator.llm import Backend, LLMClient, LLMConfigError, RawCompletion, jsonout
from simulator.session import _best, preference_pairs
from simulator.turn import answer_schema, pick_schema, turn_schema, utterance_schema
from simulator.user import Candidate

CARD = PersonaCard(
    id="nurse", name="Maya", summary="A nurse who loves comedies. She avoids horror.",
    likes=["Comedy"], dislikes=["Horror"],
    facts=[Fact(key="job", question="What is your job?", value="nurse", choices=["nurse", "chef", "pilot"])],
)
ITEMS = [
    Item(id="1", title="Laugh Riot", facets={"genres": ["Comedy"]}),
    Item(id="2", title="Blood Manor", facets={"genres": ["Horror"]}),
    Item(id="3", title="Funny Bones", facets={"genres": ["Comedy"]}),
    Item(id="4", title="Night Terror", facets={"genres": ["Horror"]}),
    Item(id="5", title="Gun Fight", facets={"genres": ["Action"]}),
    Item(id="6", title="Sky Chase", facets={"genres": ["Action"]}),
]
POP = [60, 50, 40, 30, 20, 10]


def good(slate_ids):  # consistent with the card and faithful to its choice: picks comedy, names it, says why
    by_id = {it.id: it for it in ITEMS}
    comedy = [i for i in slate_ids if i in ("1", "3")]
    said = (f"I love comedy, {by_id[comedy[0]].title} please" if comedy
            else f"No {by_id[slate_ids[0]].facets['genres'][0].lower()} for me")
    return {"utterance": said, "ratings": {i: 5 if i in comedy else 2 for i in slate_ids}, "chosen": comedy[:1], "stop": False}


def bad(slate_ids):  # contradicts the card: picks horror, says it loves horror
    horror = [i for i in slate_ids if i in ("2", "4")]
    return {"utterance": "I love horror", "ratings": {i: 5 for i in slate_ids}, "chosen": horror[:1], "stop": False}


class ScriptedBackend(Backend):
    """Answers by the call's seed: ``replies[seed](slate ids)``; default ``bad``. Q&A answers 'nurse'."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self, replies=None, raw=None):
        self.replies = replies or {}
        self.raw = raw  # if set, returned verbatim for turn calls
        self.calls = 0

    async def complete(self, messages, *, temperature, max_tokens, seed, json_schema):
        self.calls += 1
        props = (json_schema or {}).get("properties", {})
        if "answer" in props:
            text = json.dumps({"answer": "nurse"})
        elif "liked" in props:
            text = json.dumps({"liked": props["liked"]["items"]["enum"][:1]})
        elif "contradiction" in props:
            text = json.dumps({"contradiction": "yes", "reason": "praises horror"})
        elif self.raw is not None:
            text = self.raw
        else:
            ids = list(props["ratings"]["properties"])
            answer = self.replies.get(seed, bad)(ids)
            if "stop" not in props:
                answer.pop("stop")
            text = json.dumps(answer)
        return RawCompletion(text=text, tokens_in=10, tokens_out=5)


def user(card=CARD):
    return sample_users([card], 1, seed=0)[0]


async def test_best_of_n_keeps_the_consistent_candidate_and_exports_pairs(tmp_path):
    seed, turns = 7, 3
    # candidate 0 contradicts at every turn; candidate 2 is consistent -> best-of-3 keeps candidate 2
    replies = {derive_seed(seed, "turn", t, 2): good for t in range(turns)}
    llm = LLMClient(ScriptedBackend(replies))
    one = await run_session(user(), PopularityRecommender(ITEMS, POP), turns, seed, llm)
    three = await run_session(user(), PopularityRecommender(ITEMS, POP), turns, seed, llm,
                              settings=SessionSettings(best_of=3, slate_size=2), meta={"config_hash": "abc"})
    assert summarize([one])["prompt_to_line"] == 0.0
    assert summarize([three])["prompt_to_line"] == 1.0
    assert all(t.candidate_rewards[2] == 1.0 and t.call_seed == derive_seed(seed, "turn", t.turn, 2) for t in three.turns)
    assert all(t.best_of == 3 and t.meta == {"config_hash": "abc"} for t in three.turns)
    assert len(three.pairs) == 2 * turns  # the kept one against each lower-scored candidate
    path = tmp_path / "prefs.jsonl"
    assert write_preferences([three], path) == 2 * turns
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(rows[0]) >= {"prompt", "chosen", "rejected", "reward_chosen", "reward_rejected", "seed", "model", "config_hash"}
    assert rows[0]["prompt"][0]["role"] == "system" and rows[0]["chosen"][0]["role"] == "assistant"
    assert "I love comedy" in rows[0]["chosen"][0]["content"] and "I love horror" in rows[0]["rejected"][0]["content"]
    assert all(r["reward_chosen"] > r["reward_rejected"] for r in rows)
    write_preferences([three], path, fmt="standard")
    std = json.loads(path.read_text().splitlines()[0])
    assert isinstance(std["prompt"], str) and std["prompt"].endswith("assistant: ") and isinstance(std["chosen"], str)


def test_selection_ties_and_failures():
    def cand(ok: bool) -> Candidate:
        t = Turn(user_id="u", persona_id="p", variant="layered", turn=0, seed=0, ok=ok, raw="x")
        return Candidate(t, [{"role": "user", "content": "hi"}])

    assert _best([(cand(True), 0.5), (cand(True), 1.0), (cand(True), 1.0)]) == 1  # tie -> lowest index
    assert _best([(cand(False), None), (cand(True), 0.0)]) == 1  # a failed candidate ranks last
    assert _best([(cand(False), None), (cand(False), None)]) == 0
    scored = [(cand(True), 1.0), (cand(True), 1.0), (cand(True), 0.5), (cand(False), None)]
    pairs = preference_pairs(scored, 0)
    assert [(p.reward_chosen, p.reward_rejected) for p in pairs] == [(1.0, 0.5)]  # ties and failures make no pairs


async def test_session_records_layers_feedback_onboarding_and_qa():
    llm = LLMClient(ScriptedBackend({derive_seed(3, "turn", t, 0): good for t in range(4)}))
    rec = PopularityRecommender(ITEMS, POP)
    seen = []
    u = user()
    tr = await run_session(u, rec, 3, 3, llm, settings=SessionSettings(slate_size=2, qa_turns=[1]),
                           pool=ITEMS[4:], on_turn=seen.append)
    assert tr.onboarding.ok and tr.onboarding.liked == ["5"]
    assert [t.turn for t in seen] == [0, 1, 2] and seen == tr.turns
    assert all(t.layers == u.layers() and t.model == "scripted-1" for t in tr.turns)
    shown = [i.id for t in tr.turns for i in t.slate]
    assert len(shown) == len(set(shown)) and "5" not in shown  # popularity never repeats, skips onboarded
    assert tr.turns[1].qa.correct is True and tr.turns[1].consistency["qa"] == 1.0
    assert tr.turns[0].qa is None and tr.turns[0].consistency["qa"] is None
    assert tr.turns[0].tokens_in == 10 and tr.turns[1].tokens_in == 20  # the Q&A call is counted


async def test_bad_input_becomes_failed_turns_not_crashes():
    # an id the slate did not contain (a backend without a grammar): failed turn with its reason
    wrong = json.dumps({"utterance": "Hi", "ratings": {"1": 3, "2": 3}, "chosen": ["99"]})
    tr = await run_session(user(), PopularityRecommender(ITEMS, POP), 2, 0, LLMClient(ScriptedBackend(raw=wrong)),
                           settings=SessionSettings(slate_size=2))
    assert [t.ok for t in tr.turns] == [False, False]
    assert "'99'" in tr.turns[0].error and tr.turns[0].chosen == [] and tr.turns[0].consistency == {}
    # not JSON even after the one repair
    tr = await run_session(user(), PopularityRecommender(ITEMS, POP), 1, 0,
                           LLMClient(ScriptedBackend(raw="sure! here you go")), settings=SessionSettings(slate_size=2))
    assert not tr.turns[0].ok and "invalid JSON after one repair" in tr.turns[0].error
    # a persona with no likes: one failed turn, the session ends cleanly
    bare = CARD.model_copy(update={"likes": []})
    llm = LLMClient(ScriptedBackend())
    tr = await run_session(user(bare), PopularityRecommender(ITEMS, POP), 3, 0, llm)
    assert len(tr.turns) == 1 and "has no likes" in tr.turns[0].error and llm.usage.requests == 0
    assert tr.turns[0].stop  # marks the session's end
    # an exhausted catalog: an empty slate ends the session
    tr = await run_session(user(), PopularityRecommender(ITEMS[:2], POP[:2]), 3, 0, LLMClient(ScriptedBackend()),
                           settings=SessionSettings(slate_size=2))
    assert [t.ok for t in tr.turns] == [True, False] and "empty slate" in tr.turns[1].error
    assert summarize([tr])["n_failed"] == 1


async def test_llm_judge_reads_the_documented_schema():
    judge = LLMJudge(LLMClient(ScriptedBackend()))
    line = Turn(user_id="u", persona_id="p", variant="layered", turn=0, seed=0, slate=ITEMS[:2], chosen=["2"],
                ratings={"1": 1, "2": 5}, utterance="I love horror")
    v = await judge.against_persona(CARD, "Comedy", line)
    assert v.contradiction is True and v.reasons == ["praises horror"] and v.tokens_in == 10
    assert (await StructuredJudge().against_persona(CARD, "Comedy", line)).contradiction is True


def test_every_answer_schema_template_is_a_valid_json_schema_and_is_checked_once():
    """The simulator's schemas come from templates (`simulator/turn.py`), valid for any ids; the
    client checks a template against the metaschema at its first schema, not on every slate."""
    for schema in (turn_schema(ITEMS), turn_schema(ITEMS[:1], 1, 40), utterance_schema(), pick_schema(ITEMS, 2),
                   answer_schema(["yes", "no"])):
        jsonschema.Draft202012Validator.check_schema(schema)  # raises if invalid
        assert isinstance(schema, jsonout.TemplateSchema)
    bad = jsonout.TemplateSchema("test/bad-template", {"type": "objekt"})
    with pytest.raises(LLMConfigError, match="invalid JSON schema"):
        jsonout.check_schema(bad)
    with pytest.raises(LLMConfigError, match="invalid JSON schema"):  # a failed check is not remembered
        jsonout.check_schema(bad)
    jsonout.check_schema(jsonout.TemplateSchema("test/good-template", {"type": "object"}))
    assert "test/good-template" in jsonout._CHECKED_TEMPLATES
    # the same template filled in differently is not checked again; its answers are still validated
    schema = jsonout.TemplateSchema("test/good-template", {"type": "object", "properties": {"a": {"enum": [1]}}})
    assert jsonout.parse_and_validate('{"a": 2}', schema)[1] is not None
    assert jsonout.parse_and_validate('{"a": 1}', schema) == ({"a": 1}, None)
