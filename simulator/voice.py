"""How a grounded user says its decision: a short plan, said by the LLM in one sentence.

    plan = make_plan(space, memory, slate_idx, chosen=[0])     # the decision and its reason
    messages = plan_messages(plan, profile, verb="watch")      # few-shot: plan -> one sentence
    utterance = clean(completion.text)

A grounded user's choices and ratings are made before the LLM speaks (`simulator.choice`); the voice
only says them. Two voices (``GroundedUser(voice=...)``):

- ``planned`` (the default): the decision and one reason from the evidence go to the model as a plan
  ("Watch: Toy Story. Why: comedy, like Aladdin."), with four worked examples; the model says it in one
  casual sentence. Plain text, no JSON grammar, at most ``PLAN_MAX_TOKENS`` tokens: a 135M model copies
  a plan well and writes free prose badly.
- ``free``: the slate, the decision and the liked titles go to the model, which answers
  ``{"utterance": "..."}`` under a JSON grammar (`simulator/prompts/grounded_voice.j2`). Kept as the
  baseline the planned voice is measured against.

What the plan holds (all from train-only memory, never from the held-out period):
- the chosen titles (or "nothing");
- the reason: the user's liked training film nearest to the first chosen item (cosine of the
  item-kNN vectors of `simulator.evidence.ItemSpace`) and a genre the two share; when nothing is
  chosen, the liked film nearest to the slate as a whole ("none of these is like X"). Never a film
  on the slate: naming one the user passed over would say the opposite of the decision.

The sentence is the model's: it may drop the reason, name another film or ramble. Whether it says the
decision is measured by the structured faithfulness check (`simulator.faithfulness`), never assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from simulator.evidence import ItemSpace, Memory
from simulator.layers import UserProfile
from simulator.prompts import prompt_data, render
from simulator.turn import UTTERANCE_MAX_CHARS

VOICES = ("planned", "free")
#: Most tokens the planned voice may generate (its sentences take 8-20).
PLAN_MAX_TOKENS = 28
#: The planned voice's worked examples (plan fields and the sentence the model copies the form of; films not in a
#: plan's slate) live beside the templates, in simulator/prompts/grounded_plan_shots.json, so the prompt digest of
#: a campaign's config hash covers them (`simulator.prompts.templates_digest`).
PLAN_SHOTS_FILE = "grounded_plan_shots.json"


_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_ARTICLE = re.compile(r"^(?P<rest>.*), (?P<article>The|A|An|Les|La|Le|Il|Das|Die|Der|El)$")


def short_title(title: str) -> str:
    """'Shawshank Redemption, The (1994)' -> 'The Shawshank Redemption': how a person says a title."""
    name = _YEAR.sub("", title).strip()
    m = _ARTICLE.match(name)
    return f"{m['article']} {m['rest']}" if m else name


@dataclass(frozen=True)
class Plan:
    """A decision and its reason, as the voice is told them.

    chosen: short titles of the chosen items (empty: nothing chosen); genre: a genre the first chosen
    item shares with ``like`` (lower case; '' when they share none or nothing was chosen); like: the
    short title of the liked training film the reason points to ('' when the memory has no liked film).
    """

    chosen: tuple[str, ...]
    genre: str
    like: str

    def text(self, verb: str = "watch") -> str:
        if not self.chosen:
            why = f"none of these is like {self.like}." if self.like else "none of these is for me."
            return f"{verb.capitalize()}: nothing. Why: {why}"
        why = ", ".join(x for x in (self.genre, f"like {self.like}" if self.like else "") if x) or "it looks good"
        return f"{verb.capitalize()}: {' and '.join(self.chosen)}. Why: {why}."


def nearest_liked(space: ItemSpace, memory: Memory, items: np.ndarray, exclude=()) -> int | None:
    """The memory's liked item most similar to ``items`` (mean cosine of the item vectors), the items
    themselves and ``exclude`` left out; None when the memory likes nothing else."""
    out = set(np.asarray(items).tolist()) | {int(i) for i in exclude}
    liked = np.asarray([i for i in memory.liked if int(i) not in out], dtype=np.int64)
    if not len(liked):
        return None
    sims = space.vectors[liked] @ space.vectors[np.asarray(items, dtype=np.int64)].T  # [L, M]
    return int(liked[int(np.argmax(sims.mean(axis=1)))])


def make_plan(space: ItemSpace, memory: Memory, slate: np.ndarray, chosen: list[int]) -> Plan:
    """The plan for a decision: ``slate`` item indices [M] of ``space``, ``chosen`` positions in it."""
    slate = np.asarray(slate, dtype=np.int64)
    picked = slate[list(chosen)] if chosen else slate
    like = nearest_liked(space, memory, picked[:1] if chosen else picked, exclude=slate)  # never a slate title
    genre = ""
    if chosen:
        first = space.genres[int(picked[0])]
        shared = [g for g in first if like is not None and g in space.genres[like]]
        genre = (shared or first or [""])[0].lower()
    return Plan(chosen=tuple(short_title(space.titles[int(i)]) for i in picked) if chosen else (),
                genre=genre, like=short_title(space.titles[like]) if like is not None else "")


def plan_messages(plan: Plan, profile: UserProfile, verb: str = "watch") -> list[dict]:
    """The planned voice's prompt: a short system line (who, how they talk), the worked examples as
    earlier turns, then this plan."""
    system = render("grounded_plan", persona=profile.persona, context=profile.context, verb=verb)
    messages = [{"role": "system", "content": system}]
    for ex in prompt_data(PLAN_SHOTS_FILE):
        shot = Plan(chosen=tuple(ex["chosen"].split(" and ")) if ex["chosen"] else (), genre=ex["genre"],
                    like=ex["like"])
        messages += [{"role": "user", "content": shot.text(verb)},
                     {"role": "assistant", "content": ex["sentence"].replace("watch", verb)}]
    return messages + [{"role": "user", "content": plan.text(verb)}]


_ALLOWED = re.compile(r"[^A-Za-z0-9 ,.'!?:&-]")


def clean(text: str, max_chars: int = UTTERANCE_MAX_CHARS) -> str:
    """The first line of a completion, without wrapping quotes or characters an utterance does not
    carry, cut at the last word boundary within ``max_chars``; '' when nothing is left."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    line = _ALLOWED.sub("", line.strip().strip('"').strip("'")).strip()
    if len(line) > max_chars:
        line = line[:max_chars].rsplit(" ", 1)[0].rstrip(" ,")
    return line
