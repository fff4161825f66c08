"""Multi-turn consistency: per-line scores and the metrics over transcripts.

Definitions (from the multi-turn consistency work on user simulators):
- prompt-to-line: share of the user's lines that do not contradict the persona;
- line-to-line: for each line from the second on, 1 - (earlier lines of the
  same user it conflicts with / earlier lines), averaged over lines;
- Q&A: share of multiple-choice questions about the persona's stated facts
  answered correctly (exact match);
- faithfulness: share of lines whose utterance is faithful to the line's own
  decision (`simulator.faithfulness`, rules F1-F5), over the lines with a word
  to read; unparseable utterances are counted apart and never faithful.
A "line" is one successful turn (choices, ratings and utterance). Failed
turns are no lines: they are counted (``n_failed``) but not scored.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping

from personas.card import PersonaCard
from simulator.faithfulness import faithfulness
from simulator.judges import ConsistencyJudge, alignment, can_fire, rank_order
from simulator.turn import Transcript, Turn


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


REWARDS = ("structured", "ranking", "rules")


def _faithful(scores: dict[str, float | None]) -> list[float | None]:
    """The faithful score as the reward reads it: an unparseable utterance (``faithful`` present and None)
    earns 0, a line scored before the check existed (no ``faithful``) nothing."""
    if "faithful" not in scores:
        return []
    return [0.0 if scores["faithful"] is None else scores["faithful"]]


def reward_of(scores: dict[str, float | None], kind: str = "structured") -> float | None:
    """The best-of-N reward of a scored line.

    - ``structured`` (default): the mean of the line's prompt-to-line, line-to-line, alignment and faithful
      scores (alignment: `simulator.judges.alignment`, two-sided, so an answer that commits to nothing
      scores below one that commits either way; faithful: `simulator.faithfulness`, so of two answers with
      one decision the one whose words say that decision, with a reason, scores higher);
    - ``ranking``: the mean of ``rank_order`` (`simulator.judges.rank_order`: the ratings order the
      persona's likes above its dislikes), alignment and faithful. The structured judge's rules are not in
      it, so its prompt-to-line score stays a metric the reward was not optimised on;
    - ``rules``: the mean of prompt-to-line, line-to-line and alignment: ``structured`` without faithful,
      so that faithfulness stays a judge the reward was not optimised on.

    In ``structured`` and ``ranking`` an unparseable utterance (``faithful`` None) counts 0; scores without
    ``faithful`` (a line scored before the check existed) are averaged without it. ``rules`` never reads it.
    """
    if kind == "structured":
        return _mean([scores.get("prompt_to_line"), scores.get("line_to_line"), scores.get("alignment"),
                      *_faithful(scores)])
    if kind == "ranking":
        return _mean([scores.get("rank_order"), scores.get("alignment"), *_faithful(scores)])
    if kind == "rules":
        return _mean([scores.get("prompt_to_line"), scores.get("line_to_line"), scores.get("alignment")])
    raise ValueError(f"reward {kind!r}: expected one of {', '.join(REWARDS)}")


async def score_line(
    judge: ConsistencyJudge, card: PersonaCard, subtopic: str | None, line: Turn, earlier: list[Turn],
    reward: str = "structured",
) -> tuple[dict[str, float | None], list[str], tuple[int, int]]:
    """Scores of one successful line given the user's earlier successful lines.

    Returns (scores with prompt_to_line / line_to_line / alignment / faithful / reward, reasons, (tokens_in,
    tokens_out)); ``reward`` picks `reward_of`'s kind, and ``ranking`` adds the line's ``rank_order`` to the
    scores. ``faithful`` is 1.0 / 0.0, None for an unparseable utterance (`simulator.faithfulness.faithfulness`
    of the line, its own ``evidence`` the titles it may cite). The reasons stay the judge's alone (the report
    recomputes and checks them, `evals.report.transcripts.judge_reasons`); why a line is unfaithful is
    ``faithfulness(line).reasons()``, one "F1: ..." line per failed rule, recomputed at will (it is deterministic).
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
    faith = faithfulness(line)
    scores = {"prompt_to_line": p2l, "line_to_line": l2l, "alignment": alignment(card, subtopic, line),
              "faithful": None if faith.faithful is None else float(faith.faithful)}
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


