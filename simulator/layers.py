"""Three layers of variation that multiply: persona x subtopic x context.

- persona: a `PersonaCard` plus Big Five values jittered per user: each trait
  is the card's value plus a uniform draw in [-TRAIT_JITTER, +TRAIT_JITTER],
  clipped to [0, 1].
- subtopic: one of the card's ``likes`` (what this user is after today).
- context: one value for each characteristic in `CONTEXT` (12 characteristics,
  each a small value set, listed below).

`sample_users` builds N distinct users from a persona set with one seed.
A user's full assignment (`UserProfile.layers()`) is recorded with every turn.
"""

from __future__ import annotations

import hashlib

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from personas.card import BigFive, PersonaCard

#: The layers a grounded decision can play besides the persona (`simulator.grounded`): the subtopic's focus, the context.
DECISION_LAYERS = ("subtopic", "context")


def parse_layers(text: str) -> tuple[str, ...]:
    """A command line's layer list: 'subtopic,context' -> ('subtopic', 'context'); 'none' or '' -> (). ValueError
    naming a layer that is not one of DECISION_LAYERS."""
    names = tuple(x.strip() for x in text.split(",") if x.strip() and x.strip() != "none")
    unknown = [x for x in names if x not in DECISION_LAYERS]
    if unknown:
        raise ValueError(f"--layers: {', '.join(map(repr, unknown))} is not a layer (choose from "
                         f"{', '.join(DECISION_LAYERS)}, or none)")
    return names


#: Half-width of the uniform jitter added to each Big Five trait (traits live in [0, 1]).
TRAIT_JITTER = 0.1

#: Context characteristics of a recommendation session and their value sets.
CONTEXT: dict[str, tuple[str, ...]] = {
    "mood": ("cheerful", "tired", "stressed", "curious", "nostalgic"),
    "time_available": ("20 minutes", "about two hours", "a whole evening"),
    "companions": ("alone", "with a partner", "with kids", "with friends"),
    "device": ("phone", "laptop", "TV"),
    "occasion": ("weeknight wind-down", "weekend treat", "date night", "family time", "background while working"),
    "familiarity": ("newcomer", "casual fan", "expert"),
    "formality": ("casual", "neutral", "formal"),
    "decisiveness": ("decisive", "hesitant"),
    "effort_tolerance": ("wants something easy", "open to something demanding"),
    "verbosity": ("terse", "chatty"),
    "slang": ("no slang", "some slang"),
    "patience": ("patient", "impatient"),
}

class UserProfile(BaseModel):
    """One simulated user: the three layers plus the variant that plays them."""

    model_config = ConfigDict(extra="forbid")

    user_id: str
    variant: str = Field("layered", description="a name of `simulator.variants.USER_VARIANTS` ('layered', 'naive', "
                         "'grounded'), checked where users are built (`make_user`)")
    persona: PersonaCard
    traits: BigFive = Field(description="the card's traits after per-user jitter")
    subtopic: str | None = Field(description="one of persona.likes; None when the card has no likes")
    context: dict[str, str] = Field(default_factory=dict)
    twin: str | None = Field(None, description="grounded users: the real user (raw id) whose training history "
                                               "this user remembers; None = a persona-level user")

    def layers(self) -> dict:
        """The full layer assignment, as recorded with every turn."""
        return {
            "variant": self.variant,
            "persona_id": self.persona.id,
            "traits": {k: round(v, 3) for k, v in self.traits.model_dump().items()},
            "subtopic": self.subtopic,
            "context": dict(self.context),
            "twin": self.twin,
        }

    def signature(self) -> tuple:
        """What makes two users different (used to keep sampled users distinct)."""
        return (self.persona.id, self.twin, self.subtopic, tuple(sorted(self.context.items())))


def stable_digest(*parts: object) -> bytes:
    """The SHA-256 of the parts joined by '|' (independent of PYTHONHASHSEED): what every derived seed is cut from."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).digest()


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (independent of PYTHONHASHSEED)."""
    return int.from_bytes(stable_digest(*parts)[:4], "big") & 0x7FFFFFFF


def jitter_traits(traits: BigFive, rng: np.random.Generator, width: float = TRAIT_JITTER) -> BigFive:
    values = traits.model_dump()
    noise = rng.uniform(-width, width, size=len(values))
    return BigFive(**{k: float(np.clip(v + d, 0.0, 1.0)) for (k, v), d in zip(values.items(), noise)})


def sample_context(rng: np.random.Generator) -> dict[str, str]:
    return {name: values[int(rng.integers(len(values)))] for name, values in CONTEXT.items()}


def sample_users(
    cards: list[PersonaCard],
    n: int,
    seed: int,
    *,
    variant: str = "layered",
    jitter: float = TRAIT_JITTER,
    max_tries: int = 100,
    twins: dict[str, list[str]] | None = None,
) -> list[UserProfile]:
    """N distinct users, personas assigned round-robin (balanced), the rest drawn from ``seed``.

    Users are distinct in (persona, subtopic, context). A card with no likes
    gets ``subtopic=None``; the session then records a failed turn for it.
    ``twins`` ({persona id: real user ids}): user i of a persona twins that persona's
    (i // n_personas)-th listed member (grounded users; None or too few: persona-level).
    Raises ValueError on an empty persona list.
    """
    if not cards:
        raise ValueError("no personas to sample users from (empty persona list)")
    if n < 0:
        raise ValueError(f"number of users must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    users: list[UserProfile] = []
    seen: set[tuple] = set()
    for i in range(n):
        card = cards[i % len(cards)]
        members = (twins or {}).get(card.id, [])
        twin = members[i // len(cards)] if i // len(cards) < len(members) else None
        for _ in range(max_tries):
            subtopic = card.likes[int(rng.integers(len(card.likes)))] if card.likes else None
            profile = UserProfile(
                user_id=f"user-{i:04d}",
                variant=variant,
                persona=card,
                traits=jitter_traits(card.traits, rng, jitter),
                subtopic=subtopic,
                context=sample_context(rng),
                twin=twin,
            )
            if profile.signature() not in seen:
                break
        else:
            raise ValueError(f"could not draw a distinct user #{i} for persona {card.id!r} in {max_tries} tries")
        seen.add(profile.signature())
        users.append(profile)
    return users


def describe_traits(traits: BigFive) -> str:
    """Traits far from the middle as words (``"very open, reserved"``); '' when all are average."""
    words = {
        "openness": ("conventional", "open to new things"),
        "conscientiousness": ("easygoing", "organised"),
        "extraversion": ("reserved", "outgoing"),
        "agreeableness": ("blunt", "warm"),
        "neuroticism": ("calm", "easily worried"),
    }
    out = []
    for name, value in traits.model_dump().items():
        low, high = words[name]
        if value >= 0.65:
            out.append(high)
        elif value <= 0.35:
            out.append(low)
    return ", ".join(out)
