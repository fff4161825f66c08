"""Every session of a campaign as the report's transcript browser reads it (JSON, inlined in the page).

Shape (all JSON):
    items:    {item id: [title, [genres]]}           each catalog item once
    layers:   [layers dict]                            each distinct user (persona x subtopic x context) once
    personas: {persona id: name}
    reasons:  how the judge's reasons were obtained (REASONS_RECORDED / REASONS_RECOMPUTED / REASONS_MISSING)
    sessions: [{variant, user_variant, user_id, persona_id, run, seed, layers (index), vectors, shown, chosen,
                contradictions, failed, turns: [turn]}]
    turn:     {turn, ok, error, slate: [[item id, AMP-CF mixture component or None]], ratings, chosen, utterance,
               verdicts: {prompt_to_line, line_to_line, qa}, reasons: [str] or None, decision: {item id:
               [p_like, {evidence source: logit contribution}]}, tokens: [in, out], latency_s}

``vectors`` names each AMP-CF mixture component (a user vector) of the session by the genres of the items it
put on the slates ({component: "Drama, Romance"}): the components are latent, an index alone says nothing.

The events do not store the judge's reasons, only its scores. The campaign's judge is the
deterministic `simulator.judges.StructuredJudge`, so the reasons are recomputed from the event and the
persona card; a turn whose recomputed verdict differs from the stored score (another judge) gets None.
"""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from personas.card import PersonaCard

REASONS_RECORDED = "recorded in the events"
REASONS_RECOMPUTED = "recomputed with the campaign's structured judge (rules P1-P3, L1-L3)"
REASONS_MISSING = "not recorded (no persona cards to recompute them from)"
VERDICTS = ("prompt_to_line", "line_to_line", "qa")
SESSION_KEY = ["variant", "user_variant", "user_id", "run"]


def vector_labels(slates: list[list[dict]], top: int = 2) -> dict[int, str]:
    """{AMP-CF mixture component: its ``top`` commonest genres} over the items it produced in ``slates``
    (lists of SlateItem dicts); ties go alphabetically. Empty when nothing carries an attribution."""
    genres: dict[int, Counter] = {}
    for slate in slates:
        for item in slate:
            if item.get("component") is not None:
                genres.setdefault(int(item["component"]), Counter()).update(item.get("genres") or [])
    return {v: ", ".join(g for g, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:top]) or "no genre"
            for v, c in sorted(genres.items())}


def _as_turn(e: dict):
    from simulator import Item, Turn

    slate = [Item(id=s["id"], title=s["title"], facets={"genres": list(s.get("genres") or [])}) for s in e["slate"]]
    return Turn(user_id=e["user_id"], persona_id=e["persona_id"], turn=e["turn"], seed=e["seed"],
                variant=e["user_variant"], slate=slate, chosen=e["chosen"], ratings=e["ratings"],
                utterance=e["utterance"])


def judge_reasons(rows: list[dict], card: PersonaCard) -> list[list[str] | None]:
    """The structured judge's reasons for each turn row of one session (sorted by turn), as the session
    scored them: against the persona, then against every earlier successful line. Only flagged turns
    are judged again (an unflagged turn has no reasons: []); [] for a failed turn; None where the judge
    gave no verdict or the recomputed one disagrees with the stored prompt_to_line / line_to_line."""
    from simulator import StructuredJudge

    judge, earlier, out = StructuredJudge(), [], []
    for e in rows:
        if not e["ok"]:
            out.append([])
            continue
        line = _as_turn(e)
        stored = e["consistency"] or {}
        p2l, l2l = stored.get("prompt_to_line"), stored.get("line_to_line")
        reasons: list[str] | None = []
        if p2l == 0:
            reasons = judge.persona_reasons(card, e["layers"].get("subtopic"), line) or None
        if reasons is not None and l2l is not None and l2l < 1:
            conflicts = [judge.pair_reasons(card, line, prev) for prev in earlier]
            agrees = conflicts and 1.0 - sum(map(bool, conflicts)) / len(conflicts) == l2l  # score_line's formula
            reasons = reasons + [r for c in conflicts for r in c] if agrees else None
        out.append(None if p2l is None else reasons)
        earlier.append(line)
    return out


