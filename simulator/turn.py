"""The turn record and the JSON schemas the LLM answers in.

Schemas are built per slate so that the backend's grammar (llama.cpp) can
enforce them: chosen ids are an enum of the slate's ids, ratings an integer
enum 1..5 (grammars do not enforce minimum/maximum), the utterance has a
maxLength (and the caller gives max_tokens headroom, since a string cut by
max_tokens breaks the JSON). Every answer is validated again here, because
backends without a grammar (json_object or prompt mode) may return anything:
an id the slate did not contain is a failed turn with its reason, never a
silently fixed one. Each is a `TemplateSchema`: the client checks a template
against the JSON Schema metaschema once, not every slate's schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simulator.catalog import Item
from simulator.llm.jsonout import TemplateSchema

RATINGS = [1, 2, 3, 4, 5]
UTTERANCE_MAX_CHARS = 100
#: Words and punctuation only; N is replaced by (max chars - 1).
UTTERANCE_PATTERN = "^[A-Za-z][A-Za-z ,.'!?-]{0,N}$"
MAX_CHOICES = 2


def turn_schema(slate: list[Item], max_choices: int = MAX_CHOICES, utterance_chars: int = UTTERANCE_MAX_CHARS) -> dict:
    """JSON schema of one turn answer for this slate (property order = generation order).

    The utterance comes first (small models then write words, not ids) and is
    limited to letters and punctuation: without that the 135M model fills it
    with digit strings until max_tokens cuts the JSON.
    """
    ids = [it.id for it in slate]
    return TemplateSchema(f"turn/{max_choices}/{utterance_chars}", {
        "type": "object",
        "properties": {
            "utterance": {
                "type": "string",
                "minLength": 1,
                "maxLength": utterance_chars,
                "pattern": UTTERANCE_PATTERN.replace("N", str(utterance_chars - 1)),
            },
            "ratings": {
                "type": "object",
                "properties": {i: {"type": "integer", "enum": RATINGS} for i in ids},
                "required": ids,
                "additionalProperties": False,
            },
            "chosen": {"type": "array", "items": {"type": "string", "enum": ids}, "maxItems": max_choices},
            "stop": {"type": "boolean"},
        },
        "required": ["utterance", "ratings", "chosen", "stop"],
        "additionalProperties": False,
    })


def utterance_schema(utterance_chars: int = UTTERANCE_MAX_CHARS) -> dict:
    """Only an utterance: a grounded user's decision is already made, the LLM voices it."""
    return TemplateSchema(f"utterance/{utterance_chars}", {
        "type": "object",
        "properties": {"utterance": turn_schema([], 0, utterance_chars)["properties"]["utterance"]},
        "required": ["utterance"],
        "additionalProperties": False,
    })


def pick_schema(pool: list[Item], max_picks: int) -> dict:
    """Onboarding answer: the liked items among ``pool`` (at least one)."""
    ids = [it.id for it in pool]
    return TemplateSchema(f"pick/{max_picks}", {
        "type": "object",
        "properties": {
            "liked": {"type": "array", "items": {"type": "string", "enum": ids}, "minItems": 1, "maxItems": max_picks}
        },
        "required": ["liked"],
        "additionalProperties": False,
    })


def answer_schema(choices: list[str]) -> dict:
    """A multiple-choice answer: exactly one of ``choices``."""
    return TemplateSchema("answer", {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": list(choices)}},
        "required": ["answer"],
        "additionalProperties": False,
    })


class TurnAnswer(BaseModel):
    """The validated content of one turn answer."""

    chosen: list[str]
    ratings: dict[str, int]
    utterance: str
    stop: bool


def validate_turn_answer(parsed: Any, slate: list[Item]) -> tuple[TurnAnswer | None, str | None]:
    """(answer, None) when ``parsed`` is a valid answer for ``slate``, else (None, reason).

    Repeated chosen ids are kept once (the order of first mention is kept).
    """
    if not isinstance(parsed, dict):
        return None, f"answer is {type(parsed).__name__}, not a JSON object"
    ids = [it.id for it in slate]
    for key in ("ratings", "chosen", "utterance", "stop"):
        if key not in parsed:
            return None, f"answer has no {key!r}"
    ratings, chosen, utterance, stop = parsed["ratings"], parsed["chosen"], parsed["utterance"], parsed["stop"]
    if not isinstance(ratings, dict):
        return None, "'ratings' is not an object"
    for item_id, value in ratings.items():
        if item_id not in ids:
            return None, f"rated item id {item_id!r} is not in the slate"
        if isinstance(value, bool) or not isinstance(value, int) or value not in RATINGS:
            return None, f"rating {value!r} for item {item_id!r} is not an integer 1..5"
    missing = [i for i in ids if i not in ratings]
    if missing:
        return None, f"no rating for slate item(s) {missing}"
    if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
        return None, "'chosen' is not a list of item ids"
    for item_id in chosen:
        if item_id not in ids:
            return None, f"chosen item id {item_id!r} is not in the slate"
    if not isinstance(utterance, str) or not utterance.strip():
        return None, "'utterance' is empty"
    if not isinstance(stop, bool):
        return None, "'stop' is not true/false"
    return TurnAnswer(
        chosen=list(dict.fromkeys(chosen)),
        ratings={i: int(ratings[i]) for i in ids},
        utterance=utterance.strip(),
        stop=stop,
    ), None


