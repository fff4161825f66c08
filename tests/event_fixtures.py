"""Synthetic campaign events for the statistics tests (evals.campaign.ab, evals.validity.drift)."""

from __future__ import annotations

from evals.campaign.events import SlateItem, TurnEvent


def event_row(**kw) -> dict:
    """A real TurnEvent row (validated by the record), as events_frame would give it; ``slate`` is a
    list of SlateItem keyword dicts."""
    base = dict(config_hash="h", seed=0, model="m", backend="test", variant="mf", user_variant="layered",
                user_id="u", persona_id="p", run=0, turn=0)
    base.update(kw)
    base["slate"] = [SlateItem(**s) for s in base.get("slate", [])]
    return TurnEvent(**base).model_dump()
