"""The backend contract: one async call, errors classified as transient or permanent."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable

from simulator.llm.errors import PermanentError
from simulator.llm.types import Message, RawCompletion, TopLogprobs


class Backend(ABC):
    """A provider of chat completions. Retries, cache and accounting live in LLMClient.

    ``complete`` raises TransientError for what a retry may fix and
    PermanentError for what it will not; it never retries by itself.
    """

    name: str = ""
    model: str = ""

    @abstractmethod
    async def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        seed: int,
        json_schema: dict | None,
    ) -> RawCompletion: ...

    async def first_token_logprobs(self, messages: list[Message], *, seed: int, top_logprobs: int) -> TopLogprobs:
        """The ``top_logprobs`` most likely first answer tokens at temperature 0:
        token text -> natural-log probability (at most ``top_logprobs`` entries).
        Errors are classified as in ``complete``."""
        raise PermanentError(f"backend {self.name!r} cannot return log-probabilities")

    async def first_token_logprobs_many(self, conversations: list[list[Message]], *, seed: int,
                                        top_logprobs: int) -> list[TopLogprobs]:
        """`first_token_logprobs` of several prompts, in order (one request as far as retries go)."""
        return [await self.first_token_logprobs(m, seed=seed, top_logprobs=top_logprobs) for m in conversations]

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in an error message (API keys)."""
        return ()

    async def aclose(self) -> None:
        return None


def merge_tokens(pairs: Iterable[tuple[str, float]], *, tokens_in: int = 0) -> TopLogprobs:
    """(token text, log-prob) pairs -> TopLogprobs. Distinct token ids that print the
    same text (e.g. byte fragments decoded to "") are one answer: their mass adds up."""
    out = TopLogprobs(tokens_in=tokens_in)
    for text, lp in pairs:
        lp = float(lp)
        out[text] = lp if text not in out else _logaddexp(out[text], lp)
    return out


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))