#: The parts of `summarize`'s ``faithful_parts``: each the share of parsed lines that pass one rule.
FAITHFUL_PARTS = ("names_chosen", "no_passed", "sentiment_agrees", "reason", "not_degenerate")


def _cards_by_id(cards: Mapping[str, PersonaCard] | Iterable[PersonaCard] | None) -> dict[str, PersonaCard]:
    if cards is None:
        return {}
    if isinstance(cards, Mapping):
        return dict(cards)
    return {c.id: c for c in cards}


def summarize(transcripts: list[Transcript],
              cards: Mapping[str, PersonaCard] | Iterable[PersonaCard] | None = None) -> dict:
    """The consistency metrics over transcripts (None where nothing was measured).

    Each metric is reported only over the lines where it can fire, counted in ``n_can_fire``, and is None
    where that count is 0:

    - ``prompt_to_line``: lines where the structured persona rules can fire (`simulator.judges.can_fire`:
      the slate holds a liked- or disliked-concept item, or the utterance states a preference). That needs
      the user's card: ``cards`` (cards, or {persona id: card}); a line whose card is not given counts as
      one where it can fire (as every line did before);
    - ``line_to_line``: lines with at least one earlier line in their session;
    - ``qa``: questions asked (and graded).

    ``faithful`` is the share of parsed lines whose utterance is faithful to their decision, recomputed
    from the lines (`simulator.faithfulness.faithfulness`, so transcripts scored before it get one too);
    ``n_unparseable`` counts the lines with no word to read (never faithful); ``faithful_parts`` gives per
    rule the share of parsed lines that pass it (`FAITHFUL_PARTS`: names_chosen over the lines that chose
    something, the others over all parsed lines).

    Keys: prompt_to_line, prompt_to_line_inconsistency, line_to_line, qa, faithful, faithful_parts,
    n_unparseable, n_can_fire, n_users, n_sessions, n_turns, n_lines, n_failed, n_questions, best_of,
    by_turn ({turn index: mean prompt_to_line over the lines where it can fire}).
    """
    by_id = _cards_by_id(cards)
    turns = [t for tr in transcripts for t in tr.turns]
    lines = [t for t in turns if t.ok]
    fires: list[Turn] = []
    later: list[Turn] = []
    for tr in transcripts:
        card = by_id.get(tr.persona_id)
        subtopic = tr.layers.get("subtopic")
        ok = [t for t in tr.turns if t.ok]
        fires += [t for t in ok if card is None or can_fire(card, subtopic, t)]
        later += ok[1:]
    p2l = _mean(t.consistency.get("prompt_to_line") for t in fires)
    asked = [t.qa for t in turns if t.qa is not None and t.qa.correct is not None]
    by_turn: dict[int, list] = {}
    for t in fires:
        by_turn.setdefault(t.turn, []).append(t.consistency.get("prompt_to_line"))
    checks = [faithfulness(t) for t in lines]
    parsed = [f for f in checks if f.parsed]
    chose = [f for f in parsed if f.names_chosen is not None]

    def share(passed: list[bool]) -> float | None:
        return statistics.fmean(map(float, passed)) if passed else None

    return {
        "prompt_to_line": p2l,
        "prompt_to_line_inconsistency": None if p2l is None else 1.0 - p2l,
        "line_to_line": _mean(t.consistency.get("line_to_line") for t in later),
        "qa": statistics.fmean(float(q.correct) for q in asked) if asked else None,
        "faithful": share([bool(f.faithful) for f in parsed]),
        "faithful_parts": {
            "names_chosen": share([bool(f.names_chosen) for f in chose]),
            "no_passed": share([not f.names_passed for f in parsed]),
            "sentiment_agrees": share([bool(f.sentiment_agrees) for f in parsed]),
            "reason": share([bool(f.reason) for f in parsed]),
            "not_degenerate": share([not f.degenerate for f in parsed]),
        },
        "n_unparseable": len(checks) - len(parsed),
        "n_can_fire": {"prompt_to_line": len(fires), "line_to_line": len(later), "qa": len(asked)},
        "n_users": len({tr.user_id for tr in transcripts}),
        "n_sessions": len(transcripts),
        "n_turns": len(turns),
        "n_lines": len(lines),
        "n_failed": len(turns) - len(lines),
        "n_questions": len(asked),
        "best_of": max((tr.best_of for tr in transcripts), default=1),
        "by_turn": {str(k): _mean(v) for k, v in sorted(by_turn.items())},
    }
