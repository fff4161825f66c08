"""The two best-of-N rewards, and the held-out consistency metrics of issue 12 (evals/validity/consistency.py)."""

from __future__ import annotations

import pytest

from evals.validity.consistency import paired_ratio, per_user, rank_inconsistency, utterance_inconsistency
from personas.embed import Embedder
from simulator import PopularityRecommender, SessionSettings, Turn, derive_seed, reward_of, run_session
from simulator.judges import rank_order
from simulator.llm import LLMClient
from tests.test_simulator_session import CARD, ITEMS, POP, ScriptedBackend, user

SLATE = ITEMS[:4]  # 1, 3: comedy (liked); 2, 4: horror (disliked)


def line(ratings, chosen=(), utterance="Okay.", turn=0, user_id="u"):
    return Turn(user_id=user_id, persona_id=CARD.id, variant="layered", turn=turn, seed=0, slate=SLATE,
                ratings=ratings, chosen=list(chosen), utterance=utterance)


def test_rank_order_reads_the_order_of_every_rating():
    assert rank_order(CARD, None, line({"1": 5, "2": 1, "3": 4, "4": 2})) == 1.0
    assert rank_order(CARD, None, line({"1": 1, "2": 5, "3": 2, "4": 4})) == 0.0
    assert rank_order(CARD, None, line({"1": 3, "2": 3, "3": 3, "4": 3})) == 0.5  # ties count 1/2
    # 1 above both horror films, 3 below one of them: 3 of 4 pairs in order
    assert rank_order(CARD, None, line({"1": 4, "2": 3, "3": 2, "4": 1})) == 0.75
    # below the structured rules' thresholds: no P1/P2 fires, the order is still wrong
    assert rank_order(CARD, None, line({"1": 2, "2": 3, "3": 2, "4": 3})) == 0.0
    assert rank_order(CARD, None, line({"1": 5, "3": 4})) is None  # no disliked item rated: no pair
    assert rank_inconsistency(CARD, None, line({"1": 4, "2": 3, "3": 2, "4": 1})) == 0.25


def test_reward_kinds():
    scores = {"prompt_to_line": 0.0, "line_to_line": None, "alignment": 1.0, "rank_order": 1.0}
    assert reward_of(scores) == 0.5  # structured: mean(p2l, alignment)
    assert reward_of(scores, "ranking") == 1.0  # ranking: mean(rank_order, alignment); the judge's rules not in it
    with pytest.raises(ValueError, match="reward 'judge'"):
        reward_of(scores, "judge")


def test_the_rules_reward_leaves_faithfulness_out():
    rules = {"prompt_to_line": 1.0, "line_to_line": 0.5, "alignment": 0.0}
    # faithful, unfaithful, unparseable (None) or not scored at all: one rules reward, mean(p2l, l2l, alignment)
    for faithful in ({"faithful": 1.0}, {"faithful": 0.0}, {"faithful": None}, {}):
        assert reward_of({**rules, **faithful}, "rules") == 0.5
    assert reward_of({**rules, "faithful": 0.0}) == 0.375  # structured reads it: mean(1, 0.5, 0, 0)
    assert reward_of({**rules, "faithful": None}) == 0.375  # an unparseable line earns 0 there
    assert reward_of({"prompt_to_line": None, "line_to_line": None, "alignment": None, "faithful": 1.0},
                     "rules") is None  # nothing the rules read: no reward


