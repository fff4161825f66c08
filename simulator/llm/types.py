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

    def add(self, c: Completion, *, retries: int = 0, repaired: bool = False) -> None:
        self.requests += 1
        self.cache_hits += int(c.cached)
        self.failures += int(not c.ok)
        self.retries += retries
        self.repairs += int(repaired)
        if not c.cached:
            self.tokens_in += c.tokens_in
            self.tokens_out += c.tokens_out
        self.latency_s += c.latency_s
