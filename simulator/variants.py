"""User variants by name: `USER_CLASSES` and `make_user`.

Apart from `simulator.user` so that the factory can import every variant, `simulator.grounded`'s
`GroundedUser` included, while the variants import only the base class (no import circle).
"""

from __future__ import annotations

from simulator.grounded import GroundedUser
from simulator.user import NaiveUser, SimulatedUser

USER_CLASSES: dict[str, type[SimulatedUser]] = {"layered": SimulatedUser, "naive": NaiveUser}


def make_user(variant: str, llm, grounding=None, **settings) -> SimulatedUser:
    """A user of ``variant``; ``grounding`` (a `simulator.grounded.Grounding`) goes to grounded users only."""
    classes = {**USER_CLASSES, "grounded": GroundedUser}
    if variant not in classes:
        raise ValueError(f"unknown user variant {variant!r}; choose one of {sorted(classes)}")
    if variant == "grounded":
        return GroundedUser(llm, grounding=grounding, **settings)
    return classes[variant](llm, **settings)