class QARecord(BaseModel):
    """One multiple-choice question put to the user mid-session (graded by exact match)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    question: str
    choices: list[str]
    expected: str
    answer: str | None = None
    correct: bool | None = Field(None, description="None when the answer failed")
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    p_yes: float | None = Field(None, description="a twin's question about its own record (`simulator.recall`): "
                                "P(like | watched) of the film by its decision model, the film left out of what "
                                "it knows; the answer is drawn from it (sampled) or is 'yes' iff it is > 0.5")


class TurnCore(BaseModel):
    """What every record of a turn carries: who, what was said and how it scored.

    `Turn` (the simulator's full record) and the campaign's stored `evals.campaign.events.TurnEvent` both
    extend it, so the shared fields are declared once. ``variant`` is not shared: in a `Turn` it is the
    simulated user's variant, in a `TurnEvent` the recommender's.
    """

    model_config = ConfigDict(extra="forbid")

    user_id: str
    persona_id: str
    turn: int
    seed: int = Field(description="the session's seed")
    model: str = Field("", description="LLM model name")
    backend: str = ""
    layers: dict[str, Any] = Field(default_factory=dict)
    chosen: list[str] = Field(default_factory=list)
    ratings: dict[str, int] = Field(default_factory=dict)
    utterance: str = ""
    stop: bool = False
    ok: bool = True
    error: str | None = None
    evidence: list[str] = Field(default_factory=list, description="titles the user may cite as a reason (a "
                                "grounded user's liked training films shown to its voice); read by "
                                "`simulator.faithfulness`")
    consistency: dict[str, float | None] = Field(default_factory=dict, description="prompt_to_line, line_to_line, "
                                                 "alignment, faithful, qa, reward")
    decision: dict[str, Any] = Field(default_factory=dict, description="grounded users: per item id the like "
                                     "probability and what each evidence source added to its logit")
    tokens_in: int = Field(0, description="all LLM calls of this turn (every candidate, the Q&A)")
    tokens_out: int = 0
    latency_s: float = Field(0.0, description="wall seconds for this turn, all calls included")


class Turn(TurnCore):
    """One turn of one session, with everything needed to score and reproduce it.

    ``consistency`` holds per-line scores: ``prompt_to_line`` (1.0 when the line
    does not contradict the persona, else 0.0), ``line_to_line`` (1 - conflicts /
    earlier lines; None on the first line), ``alignment`` (`simulator.judges.alignment`),
    ``faithful`` (1.0/0.0 when the utterance is / is not faithful to the line's decision,
    `simulator.faithfulness`; None when it has no word to read), ``qa`` (1.0/0.0 when a
    question was asked this turn, else None) and ``reward`` (what best-of-N maximised).
    A failed turn has ``ok=False``, its ``error``, and no scores.
    """

    variant: str = Field(description="simulated-user variant: 'layered', 'naive' or 'grounded'")
    call_seed: int = Field(0, description="the seed of the kept candidate's LLM call")
    slate: list[Item] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list, description="why the judge flagged this line")
    qa: QARecord | None = None
    best_of: int = 1
    candidate_rewards: list[float | None] = Field(default_factory=list)
    raw: str = Field("", description="the kept candidate's JSON text")
    meta: dict[str, Any] = Field(default_factory=dict, description="passed through from the caller (config hash, ...)")


class Onboarding(BaseModel):
    """The user's pick of liked items from a seeded pool (feeds the recommender's fold-in)."""

    model_config = ConfigDict(extra="forbid")

    pool: list[str]
    liked: list[str] = Field(default_factory=list)
    ok: bool = True
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0


class PreferencePair(BaseModel):
    """Two scored candidates for one prompt (DPO: ``prompt``, ``chosen``, ``rejected``)."""

    model_config = ConfigDict(extra="forbid")

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    reward_chosen: float
    reward_rejected: float
    user_id: str
    turn: int
    seed: int
    model: str


class Transcript(BaseModel):
    """One session: the user, its onboarding, its turns and its scored candidate pairs."""

    model_config = ConfigDict(extra="forbid")

    user_id: str
    persona_id: str
    variant: str
    seed: int
    model: str = ""
    best_of: int = 1
    layers: dict[str, Any] = Field(default_factory=dict)
    onboarding: Onboarding | None = None
    turns: list[Turn] = Field(default_factory=list)
    pairs: list[PreferencePair] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
