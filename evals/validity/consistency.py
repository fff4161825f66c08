"""Judging a tuned simulator on what it was not tuned on (issue 12).

Best-of-N and DPO optimise `simulator.consistency.reward_of`, of one of three kinds:
``structured`` (the structured judge's prompt-to-line and line-to-line rules plus alignment and
faithfulness), ``ranking`` (the ratings' order against the card plus alignment and faithfulness,
`simulator.faithfulness`) or ``rules`` (``structured`` without faithfulness). Every metric below is
reported for every arm; the caller labels the ones its reward contains, and the evidence
comes from the others:

- ``structured_p2l_inconsistency`` / ``structured_l2l_inconsistency``: 1 - the structured
  judge's prompt-to-line / line-to-line scores (the structured reward's own judge);
- ``rank_inconsistency`` (per line): 1 - `simulator.judges.rank_order`, the share of the
  slate's (liked, disliked) pairs rated in the wrong order (ties 1/2). The structured rules
  only look at ratings beyond fixed thresholds; this is the order of every rating (the
  ranking reward's core).
- ``utterance_inconsistency`` (per line, needs an ``embed`` callable, e.g. MiniLM): the
  utterance is closer (cosine) to "I enjoy <dislikes>" than to "I enjoy <likes>". Neither
  reward reads utterances but through the structured rules' keywords.
- ``unfaithful`` (per line): 1 - `simulator.faithfulness.faithfulness` of the line, recomputed
  from it (it is deterministic); an unparseable utterance counts 1.0, as it is never counted
  faithful. ``unparseable`` (per line): 1.0 when the utterance has no word to read. Both are in
  the ``structured`` and ``ranking`` rewards and held out of ``rules``.
- Q&A accuracy (asked in evaluation only, never a reward), acceptance (chosen / shown) and
  rating spread (standard deviation of a line's ratings), so that a bland model that rates
  everything 3 and chooses nothing cannot pass as a consistent one.
- drift: `evals.validity.drift.variance_ratio` of per-session [mean rating / 5, acceptance] across runs.

Every headline is a mean over held-out users with a bootstrap CI over users; comparisons of
two arms are paired by user (the same users, seeds and slates policy).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np

from evals.stats.bootstrap import bootstrap_mean_ci, ratio_of_means_ci
from personas.card import PersonaCard
from simulator.faithfulness import faithfulness
from simulator.judges import rank_order
from simulator.turn import Transcript, Turn

Embed = Callable[[list[str]], np.ndarray]


def rank_inconsistency(card: PersonaCard, subtopic: str | None, line: Turn) -> float | None:
    """Share of (liked, disliked) slate pairs rated in the wrong order (ties 1/2); None without pairs."""
    order = rank_order(card, subtopic, line)
    return None if order is None else 1.0 - order


def utterance_inconsistency(embed: Embed, cards: dict[str, PersonaCard], transcripts: list[Transcript]) -> dict:
    """{(user_id, turn): 1.0 if the utterance is nearer the persona's dislikes than its likes, else 0.0}."""
    lines = [(tr, t) for tr in transcripts for t in tr.turns if t.ok and t.utterance.strip()]
    if not lines:
        return {}
    ids = sorted({tr.persona_id for tr, _ in lines})
    anchors = embed([f"I enjoy {', '.join(cards[p].likes)} films." for p in ids]
                    + [f"I enjoy {', '.join(cards[p].dislikes)} films." for p in ids])
    like_v = dict(zip(ids, anchors[: len(ids)]))
    dislike_v = dict(zip(ids, anchors[len(ids):]))
    utt = embed([t.utterance for _, t in lines])
    return {(tr.user_id, t.turn): float(u @ dislike_v[tr.persona_id] > u @ like_v[tr.persona_id])
            for (tr, t), u in zip(lines, utt)}


def _mean(vals) -> float | None:
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and np.isnan(v))]
    return statistics.fmean(vals) if vals else None


