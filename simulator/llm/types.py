"""Records that cross the LLM interface. Small, typed, serialisable."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pydantic import BaseModel, Field


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


class Completion(BaseModel):
    """One answer from `LLMClient.generate`. A failure is a Completion too.

    ``ok`` is False when every retry (and the one JSON repair) failed; then
    ``error`` says why and ``parsed`` is None: never a silent default.
    """

    text: str = ""
    parsed: Any | None = Field(None, description="the parsed, schema-valid JSON when a schema was asked")
    ok: bool = True
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = Field(0.0, description="wall seconds for this call, retries included")
    model: str = ""
    backend: str = ""
    cached: bool = False
    attempts: int = Field(1, description="backend calls made (retries and repair included)")


class RawCompletion(BaseModel):
    """What a backend returns for one call, before validation and accounting."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str | None = None


class TopLogprobs(dict[str, float]):
    """What `Backend.first_token_logprobs` returns: token text -> natural-log probability
    of the top-k candidates for the first answer token, plus ``tokens_in`` (prompt tokens)."""

    def __init__(self, items=(), *, tokens_in: int = 0):
        super().__init__(items)
        self.tokens_in = tokens_in


class OptionProbs(BaseModel):
    """Probabilities of answer options for the first answer token (renormalised over the options).

    ``logprobs`` holds each option's own first-token log-prob (None: no matching token in
    the top-k); ``probs`` renormalises them over the options, an unmatched option counting
    as the smallest top-k log-prob (an upper bound on its mass). ``ok`` is False when the
    backend failed or no option matched any top-k token; then ``error`` says why and
    ``probs`` is empty: never a silent default.
    """

    probs: dict[str, float] = Field({}, description="option -> probability, sums to 1 when ok")
    logprobs: dict[str, float | None] = Field(
        {}, description="option -> raw first-token log-prob (None: not in the top-k)"
    )
    ok: bool = True
    error: str | None = None
    tokens_in: int = 0
    latency_s: float = Field(0.0, description="wall seconds for this call, retries included")
    model: str = ""
    backend: str = ""
    cached: bool = False


class Usage(BaseModel):
    """Running totals for one client. Always summed, never overwritten."""

    requests: int = 0
    cache_hits: int = 0
    failures: int = 0
    retries: int = 0
    repairs: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0

    def add(self, c: Completion | OptionProbs, *, retries: int = 0, repaired: bool = False) -> None:
        self.requests += 1
        self.cache_hits += int(c.cached)
        self.failures += int(not c.ok)
        self.retries += retries
        self.repairs += int(repaired)
        if not c.cached:
            self.tokens_in += c.tokens_in
            self.tokens_out += c.tokens_out if isinstance(c, Completion) else 0
        self.latency_s += c.latency_s
