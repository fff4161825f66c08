"""LLMClient: the one async `generate` every part of personasim calls.

Wrapped once around any backend, in this order per call:
cache lookup -> concurrency slot -> backend call with retries (exponential
backoff + jitter on TransientError, honouring Retry-After) -> JSON parse and
schema validation -> one repair retry -> cache store -> usage accounting.
A call that still fails returns ``Completion(ok=False, error=...)``.

`option_probs` reads a judgement as probabilities instead of one sampled
answer: the first answer token's top-k log-probabilities, matched to a few
fixed options, through the same cache, slot, retries and accounting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from simulator.llm.backends.base import Backend
from simulator.llm.cache import ResponseCache, cache_key
from simulator.llm.errors import PermanentError, TransientError, redact
from simulator.llm.jsonout import check_schema, parse_and_validate, repair_messages
from simulator.llm.types import Completion, Message, OptionProbs, Usage

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        raw, attempts, retries, error = await self._call_with_retries(
            lambda: self.backend.complete(messages, **params)
        )
        parsed, repaired = None, False
        if raw is not None and json_schema is not None:
            parsed, reason = parse_and_validate(raw.text, json_schema)
            if reason is not None:
                repaired = True
                log.info("repairing JSON from %s: %s", self.backend.name, reason)
                fixing = repair_messages(messages, raw.text, reason, json_schema)
                fixed, more_attempts, more_retries, error = await self._call_with_retries(
                    lambda: self.backend.complete(fixing, **params)
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

    async def option_probs(
        self, messages: list[Message], options: list[str], *, seed: int = 0, top_logprobs: int = 20
    ) -> OptionProbs:
        """P(option) for the first answer token, read from its top-``top_logprobs`` log-probs.

        A token matches an option when both are equal after strip() and lower(), so
        "Yes", " yes" and "YES" all count for "yes"; a prefix ("ye") does not. Use
        options the model writes as one token (yes/no, A/B/C, 1-5): an option whose
        first token is only part of it would never match. Matching tokens of one
        option add up (logsumexp). Raises ValueError for an empty option list or
        options equal after strip/lower.
        """
        return (await self.option_probs_many([messages], options, seed=seed, top_logprobs=top_logprobs))[0]

    async def option_probs_many(
        self, conversations: list[list[Message]], options: list[str], *, seed: int = 0, top_logprobs: int = 20
    ) -> list[OptionProbs]:
        """`option_probs` of several prompts, the uncached ones sent as ONE backend request (so a
        backend that keeps a shared prompt prefix, like the embedded one, evaluates it once
        however other sessions interleave). Cache, matching and accounting are per prompt."""
        keys = [o.strip().lower() for o in options]
        if not options or any(not k for k in keys):
            raise ValueError(f"options must be non-empty strings, got {options!r}")
        if len(set(keys)) != len(keys):
            raise ValueError(f"options must differ after strip/lower, got {options!r}")
        cache_keys = [cache_key(
            call="option_probs",  # never equal to a generate key, which has no "call" part
            backend=self.backend.name, model=self.backend.model, messages=messages, options=options, seed=seed,
            top_logprobs=top_logprobs,
        ) for messages in conversations]
        results: list[OptionProbs | None] = [None] * len(conversations)
        for i, key in enumerate(cache_keys):
            if self.cache is not None and (hit := self.cache.get(key, OptionProbs)) is not None:
                results[i] = hit.model_copy(update={"cached": True, "latency_s": 0.0})
                self.usage.add(results[i])
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            started = time.perf_counter()
            tops, _, retries, error = await self._call_with_retries(
                lambda: self.backend.first_token_logprobs_many([conversations[i] for i in todo], seed=seed,
                                                               top_logprobs=top_logprobs))
            latency = (time.perf_counter() - started) / len(todo)
            for n, i in enumerate(todo):
                result = OptionProbs(model=self.backend.model, backend=self.backend.name, latency_s=latency)
                err = error
                if tops is not None:
                    top = tops[n]
                    result.tokens_in = getattr(top, "tokens_in", 0)
                    result.logprobs, err = match_options(top, options)
                    if err is None:
                        result.probs = renormalise(result.logprobs, floor=min(top.values()))
                result.ok, result.error = err is None, err
                if result.ok and self.cache is not None:
                    self.cache.put(cache_keys[i], result)
                self.usage.add(result, retries=retries if n == 0 else 0)
                results[i] = result
        return results

    async def _call_with_retries(self, call: Callable[[], Awaitable[T]]) -> tuple[T | None, int, int, str | None]:
        """Runs ``call()`` (one backend request) in a slot, retrying TransientError.
        Returns (its result or None, attempts, retries, error)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._slot():
                    raw = await call()
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


def match_options(top: dict[str, float], options: list[str]) -> tuple[dict[str, float | None], str | None]:
    """Each option's first-token log-prob from the top-k tokens (None: no token matched),
    and an error naming the top tokens when no option matched at all."""
    found: dict[str, list[float]] = {o: [] for o in options}
    by_key = {o.strip().lower(): o for o in options}
    for token, lp in top.items():
        if (option := by_key.get(token.strip().lower())) is not None:
            found[option].append(lp)
    logprobs = {o: _logsumexp(lps) if lps else None for o, lps in found.items()}
    if all(lp is None for lp in logprobs.values()):
        best = sorted(top.items(), key=lambda kv: -kv[1])[:8]
        shown = ", ".join(f"{t!r} {lp:.2f}" for t, lp in best) or "none"
        return logprobs, f"no option of {options!r} among the {len(top)} most likely first tokens: {shown}"
    return logprobs, None


def renormalise(logprobs: dict[str, float | None], *, floor: float) -> dict[str, float]:
    """Softmax over the options. An unmatched option (None) counts as ``floor``, the
    smallest top-k log-prob: its real mass is below that, so its share is an upper bound."""
    filled = {o: floor if lp is None else lp for o, lp in logprobs.items()}
    top = max(filled.values())
    weights = {o: math.exp(lp - top) for o, lp in filled.items()}
    total = sum(weights.values())
    return {o: w / total for o, w in weights.items()}


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))