def per_user(transcripts: list[Transcript], cards: dict[str, PersonaCard], embed: Embed | None = None) -> dict:
    """{metric: {user_id: value}} over each user's successful lines (all runs of the user pooled)."""
    utt = utterance_inconsistency(embed, cards, transcripts) if embed is not None else {}
    rows: dict[str, dict[str, list]] = {}
    for tr in transcripts:
        card, sub = cards[tr.persona_id], tr.layers.get("subtopic")
        r = rows.setdefault(tr.user_id, {k: [] for k in METRICS})
        for t in tr.turns:
            r["failed"].append(0.0 if t.ok else 1.0)
            if not t.ok:
                continue
            p2l = t.consistency.get("prompt_to_line")
            r["structured_p2l_inconsistency"].append(None if p2l is None else 1.0 - p2l)
            l2l = t.consistency.get("line_to_line")
            r["structured_l2l_inconsistency"].append(None if l2l is None else 1.0 - l2l)
            r["rank_inconsistency"].append(rank_inconsistency(card, sub, t))
            r["utterance_inconsistency"].append(utt.get((tr.user_id, t.turn)))
            faith = faithfulness(t)
            r["unfaithful"].append(0.0 if faith.faithful else 1.0)  # unparseable (None): never faithful
            r["unparseable"].append(0.0 if faith.parsed else 1.0)
            r["qa"].append(t.consistency.get("qa"))
            r["acceptance"].append(len(set(t.chosen)) / len(t.slate) if t.slate else None)
            ratings = list(t.ratings.values())
            r["rating_spread"].append(float(np.std(ratings)) if len(ratings) >= 2 else None)
            r["mean_rating"].append(_mean(ratings))
    return {m: {u: v for u, r in rows.items() if (v := _mean(r[m])) is not None} for m in METRICS}


METRICS = ("rank_inconsistency", "utterance_inconsistency", "structured_p2l_inconsistency",
           "structured_l2l_inconsistency", "unfaithful", "unparseable",
           "qa", "acceptance", "rating_spread", "mean_rating", "failed")


def bootstrap_mean(values: dict[str, float], *, seed: int = 0, n_boot: int = 2000) -> dict:
    """Mean over users with a 95% bootstrap CI (users resampled)."""
    v = [float(x) for x in values.values()]
    if not v:
        return {"mean": None, "ci95": None, "n_users": 0}
    mean, lo, hi = bootstrap_mean_ci(v, n_boot=n_boot, seed=seed)
    return {"mean": mean, "ci95": [lo, hi], "n_users": len(v)}


def paired_ratio(arm: dict[str, float], base: dict[str, float], *, seed: int = 0, n_boot: int = 2000) -> dict:
    """mean(arm) / mean(base) over the users both have, with a paired bootstrap 95% CI."""
    users = sorted(set(arm) & set(base))
    if not users:
        return {"ratio": None, "ci95": None, "n_users": 0}
    a, b = np.array([arm[u] for u in users]), np.array([base[u] for u in users])
    ratio = float(a.mean() / b.mean()) if b.mean() else None
    return {"ratio": ratio, "ci95": ratio_of_means_ci(a, b, n_boot=n_boot, seed=seed), "n_users": len(users)}


def drift(transcripts: list[Transcript]) -> dict:
    """`evals.validity.drift.variance_ratio` of sessions' [mean rating / 5, acceptance]; unit = user, runs = sessions."""
    from evals.validity.drift import variance_ratio

    X, persona, unit = [], [], []
    for tr in transcripts:
        lines = [t for t in tr.turns if t.ok and t.slate]
        if not lines:
            continue
        ratings = [r for t in lines for r in t.ratings.values()]
        shown = sum(len(t.slate) for t in lines)
        X.append([np.mean(ratings) / 5 if ratings else np.nan, sum(len(set(t.chosen)) for t in lines) / shown])
        persona.append(tr.persona_id)
        unit.append(tr.user_id)
    if not X:
        return {"ratio_within_over_between": None, "reason": "no successful session"}
    out = variance_ratio(np.array(X), persona, unit)
    out.pop("per_persona", None)
    return out


def arm_report(transcripts: list[Transcript], cards: dict[str, PersonaCard], embed: Embed | None = None,
               *, seed: int = 0) -> tuple[dict, dict]:
    """(summary {metric: mean + CI, drift}, per-user values) of one arm."""
    users = per_user(transcripts, cards, embed)
    summary = {m: bootstrap_mean(users[m], seed=seed) for m in METRICS}
    summary["drift"] = drift(transcripts)
    summary["n_lines"] = sum(t.ok for tr in transcripts for t in tr.turns)
    return summary, users
