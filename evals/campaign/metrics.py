"""The A/B metrics of one session, by name: `METRICS`.

A session is one simulated user's run against one recommender variant, read from its turn events
(only ``ok`` turns count). `Session.of` parses the rows once into `Page`s; each metric is a function
of that `Session` to a float, NaN where it is undefined. `evals.campaign.ab` averages a metric over a
user's sessions and compares the users paired across variants.

The first two metrics are the primary ones: they cannot saturate at the page cap
(`simulator.turn.MAX_CHOICES` choices a page caps acceptance at 2/5 on pages of 5, and a user who
takes its cap on both arms shows no difference there; it can still like more or fewer of what it
takes, and like them higher on the page).

Add a metric: a function ``(session) -> float`` in this module with ``@metric(NAME, LOW, HIGH)``
above it and its definition as its docstring (or ``METRICS.add`` from your own module). It joins
every A/B table, the A/A check and the report; `tests/test_registries.py` runs every metric through
the same checks (a value within [LOW, HIGH] or NaN, NaN on a session with nothing shown).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from personas.infra.registry import Registry
from simulator.selector import LIKED_MIN  # a chosen item rated at least this is liked, as the grounded users decide


@dataclass(frozen=True)
class Page:
    """One ok turn: the slate's items (dicts with id, genres, component), the chosen ids that were on the
    slate (once each, best first), every rating given, and the turn's consistency value (None: none)."""

    slate: list[dict]
    chosen: list[str]
    ratings: dict[str, float]
    consistency: float | None = None

    def liked(self) -> list[str]:
        """Chosen ids rated >= LIKED_MIN."""
        return [i for i in self.chosen if self.ratings.get(i) is not None and float(self.ratings[i]) >= LIKED_MIN]

    def position(self, item_id: str) -> int:
        return next(j for j, s in enumerate(self.slate) if s["id"] == item_id)

    def item(self, item_id: str) -> dict:
        return self.slate[self.position(item_id)]


@dataclass(frozen=True)
class Session:
    """The ok turns of one session, in order."""

    pages: list[Page] = field(default_factory=list)

    @classmethod
    def of(cls, rows: pd.DataFrame) -> "Session":
        """A session from its TurnEvent rows (`evals.campaign.events.events_frame`)."""
        pages = []
        for e in rows[rows["ok"]].itertuples(index=False):
            on_slate = {s["id"] for s in e.slate}
            c = e.consistency or {}
            value = c.get("reward") if c.get("reward") is not None else c.get("prompt_to_line")
            pages.append(Page(slate=list(e.slate), chosen=[i for i in dict.fromkeys(e.chosen) if i in on_slate],
                              ratings={k: float(v) for k, v in (e.ratings or {}).items()},
                              consistency=float(value) if value is not None and np.isfinite(value) else None))
        return cls(pages)

    def shown(self) -> int:
        return sum(len(p.slate) for p in self.pages)


@dataclass(frozen=True)
class Metric:
    """One metric: ``value(session)`` within [low, high] or NaN; ``help`` is its definition."""

    name: str
    value: Callable[[Session], float]
    low: float
    high: float
    help: str


METRICS: Registry[Metric] = Registry("A/B metric")


def metric(name: str, low: float, high: float):
    """Register the decorated ``value(session)`` function as the metric ``name``; its docstring is its help."""
    def register(value: Callable[[Session], float]):
        METRICS.add(name, Metric(name, value, low, high, " ".join((value.__doc__ or "").split())))
        return value
    return register


def _dcg_weight(position: int) -> float:
    return float(1.0 / np.log2(position + 2))


@metric("like_rate", 0.0, 1.0)
def like_rate(s: Session) -> float:
    """Items chosen and rated >= LIKED_MIN / items shown, pooled over the turns."""
    shown = s.shown()
    return sum(len(p.liked()) for p in s.pages) / shown if shown else np.nan


@metric("position_weighted_likes", 0.0, 1.0)
def position_weighted_likes(s: Session) -> float:
    """like_rate with each page position j (0-based) weighted 1 / log2(j + 2), over the same weights of every
    shown position (a DCG of likes over its ideal)."""
    ideal = sum(_dcg_weight(j) for p in s.pages for j in range(len(p.slate)))
    got = sum(_dcg_weight(p.position(i)) for p in s.pages for i in p.liked())
    return got / ideal if ideal else np.nan


@metric("acceptance_rate", 0.0, 1.0)
def acceptance_rate(s: Session) -> float:
    """Items chosen / items shown, pooled over the turns (chosen ids that were not in the slate are ignored)."""
    shown = s.shown()
    return sum(len(p.chosen) for p in s.pages) / shown if shown else np.nan


@metric("mean_rating", 1.0, 5.0)
def mean_rating(s: Session) -> float:
    """Mean of all ratings given (1-5)."""
    ratings = [r for p in s.pages for r in p.ratings.values()]
    return float(np.mean(ratings)) if ratings else np.nan


@metric("diversity", 0.0, 1.0)
def diversity(s: Session) -> float:
    """Mean pairwise Jaccard distance between the genre sets of the session's liked items (two empty sets:
    distance 0): how varied what the user enjoyed was; NaN with fewer than two liked items."""
    sets = [set(p.item(i).get("genres") or []) for p in s.pages for i in p.liked()]
    if len(sets) < 2:
        return np.nan
    vals = [1.0 - len(a & b) / len(a | b) if a | b else 0.0
            for k, a in enumerate(sets) for b in sets[k + 1:]]
    return float(np.mean(vals))


@metric("mixture_acceptance", 0.0, 1.0)
def mixture_acceptance(s: Session) -> float:
    """Distinct mixture components among the accepted items / distinct components among all shown items (a
    slate item's ``component``: the AMP-CF vector whose attention dominated it); NaN when the variant names no
    component (only mixture models do)."""
    shown = {it.get("component") for p in s.pages for it in p.slate} - {None}
    taken = {p.item(i).get("component") for p in s.pages for i in p.chosen} - {None}
    return len(taken) / len(shown) if shown else np.nan


@metric("consistency", 0.0, 1.0)
def consistency(s: Session) -> float:
    """Mean per turn of consistency["reward"], falling back to consistency["prompt_to_line"] when a turn has
    no reward."""
    values = [p.consistency for p in s.pages if p.consistency is not None]
    return float(np.mean(values)) if values else np.nan


def session_metrics(rows: pd.DataFrame) -> dict[str, float]:
    """Every registered metric of one session's turn rows; NaN where undefined."""
    session = Session.of(rows)
    return {name: float(m.value(session)) for name, m in METRICS.items()}
