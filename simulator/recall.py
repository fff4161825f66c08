"""A twin's Q&A about its own record: "Did you like <title>?", answered by its decision model, graded by the real rating.

A persona card's facts are in the simulated user's own prompt (answering them is a lookup), and for a
twin the card's demographics are its persona's most common ones, not the real user's. So a twin
(`simulator.grounded.GroundedUser` with ``profile.twin`` set and a 'twin' memory) is asked about a film
of its own training history instead:

- the fact (`own_fact`): a film the real user liked (rating >= 4, ``Memory.liked``: expected "yes") or
  disliked (rating <= 2, ``Memory.disliked``: expected "no"), the kind drawn 50:50 from the question's seed
  and the twin when the memory has both (so "always yes" scores 0.5), the film uniformly within the kind;
  choices ["yes", "no"].
  A film rated 3 is neither, and is never asked;
- the answer is not a lookup: the film is left out of what the twin knows, as a film of the calibration's
  validation rows was (`personasim calibrate` fits like-given-watched on ratings outside the memory and the
  item space it reads), and the twin's `ChoiceModel` gives P(like | watched) of the film from the evidence
  (`simulator.evidence.evidence_features`) of that reduced world (`leave_out`, `space_without`);
- "yes" is drawn from that probability when the grounding is ``sampled`` (the default), with a seed derived
  from the question's, as a twin that watched the film in a session draws its like (`simulator.choice.decide`);
  under a ``deterministic`` grounding "yes" iff P > 0.5, decide's own rule. The probability is recorded
  (``QARecord.p_yes``), so the draw-free expected accuracy (P or 1 - P) can be read beside the drawn one.

What is left out exactly: the film from the memory's liked, disliked, recent and watched; its factor from the
memory's taste (a twin's taste is the sum of the PureSVD factors of the items it rated, one rating per item);
the twin's own like from its persona's member share of the film (when the grounding holds every member's
twin memory, as `evals.validity.grounding.memories` builds it: `persona_members`); from the item space, the
twin's entry in the film's item-kNN column (the history and recent cosines) and, for a liked film, its
positive in the film's popularity.

What still carries the rating (documented leaks, each one rating among the training set's):
- the memory's ``recent`` holds only the latest RECENT items: without the film it has RECENT - 1, not the
  one before them, which the memory does not keep;
- the item space's PureSVD factors (the cf feature) and EASE weights (the ease feature) were fitted on a
  matrix holding the twin's rating of the film (refitting them per question is an SVD and an N x N inverse);
  both see only that the twin *watched* the film, not how it rated it;
- the genre prior (shares of all training likes), the film's shrunk mean rating (not in P(like | watched)),
  the memory's mean rating (ditto) and the persona's canon, which the ``llm`` feature's judgement is asked
  with (a persona-level judgement the twin's like is one member's share of).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simulator.evidence import ItemSpace, Memory, evidence_features
from simulator.layers import derive_seed
from simulator.turn import QARecord

YES, NO = "yes", "no"
CHOICES = [YES, NO]


def asks_own_fact(user) -> bool:
    """Whether ``user`` is a twin asked about its own record (not the card's facts): a grounded user
    whose profile names a twin and whose memory is a 'twin' memory, calibrated on ratings. A twin of an
    implicit log is asked the card's facts instead: its record holds only what it took, each kept
    (`simulator.choice.ChoiceModel.implicit`), so "did you like it?" would be "yes" by construction."""
    g = getattr(user, "grounding", None)
    p = getattr(user, "profile", None)
    if g is None or p is None or not p.twin:
        return False
    twin_model = g.models.get("twin")
    if twin_model is not None and twin_model.implicit:
        return False
    memory = g.memory_for(p)
    return memory is not None and memory.kind == "twin"


def own_fact(memory: Memory, rng: np.random.Generator) -> tuple[int, str] | None:
    """(item index, expected answer) of a film of ``memory``'s record: liked -> "yes", disliked -> "no", the
    kind drawn 50:50 when there are both; None when the memory has neither."""
    kinds = [(a, ans) for a, ans in ((memory.liked, YES), (memory.disliked, NO)) if len(a)]
    if not kinds:
        return None
    items, expected = kinds[int(rng.integers(len(kinds)))]
    return int(items[int(rng.integers(len(items)))]), expected


def expected_answer(memory: Memory, item: int) -> str:
    """What the real record says of ``item``: "yes" (liked), "no" (disliked); ValueError otherwise."""
    if item in set(memory.liked.tolist()):
        return YES
    if item in set(memory.disliked.tolist()):
        return NO
    raise ValueError(f"item {item} is neither liked nor disliked in {memory.key}")


def persona_members(grounding, persona_id: str) -> int | None:
    """How many members the persona's shares are over: the grounding's twin memories of that persona, checked
    against its canon (every member share times that number is a whole number); None when they disagree (a
    grounding holding only some twins), so no share is corrected."""
    n = sum(1 for m in grounding.memories.values() if m.kind == "twin" and m.persona_id == persona_id)
    canon = grounding.memories.get(f"persona:{persona_id}")
    if not n or canon is None:
        return None
    whole = all(np.allclose(a * n, np.round(a * n), atol=1e-6) for a in (canon.persona_share, canon.watched))
    return n if whole else None


def leave_out(memory: Memory, item: int, space: ItemSpace, *, members: int | None = None) -> Memory:
    """A copy of twin ``memory`` that never rated ``item``: not in liked, disliked, recent or watched; the item's
    factor taken from the taste (the sum of the rated items' factors); with ``members`` (the persona's member
    count), the twin's own like taken from the persona share. Arrays are copied, never changed in place
    (a persona's shares are one array shared by its twins)."""
    if memory.kind != "twin":
        raise ValueError(f"{memory.key}: only a twin's memory is a real record to leave a film out of")
    item = int(item)
    liked = item in set(memory.liked.tolist())
    watched = memory.watched.copy()
    rated = bool(watched[item] > 0)
    watched[item] = 0
    share = memory.persona_share.copy()
    if liked and members:
        share[item] = max(share[item] - 1.0 / members, 0.0)
    return dataclasses.replace(
        memory, key=f"{memory.key}-{space.ids[item]}",
        liked=memory.liked[memory.liked != item], disliked=memory.disliked[memory.disliked != item],
        recent=memory.recent[memory.recent != item], watched=watched, persona_share=share,
        taste=memory.taste - space.factors[item] if rated else memory.taste.copy())


def own_column(space: ItemSpace, memory: Memory) -> int | None:
    """The twin's column in the item vectors (the users of the train "watched" matrix): the one whose non-zero
    rows are exactly the items the memory watched; None when there is none. Two users who rated the same items
    have the same column, and removing either from an item's column gives the same vectors."""
    w = np.flatnonzero(memory.watched > 0)
    if not len(w):
        return None
    V = space.vectors
    cand = np.flatnonzero((V[w] > 0).all(0))
    cand = cand[(V[:, cand] > 0).sum(0) == len(w)]
    return int(cand[0]) if len(cand) else None


def space_without(space: ItemSpace, memory: Memory, item: int) -> ItemSpace:
    """``space`` without twin ``memory``'s rating of ``item``: the twin's entry out of the item's kNN vector
    (renormalised; `own_column`) and, for a liked item, its positive out of the item's popularity. A copy;
    the factors and EASE weights are kept (module docstring)."""
    item = int(item)
    vectors, log_pop = space.vectors, space.log_pop
    col = own_column(space, memory)
    if col is not None and vectors[item, col] > 0:
        row = vectors[item].astype(np.float64)
        row[col] = 0.0
        norm = np.linalg.norm(row)
        vectors = vectors.copy()
        vectors[item] = row / norm if norm > 0 else row
    if item in set(memory.liked.tolist()):
        log_pop = log_pop.copy()
        log_pop[item] = np.log1p(max(round(float(np.expm1(log_pop[item]))) - 1, 0))
    return dataclasses.replace(space, vectors=vectors, log_pop=log_pop, _index=space._index)


def recall_features(space: ItemSpace, memory: Memory, item: int, *, members: int | None = None) -> np.ndarray:
    """The EVIDENCE features [1, F] of ``item`` for twin ``memory`` with the item left out of memory and space."""
    return evidence_features(space_without(space, memory, item), leave_out(memory, item, space, members=members),
                             np.asarray([item]))


async def answer_own(user, *, seed: int, item: int | None = None, judge=None) -> QARecord:
    """Ask twin ``user`` (a reset `GroundedUser`, `asks_own_fact`) "Did you like <title>?" about a film of its
    training record (``item``: that film; None: `own_fact` drawn from ``seed``) and grade its answer against
    the record (module docstring). No LLM is called unless the choice model has the ``llm`` feature: then the
    persona's judgement of the film, read from ``Grounding.judged`` or asked with ``judge``
    (`simulator.grounded.llm_judgement`, passed in so that this module does not import its caller) with the
    calibration's seed, and not stored there: what a persona's sessions judged stays what they were shown."""
    p, memory, model = user._parts()
    g = user.grounding
    space = g.space
    if item is None:
        fact = own_fact(memory, np.random.default_rng(derive_seed(seed, "own-fact", memory.key)))
        if fact is None:
            return QARecord(key="own record", question="Did you like it?", choices=list(CHOICES), expected="",
                            error=f"{memory.key} has no liked or disliked training film to be asked about")
        item, expected = fact
    else:
        item, expected = int(item), expected_answer(memory, int(item))
    rec = QARecord(key=f"own:{space.ids[item]}", question=f"Did you like {space.titles[item]}?",
                   choices=list(CHOICES), expected=expected)
    X = recall_features(space, memory, item, members=persona_members(g, memory.persona_id))
    if "llm" in model.features:  # the persona's judgement (memory-free), read from the shared ones, not added to them
        key = (memory.persona_id, space.ids[item])
        if key in g.judged:
            judged = g.judged[key]
        else:
            if judge is None:
                raise ValueError("the choice model reads the LLM feature: pass judge=simulator.grounded.llm_judgement")
            try:
                judged = (await judge(user.llm, p.persona, g.memories[f"persona:{memory.persona_id}"], space,
                                              np.asarray([item]), seed=g.judge_seed))[0]
            except RuntimeError as exc:
                return rec.model_copy(update={"error": str(exc)})
        X = np.column_stack([X, [judged]])
    p_yes = float(model.p_like_watched(X, user.level())[0])
    if g.sampled:
        yes = bool(np.random.default_rng(derive_seed(seed, "own-answer", memory.key, item)).random() < p_yes)
    else:
        yes = p_yes > 0.5
    answer = YES if yes else NO
    return rec.model_copy(update={"answer": answer, "correct": answer == expected, "p_yes": round(p_yes, 6)})