def _flagged(e: dict) -> bool:
    """Did the judge flag this turn (against the persona, or against an earlier line)?"""
    c = e["consistency"] or {}
    return c.get("prompt_to_line") == 0 or (c.get("line_to_line") is not None and c["line_to_line"] < 1)


#: The probabilities of a decision record, as opposed to the sources' contributions.
PROBABILITIES = ("p_like", "p_take")


def decision_by_source(decision: dict) -> dict:
    """{item id: [p(like), {source: what it added to the affinity}, p(take)]} of a grounded turn's ``decision``
    record (p(take) None in a record from before it existed). A product ('ease*n_rated',
    'popularity*recent_pop') counts with its item feature, so the browser shows one number per source, and
    they still sum to what the evidence added (the affinity less its intercept and the context's shift)."""
    from simulator.evidence import factors

    out = {}
    for item, d in (decision or {}).items():
        parts: dict[str, float] = {}
        for k, v in d.items():
            if k not in PROBABILITIES and isinstance(v, (int, float)):
                source = factors(k)[0]
                parts[source] = parts.get(source, 0.0) + float(v)
        out[item] = [round(d["p_like"], 2) if "p_like" in d else None, {k: round(v, 2) for k, v in parts.items()},
                     round(d["p_take"], 2) if "p_take" in d else None]
    return out


def _turn(e: dict, reasons: list[str] | None) -> dict:
    c = e["consistency"] or {}
    error = e["error"] if isinstance(e["error"], str) else None  # pandas reads a missing string as NaN
    return {"turn": int(e["turn"]), "ok": bool(e["ok"]), "error": error,
            "slate": [[s["id"], s.get("component")] for s in e["slate"]],
            "ratings": e["ratings"], "chosen": e["chosen"], "utterance": e["utterance"],
            "verdicts": {k: c.get(k) for k in VERDICTS}, "reasons": reasons,
            "decision": decision_by_source(e.get("decision")),
            "tokens": [int(e["tokens_in"]), int(e["tokens_out"])], "latency_s": round(float(e["latency_s"]), 1)}


def browser_payload(df: pd.DataFrame, cards: dict[str, PersonaCard]) -> dict:
    """The transcript browser's data (module docstring) from the events frame and the persona cards
    ({id: card}; may be empty: then names are ids and the judge's reasons are missing)."""
    items: dict[str, list] = {}
    layers: dict[str, int] = {}
    sessions: dict[tuple, list[dict]] = {}
    for e in df.sort_values("turn", kind="stable").to_dict("records"):
        sessions.setdefault(tuple(e[k] for k in SESSION_KEY), []).append(e)
    recorded = "reasons" in df.columns
    out = []
    for rows in sessions.values():
        first, card = rows[0], cards.get(rows[0]["persona_id"])
        for e in rows:
            items.update({s["id"]: [s["title"], list(s.get("genres") or [])] for s in e["slate"]})
        if recorded:
            reasons = [e["reasons"] for e in rows]
        else:
            reasons = judge_reasons(rows, card) if card is not None else [None] * len(rows)
        key = json.dumps(first["layers"], sort_keys=True)  # the layers of one user, stored once
        ok = [e for e in rows if e["ok"]]
        out.append({
            **{k: first[k] for k in ("variant", "user_variant", "user_id", "persona_id")},
            "run": int(first["run"]), "seed": int(first["seed"]), "layers": layers.setdefault(key, len(layers)),
            "vectors": vector_labels([e["slate"] for e in rows]),
            "shown": sum(len(e["slate"]) for e in ok), "chosen": sum(len(e["chosen"]) for e in ok),
            "contradictions": sum(map(_flagged, ok)), "failed": len(rows) - len(ok),
            "turns": [_turn(e, r) for e, r in zip(rows, reasons)],
        })
    return {"items": items, "layers": [json.loads(k) for k in layers],
            "personas": {pid: card.name for pid, card in cards.items()},
            "reasons": REASONS_RECORDED if recorded else REASONS_RECOMPUTED if cards else REASONS_MISSING,
            "sessions": out}
