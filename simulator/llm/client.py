"""LLMClient: the one async `generate` every part of personasim calls.

Wrapped once around any backend, in this order per call:
cache lookup -> concurrency slot -> backend call with retries (exponential
backoff + jitter on TransientError, honouring Retry-After) -> JSON parse and
schema validation -> one repair retry -> cache store -> usage accounting.
A call that still fails returns ``Completion(ok=False, error=...)``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path
from typing import Any

from simulator.llm.backends.base import Backend
from simulator.llm.cache import ResponseCache, cache_key
from simulator.llm.errors import PermanentError, TransientError, redact
from simulator.llm.jsonout import check_schema, parse_and_validate, repair_messages
from simulator.llm.types import Completion, Message, RawCompletion, Usage

log = logging.getLogger(__name__)


class LLMClient:
    """Concurrency limit, retries, JSON repair, cache and accounting around one backend.

    Args:
        backend: the provider (see `create_backend`).
        concurrency: at most this many backend calls in flight.
        max_retries: retries after the first attempt for transient errors.
        backoff_s: first backoff delay; doubles each retry, capped at ``backoff_max_s``,
            times a jitter factor in [0.5, 1.5).
        cache_dir: folder for the on-disk response cache; None disables caching.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        concurrency: int = 4,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        cache_dir: str | Path | None = None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.backend = backend
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.usage = Usage()
        self._jitter = random.Random()
        self._slots: dict[int, asyncio.Semaphore] = {}

    @property
    def model(self) -> str:
        return self.backend.model

    @property
    def name(self) -> str:
        return self.backend.name

    def _slot(self) -> asyncio.Semaphore:
        # asyncio primitives belong to one event loop; a client may outlive several.
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._slots:
            self._slots = {loop_id: asyncio.Semaphore(self.concurrency)}
        return self._slots[loop_id]

    async def generate(
        self,
        messages: list[Message],
        *,
        temperature: float = 0.7,
        max_tokens: int = 256,
        seed: int = 0,
        json_schema: dict | None = None,
    ) -> Completion:
        """One completion. ``seed`` reaches the backend; ``json_schema`` asks for valid JSON."""
        if json_schema is not None:
            check_schema(json_schema)
        key = cache_key(
            backend=self.backend.name,
            model=self.backend.model,
            messages=messages,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            json_schema=json_schema,
        )
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            hit = hit.model_copy(update={"cached": True, "latency_s": 0.0})
            self.usage.add(hit)
            return hit

        started = time.perf_counter()
        params: dict[str, Any] = dict(temperature=temperature, max_tokens=max_tokens, seed=seed, json_schema=json_schema)
        raw, attempts, retries, error = await self._call_with_retries(messages, **params)
        parsed, repaired = None, False
        if raw is not None and json_schema is not None:
            parsed, reason = parse_and_validate(raw.text, json_schema)
            if reason is not None:
                repaired = True
                log.info("repairing JSON from %s: %s", self.backend.name, reason)
                fixed, more_attempts, more_retries, error = await self._call_with_retries(
                    repair_messages(messages, raw.text, reason, json_schema), **params
                )
                attempts += more_attempts
                retries += more_retries
                if fixed is not None:
                    tokens_in, tokens_out = raw.tokens_in + fixed.tokens_in, raw.tokens_out + fixed.tokens_out
                    parsed, reason2 = parse_and_validate(fixed.text, json_schema)
                    raw = fixed.model_copy(update={"tokens_in": tokens_in, "tokens_out": tokens_out})
                    if reason2 is not None:
                        error = f"invalid JSON after one repair: {reason2}"
                else:
                    error = f"invalid JSON ({reason}); repair call failed: {error}"

        completion = Completion(
            text=raw.text if raw is not None else "",
            parsed=parsed if error is None else None,
            ok=error is None,
            error=error,
            tokens_in=raw.tokens_in if raw is not None else 0,
            tokens_out=raw.tokens_out if raw is not None else 0,
            latency_s=time.perf_counter() - started,
            model=self.backend.model,
            backend=self.backend.name,
            attempts=attempts,
        )
        if completion.ok and self.cache is not None:
            self.cache.put(key, completion)
        self.usage.add(completion, retries=retries, repaired=repaired)
        return completion

    async def _call_with_retries(
        self, messages: list[Message], **params: Any
    ) -> tuple[RawCompletion | None, int, int, str | None]:
        """Returns (raw or None, attempts, retries, error)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._slot():
                    raw = await self.backend.complete(messages, **params)
                return raw, attempt, attempt - 1, None
            except TransientError as exc:
                message = redact(str(exc), self.backend.secrets())
                if attempt > self.max_retries:
                    return None, attempt, attempt - 1, f"gave up after {attempt} attempts: {message}"
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
                delay *= 0.5 + self._jitter.random()
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                log.info("%s: %s; retry %d in %.2fs", self.backend.name, message, attempt, delay)
                await asyncio.sleep(delay)
            except PermanentError as exc:
                return None, attempt, attempt - 1, redact(str(exc), self.backend.secrets())

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.cache is not None:
            self.cache.close()
