"""The backend contract: one async call, errors classified as transient or permanent."""

from __future__ import annotations

from abc import ABC, abstractmethod

from simulator.llm.types import Message, RawCompletion


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

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in an error message (API keys)."""
        return ()

    async def aclose(self) -> None:
        return None