async def test_the_ranking_reward_keeps_another_candidate_than_the_structured_one():
    def flat(ids):  # commits to nothing: no contradiction, no order
        return {"utterance": "Okay.", "ratings": {i: 3 for i in ids}, "chosen": [], "stop": False}

    def ordered(ids):  # ranks comedy over horror, but says it loves horror (structured rule P3)
        return {"utterance": "I love horror", "ratings": {i: 5 if i in ("1", "3") else 1 for i in ids},
                "chosen": ["1"], "stop": False}

    seed = 5
    replies = {derive_seed(seed, "turn", 0, 0): flat, derive_seed(seed, "turn", 0, 1): ordered}
    kept = {}
    for reward in ("structured", "ranking"):
        llm = LLMClient(ScriptedBackend(replies))
        tr = await run_session(user(), PopularityRecommender(ITEMS, POP), 1, seed, llm,
                               settings=SessionSettings(best_of=2, slate_size=4, qa_turns=[], reward=reward))
        kept[reward] = tr.turns[0]
    s, r = kept["structured"], kept["ranking"]
    # flat: p2l 1, alignment 0 (liked not taken, disliked not rated low), faithful 0 (no reason) -> 1/3;
    # ordered: p2l 0, alignment 1, faithful 0 (it does not name 'Laugh Riot', which it chose) -> 1/3
    assert s.candidate_rewards == [1 / 3, 1 / 3] and s.utterance == "Okay."  # a tie: the lowest index is kept
    # ranking: flat mean(rank 0.5, 0, 0); ordered mean(rank 1, 1, 0)
    assert r.candidate_rewards == pytest.approx([1 / 6, 2 / 3]) and r.utterance == "I love horror"
    assert r.consistency["rank_order"] == 1.0
    assert r.consistency["prompt_to_line"] == 0.0  # the structured judge still scores it: a held-out metric now
    assert "rank_order" not in s.consistency  # the default reward's rows are as before


def test_per_user_metrics_and_paired_ratio():
    from simulator.turn import Transcript

    good = line({"1": 5, "2": 1, "3": 4, "4": 2}, chosen=["1"], utterance="I love comedy", user_id="a")
    bad = line({"1": 1, "2": 5, "3": 2, "4": 4}, chosen=["2"], utterance="I love horror", user_id="b")
    trs = [Transcript(user_id=t.user_id, persona_id=CARD.id, variant="layered", seed=0, model="m", turns=[t])
           for t in (good, bad)]
    embed = Embedder(show_progress=False).embed
    utt = utterance_inconsistency(embed, {CARD.id: CARD}, trs)
    assert utt == {("a", 0): 0.0, ("b", 0): 1.0}  # nearer "I enjoy Horror films." than "I enjoy Comedy films."
    users = per_user(trs, {CARD.id: CARD}, embed)
    assert users["rank_inconsistency"] == {"a": 0.0, "b": 1.0}
    assert users["acceptance"] == {"a": 0.25, "b": 0.25}
    # no judge has scored these lines: the structured metric is absent, not zero
    assert users["structured_p2l_inconsistency"] == {}

    base = {"a": 0.4, "b": 0.6, "c": 0.5}
    half = {u: v / 2 for u, v in base.items()}
    r = paired_ratio(half, base)
    assert r["ratio"] == pytest.approx(0.5) and r["ci95"] == pytest.approx([0.5, 0.5]) and r["n_users"] == 3
    assert paired_ratio({"x": 1.0}, base) == {"ratio": None, "ci95": None, "n_users": 0}


def test_per_user_counts_unparseable_lines_as_unfaithful():
    from simulator.turn import Transcript

    said = line({"1": 5, "2": 1, "3": 4, "4": 2}, chosen=["1"], utterance="Laugh Riot, a comedy I love", turn=0)
    vague = line({"1": 5, "2": 1, "3": 4, "4": 2}, chosen=["1"], utterance="Okay.", turn=1)  # F1, F4 fail
    mute = line({"1": 5, "2": 1, "3": 4, "4": 2}, chosen=["1"], utterance="...", turn=2)  # no word to read
    failed = Turn(user_id="u", persona_id=CARD.id, variant="layered", turn=3, seed=0, ok=False, raw="x")
    trs = [Transcript(user_id="u", persona_id=CARD.id, variant="layered", seed=0, model="m", turns=[said, vague]),
           Transcript(user_id="w", persona_id=CARD.id, variant="layered", seed=0, model="m",
                      turns=[said.model_copy(update={"user_id": "w"}), mute, failed])]
    users = per_user(trs, {CARD.id: CARD})
    assert users["unfaithful"] == {"u": 0.5, "w": 0.5}  # the unparseable line counts as unfaithful (1.0)
    assert users["unparseable"] == {"u": 0.0, "w": 0.5}  # the failed turn is no line: counted in "failed" only
    assert users["failed"] == {"u": 0.0, "w": pytest.approx(1 / 3)}
