"""Simulated-user variants by name: `USER_VARIANTS` and `make_user`.

Apart from `simulator.user` so that the registry can name every variant, `simulator.grounded`'s
`GroundedUser` included, while the variants import only the base class (no import circle).

An entry owns what its users need: ``grounded`` variants are built from a real user's record (a
`simulator.grounded.Grounding`: a twin's memory and a fitted choice model), so a campaign with one
fits the choice model and draws twins first. Add a variant: a `SimulatedUser` subclass in its own
module, then one ``USER_VARIANTS.add`` line here; `tests/test_registries.py` runs every entry through
the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from personas.infra.registry import Registry
from simulator.grounded import GroundedUser
from simulator.user import NaiveUser, SimulatedUser


@dataclass(frozen=True)
class UserVariant:
    """One variant: its class, whether it is grounded in a real user's record, and a line of help."""

    name: str
    cls: type[SimulatedUser]
    help: str
    grounded: bool = False

    def build(self, llm, grounding=None, **settings) -> SimulatedUser:
        """A user of this variant; ``grounding`` goes to grounded variants only (and they need it)."""
        if self.grounded:
            return self.cls(llm, grounding=grounding, **settings)
        return self.cls(llm, **settings)


USER_VARIANTS: Registry[UserVariant] = Registry("user variant")
USER_VARIANTS.add("layered", UserVariant("layered", SimulatedUser, "an LLM plays a persona card with a subtopic "
                                         "and a context (the three layers)"))
USER_VARIANTS.add("naive", UserVariant("naive", NaiveUser, "an LLM plays the card alone: the baseline of the layers"))
USER_VARIANTS.add("grounded", UserVariant("grounded", GroundedUser, "the twin of a real member of the persona: a "
                                          "choice model fitted on ratings decides, the LLM says it", grounded=True))


def make_user(variant: str, llm, grounding=None, **settings) -> SimulatedUser:
    """A user of ``variant``; ``grounding`` (a `simulator.grounded.Grounding`) goes to grounded users only.
    An unknown name is a ValueError that lists the known ones."""
    return USER_VARIANTS[variant].build(llm, grounding=grounding, **settings)
