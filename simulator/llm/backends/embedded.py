"""`embedded`: SmolLM2-135M-Instruct (GGUF) in process through llama-cpp-python.

No network and no server. A JSON schema becomes a llama.cpp grammar, so even
this small model returns parseable JSON (llama.cpp enforces enum, required
and types, not numeric minimum/maximum: use enums for bounded values).
llama.cpp contexts are not thread-safe: calls run one at a time. By default
they run on the event loop's own thread: measured here, llama.cpp with two
threads generated about 40% fewer tokens/s when called from a worker thread
(`benchmarks/llm_throughput.py`), and the model serialises calls anyway.
``in_thread=True`` keeps the event loop free while the model works.

By default every call starts from an empty KV cache (``reuse_prefix=False``):
llama.cpp reuses the longest common prompt prefix of the previous call, and a
prompt evaluated in two chunks can round differently from one evaluated at
once, so the same (prompt, seed) could sample differently depending on what
ran before it. Resetting makes an answer a function of its inputs alone, which
is what lets a resumed or Ray-distributed campaign reproduce a local one.
``benchmarks/llm_throughput.py`` measures what this costs.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from simulator.llm.backends.base import Backend
from simulator.llm.errors import LLMConfigError
from simulator.llm.types import Message, RawCompletion


class EmbeddedBackend(Backend):
    name = "embedded"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        reuse_prefix: bool = False,
        in_thread: bool = False,
    ):
        if model_path is None:
            from personas.assets import AssetMissingError, smollm2_gguf

            try:
                model_path = smollm2_gguf()
            except AssetMissingError as exc:
                raise LLMConfigError(str(exc)) from None
        model_path = Path(model_path)
        if not model_path.is_file():
            raise LLMConfigError(f"model file {model_path} does not exist; pass a .gguf path or run `make setup`")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LLMConfigError(
                "backend 'embedded' needs llama-cpp-python: pip install 'llama-cpp-python[server]'"
            ) from None
        self.model = model_path.stem
        self.model_path = model_path
        self._llm = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads or os.cpu_count() or 1,
            seed=0,
            verbose=False,
        )
        self.reuse_prefix = reuse_prefix
        self.in_thread = in_thread
        self._lock = threading.Lock()

    def _complete_sync(self, messages, temperature, max_tokens, seed, json_schema) -> RawCompletion:
        kwargs = {}
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        with self._lock:
            if not self.reuse_prefix:
                self._llm.reset()
            out = self._llm.create_chat_completion(
                messages=list(messages),
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                **kwargs,
            )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return RawCompletion(
            text=choice["message"]["content"] or "",
            tokens_in=usage.get("prompt_tokens", 0),
            tokens_out=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason"),
        )

    async def complete(self, messages: list[Message], *, temperature, max_tokens, seed, json_schema) -> RawCompletion:
        if self.in_thread:
            return await asyncio.to_thread(self._complete_sync, messages, temperature, max_tokens, seed, json_schema)
        await asyncio.sleep(0)  # let other sessions reach their next call first
        return self._complete_sync(messages, temperature, max_tokens, seed, json_schema)
