"""Multi-turn consistency: per-line scores and the metrics over transcripts.

Definitions (from the multi-turn consistency work on user simulators):
- prompt-to-line: share of the user's lines that do not contradict the persona;
- line-to-line: for each line from the second on, 1 - (earlier lines of the
  same user it conflicts with / earlier lines), averaged over lines;
- Q&A: share of multiple-choice questions about the persona's stated facts
  answered correctly (exact match).
A "line" is one successful turn (choices, ratings and utterance). Failed
turns are no lines: they are counted (``n_failed``) but not scored.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from personas.card import PersonaCard
from simulator.judges import ConsistencyJudge, alignment, rank_order
from simulator.turn import Transcript, Turn


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


REWARDS = ("structured", "ranking")


def reward_of(scores: dict[str, float | None], kind: str = "structured") -> float | None:
    """The best-of-N reward of a scored line.

    - ``structured`` (default): the mean of the line's prompt-to-line, line-to-line and alignment
      scores (alignment: `simulator.judges.alignment`; without it an empty answer would score 1.0);
    - ``ranking``: the mean of ``rank_order`` (`simulator.judges.rank_order`: the ratings order the
      persona's likes above its dislikes) and alignment. The structured judge's rules are not in it,
      so its prompt-to-line score stays a metric the reward was not optimised on.
    """
    if kind == "structured":
        return _mean([scores.get("prompt_to_line"), scores.get("line_to_line"), scores.get("alignment")])
    if kind == "ranking":
        return _mean([scores.get("rank_order"), scores.get("alignment")])
    raise ValueError(f"reward {kind!r}: expected one of {', '.join(REWARDS)}")


async def score_line(
    judge: ConsistencyJudge, card: PersonaCard, subtopic: str | None, line: Turn, earlier: list[Turn],
    reward: str = "structured",
) -> tuple[dict[str, float | None], list[str], tuple[int, int]]:
    """Scores of one successful line given the user's earlier successful lines.

    Returns (scores with prompt_to_line / line_to_line / alignment / reward, judge reasons, (tokens_in, tokens_out));
    ``reward`` picks `reward_of`'s kind, and ``ranking`` adds the line's ``rank_order`` to the scores.
    """
    verdict = await judge.against_persona(card, subtopic, line)
    reasons = list(verdict.reasons)
    tokens = [verdict.tokens_in, verdict.tokens_out]
    p2l = None if verdict.contradiction is None else float(not verdict.contradiction)
    conflicts = decided = 0
    for prev in earlier:
        v = await judge.against_earlier(card, line, prev)
        tokens[0] += v.tokens_in
        tokens[1] += v.tokens_out
        if v.contradiction is None:
            continue
        decided += 1
        if v.contradiction:
            conflicts += 1
            reasons.extend(v.reasons)
    l2l = 1.0 - conflicts / decided if decided else None
    scores = {"prompt_to_line": p2l, "line_to_line": l2l, "alignment": alignment(card, subtopic, line)}
    if reward == "ranking":
        scores["rank_order"] = rank_order(card, subtopic, line)
    scores["reward"] = reward_of(scores, reward)
    return scores, reasons, (tokens[0], tokens[1])


async def rescore(transcript: Transcript, card: PersonaCard, judge: ConsistencyJudge) -> Transcript:
    """The transcript with every line scored again by ``judge`` (Q&A grades are kept)."""
    subtopic = transcript.layers.get("subtopic")
    done: list[Turn] = []
    turns: list[Turn] = []
    for turn in transcript.turns:
        if not turn.ok:
            turns.append(turn)
            continue
        scores, reasons, _ = await score_line(judge, card, subtopic, turn, done)
        scores["qa"] = turn.consistency.get("qa")
        new = turn.model_copy(update={"consistency": scores, "reasons": reasons})
        done.append(new)
        turns.append(new)
    return transcript.model_copy(update={"turns": turns})


def summarize(transcripts: list[Transcript]) -> dict:
    """The consistency metrics over transcripts (None where nothing was measured).

    Keys: prompt_to_line, prompt_to_line_inconsistency, line_to_line, qa, n_users,
    n_sessions, n_turns, n_lines, n_failed, n_questions, best_of, by_turn
    ({turn index: mean prompt_to_line}).
    """
    turns = [t for tr in transcripts for t in tr.turns]
    lines = [t for t in turns if t.ok]
    p2l = _mean(t.consistency.get("prompt_to_line") for t in lines)
    asked = [t.qa for t in turns if t.qa is not None and t.qa.correct is not None]
    by_turn: dict[int, list] = {}
    for t in lines:
        by_turn.setdefault(t.turn, []).append(t.consistency.get("prompt_to_line"))
    return {
        "prompt_to_line": p2l,
        "prompt_to_line_inconsistency": None if p2l is None else 1.0 - p2l,
        "line_to_line": _mean(t.consistency.get("line_to_line") for t in lines),
        "qa": statistics.fmean(float(q.correct) for q in asked) if asked else None,
        "n_users": len({tr.user_id for tr in transcripts}),
        "n_sessions": len(transcripts),
        "n_turns": len(turns),
        "n_lines": len(lines),
        "n_failed": len(turns) - len(lines),
        "n_questions": len(asked),
        "best_of": max((tr.best_of for tr in transcripts), default=1),
        "by_turn": {str(k): _mean(v) for k, v in sorted(by_turn.items())},
    }
