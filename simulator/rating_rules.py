"""How a grounded user turns its expected rating into a 1-5 rating: the rating rules, by name.

A rule gives 4 ascending cutpoints on the expected rating; a rating is the bin the expected rating falls
in (`simulator.choice.ChoiceModel.rating`), and a sampled rating is drawn from an ordered probit over the
same bins (`simulator.selector.rating_distribution`). A rule reads the fitted choice model (``model``: its
``kind`` and ``rating_cuts``), so it may use what the fit learnt from the training ratings.

Add a rule: a function ``cutpoints(model) -> (c1, c2, c3, c4)`` in this module with ``@rating_rule(NAME,
HELP)`` above it (or ``RATING_RULES.add`` from your own module). A campaign names it in
``grounding.rating_rule``; `tests/test_registries.py` runs every rule through the same checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from personas.infra.registry import Registry
from simulator.selector import ROUNDING_CUTS


class FittedRatings(Protocol):
    """What a rule may read of a fitted `simulator.choice.ChoiceModel`."""

    kind: str
    rating_cuts: list[float]


@dataclass(frozen=True)
class RatingRule:
    """One rule: ``cutpoints(model)`` -> 4 ascending floats; ``help``: one line for configs and errors."""

    name: str
    cutpoints: Callable[[FittedRatings], tuple[float, ...]]
    help: str


RATING_RULES: Registry[RatingRule] = Registry("rating rule")


def rating_rule(name: str, help: str):
    """Register the decorated ``cutpoints(model)`` function as the rule ``name``."""
    def register(cutpoints: Callable[[FittedRatings], tuple[float, ...]]):
        RATING_RULES.add(name, RatingRule(name, cutpoints, help))
        return cutpoints
    return register


@rating_rule("expected", "rounds the expected rating (cuts 1.5 .. 4.5: the least squared error; ratings pile up "
             "at 3-4, because a regression's predictions shrink to the mean)")
def expected_cuts(model: FittedRatings) -> tuple[float, ...]:
    return ROUNDING_CUTS


@rating_rule("matched", "bins the expected rating at the cutpoints fitted on the training ratings, whose bins "
             "hold the real shares of 1..5")
def matched_cuts(model: FittedRatings) -> tuple[float, ...]:
    if len(model.rating_cuts) != 4:
        raise ValueError(f"the {model.kind} model has no rating cutpoints (a calibration from before they existed); "
                         "rerun `personasim calibrate` for the 'matched' rating rule")
    return tuple(model.rating_cuts)
