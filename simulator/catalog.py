"""Items, feedback and the recommender protocol a simulated user meets.

simulator/ never imports recsys/: a recommender is anything with the three
methods of `RecommenderProtocol`. evals/ adapts the recsys models to it.
One recommender object serves one session (it may keep session state, e.g.
which items it has shown); build a fresh one per session.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Item(BaseModel):
    """One catalog item as the user sees it.

    ``facets`` maps a facet name to its values, e.g.
    ``{"genres": ["Comedy", "Drama"], "year": ["1995"]}``.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    facets: dict[str, list[str]] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(
        default_factory=dict, description="passed through, never shown to the user (e.g. the index of the AMP-CF "
        "mixture component that produced it, 'component')"
    )

    def line(self) -> str:
        """How the item is shown in a prompt: ``[id] Title (1995) - Comedy, Drama``."""
        year = self.facets.get("year", [])
        genres = [v for k, vs in self.facets.items() if k != "year" for v in vs]
        out = f"[{self.id}] {self.title}"
        if year:
            out += f" ({year[0]})"
        if genres:
            out += " - " + ", ".join(genres)
        return out


class Feedback(BaseModel):
    """What the user did with one shown item in one turn."""

    model_config = ConfigDict(extra="forbid")

    item_id: str
    turn: int = Field(description="turn index; -1 for onboarding")
    chosen: bool = False
    rating: int | None = Field(None, ge=1, le=5)


@runtime_checkable
class RecommenderProtocol(Protocol):
    """The recommender side of a session. These calls are synchronous and fast. A recommender may also
    have ``async def prepare(self) -> None``: the session awaits it before each slate, so slow work (a
    fold-in of the user's new likes) can run off the event loop (`evals.campaign.world.RecsysAdapter`)."""

    def onboard(self, liked_item_ids: list[str]) -> None:
        """Fold-in: the items the user picked as liked before the first slate."""

    def recommend(self, history: list[Feedback], k: int) -> list[Item]:
        """The next slate of ``k`` items given everything the user did so far."""

    def observe(self, feedback: Feedback) -> None:
        """One piece of feedback, as soon as the user gives it."""


class PopularityRecommender:
    """Most-popular items first, never the same item twice in a session.

    Args:
        items: the catalog.
        popularity: one count per item (e.g. number of ratings), same order.
    Items the user onboarded with or was already shown are excluded.
    """

    name = "pop"

    def __init__(self, items: list[Item], popularity: list[float]):
        if len(items) != len(popularity):
            raise ValueError(f"popularity has {len(popularity)} values for {len(items)} items")
        order = np.argsort(-np.asarray(popularity, dtype=float), kind="stable")
        self._ranked = [items[i] for i in order]
        self._seen: set[str] = set()

    def onboard(self, liked_item_ids: list[str]) -> None:
        self._seen.update(liked_item_ids)

    def recommend(self, history: list[Feedback], k: int) -> list[Item]:
        self._seen.update(f.item_id for f in history)
        slate = [it for it in self._ranked if it.id not in self._seen][:k]
        self._seen.update(it.id for it in slate)
        return slate

    def observe(self, feedback: Feedback) -> None:
        self._seen.add(feedback.item_id)


def sample_pool(items: list[Item], popularity: list[float], size: int, seed: int, top: int = 200) -> list[Item]:
    """A seeded onboarding pool: ``size`` items drawn without replacement from the ``top`` most popular."""
    order = np.argsort(-np.asarray(popularity, dtype=float), kind="stable")[: max(top, size)]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(order), size=min(size, len(order)), replace=False)
    return [items[order[i]] for i in sorted(picks)]
