"""`embedded`: SmolLM2-135M-Instruct (GGUF) in process through llama-cpp-python.

No network and no server. A JSON schema becomes a llama.cpp grammar, so even
this small model returns parseable JSON (llama.cpp enforces enum, required
and types, not numeric minimum/maximum: use enums for bounded values).
llama.cpp contexts are not thread-safe: calls run one at a time. By default
they run on the event loop's own thread: measured here, llama.cpp with two
threads generated about 40% fewer tokens/s when called from a worker thread
(`benchmarks/llm_throughput.py`), and the model serialises calls anyway.
``in_thread=True`` keeps the event loop free while the model works.

An answer is a function of its inputs alone, whatever ran before it: that is
what lets a resumed or Ray-distributed campaign reproduce a local one. llama.cpp's
own prefix reuse (``reuse_prefix=True``) breaks it: it keeps the longest common
prompt prefix of the previous call, and a prompt evaluated in two chunks can
round differently from one evaluated at once. By default (``reuse_prefix=False``)
the prompt's whole blocks of SCORE_BLOCK tokens are evaluated in fixed blocks
from position 0 (`_eval_blocks`), reusing the blocks the previous call left in
the KV cache, and only the last partial block and the answer are evaluated by
``create_chat_completion``. Each block is always computed in the same chunk on
the same prefix, so a reused block is the block that would have been computed:
the answer does not depend on the cache (tested), and a user's system prompt,
the same on every turn, is evaluated once. Calls of two kinds that alternate (a
grounded user's item judgements under its persona's prompt, then its utterance
under its own) would each evict the other's prefix; so the KV cache of the last
SAVED_PREFIXES prompts is set aside (llama.cpp's sequence state, a plain copy)
and copied back when it shares more whole blocks with the next prompt than the
live cache does. A copied-back block is the block that was computed, so this
changes cost, not answers (tested). Prompt evaluation is most of a
turn's cost here (a 384-token prompt took 1.44 s, 59 answer tokens 0.40 s);
``benchmarks/llm_throughput.py`` measures the reuse.

`first_token_logprobs` does not go through ``create_chat_completion(logprobs=True)``:
llama-cpp-python only returns log-probs from a Llama built with ``logits_all=True``,
which keeps n_ctx x n_vocab floats (2048 x 49152 x 4 B = 400 MB for SmolLM2) and
computes the output layer for every prompt token on every call. Instead the chat
handler builds the prompt tokens exactly as for ``complete`` (see `_PromptRecorder`),
the KV cache is reset, the prompt is evaluated once, and the last position's logits
are read from llama.cpp. Scoring evaluates the prompt in fixed blocks and keeps
the blocks it shares with the previous scoring call (`_eval_blocks`), so asking
one persona about many items evaluates its system prompt once, and the answer is
still a function of the prompt alone. Measured here (2 cores, shared with other
jobs), one `option_probs` call for a 285-token prompt from scratch took about
1.0 s when a core was free; see benchmarks/llm_throughput.py for the reuse.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np

from simulator.llm.backends.base import Backend, merge_tokens
from simulator.llm.backends.llama_build import DEFAULT_THREADS, probe
from simulator.llm.cache import content_tag
from simulator.llm.errors import LLMConfigError, PermanentError
from simulator.llm.types import Message, RawCompletion, TopLogprobs


#: Tokens per KV block in scoring (`_eval_blocks`): smaller reuses more of a shared prefix
#: at the cost of more llama.cpp calls.
SCORE_BLOCK = 16
#: KV caches of earlier prompts kept aside for reuse (`_eval_blocks`); each is about
#: 23 KB per token for SmolLM2 (11 MB for a 500-token prompt).
SAVED_PREFIXES = 2
#: The live KV cache is set aside when a prompt would discard at least this many of its blocks.
SET_ASIDE_BLOCKS = 4


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


class _PromptBuilt(Exception):
    """Stops a chat handler once it has built the prompt (see `_PromptRecorder`)."""


class _PromptRecorder:
    """Stands in for the Llama inside ``Llama.create_chat_completion``: everything is the
    real model's (template, tokenizer) except ``create_completion``, which records the
    prompt tokens and stops. So scoring sees the very tokens ``complete`` would."""

    def __init__(self, llm):
        self._llm = llm
        self.tokens: list[int] = []

    def __getattr__(self, name):
        return getattr(self._llm, name)

    def create_completion(self, prompt, **_):
        self.tokens = list(prompt)
        raise _PromptBuilt


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
        lora_path: str | Path | None = None,
    ):
        if model_path is None:
            from personas.infra.assets import AssetMissingError, smollm2_gguf

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
        n_threads = n_threads or DEFAULT_THREADS
        probe(str(model_path), n_threads)  # a crash in llama.cpp fails a child process, not this one
        self.model = model_path.stem
        self.model_path = model_path
        lora = {}
        if lora_path is not None:  # a GGUF LoRA adapter (simulator.lora_gguf); another model for the cache
            lora_path = Path(lora_path)
            if not lora_path.is_file():
                raise LLMConfigError(f"adapter file {lora_path} does not exist; pass a GGUF LoRA adapter")
            lora = {"lora_path": str(lora_path)}
            name = lora_path.parent.name if lora_path.name == "adapter.gguf" else lora_path.stem
            self.model = f"{model_path.stem}+{name}@{content_tag(lora_path)}"
        self._llm = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            seed=0,
            verbose=False,
            **lora,
        )
        self.reuse_prefix = reuse_prefix
        self.in_thread = in_thread
        self._lock = threading.Lock()
        self._scored: list[int] | None = None  # tokens in the KV cache, evaluated in SCORE_BLOCKs
        self._saved: list[tuple[list[int], bytes]] = []  # (tokens, sequence state), oldest first

    def _complete_sync(self, messages, temperature, max_tokens, seed, json_schema) -> RawCompletion:
        kwargs = {}
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        with self._lock:
            if self.reuse_prefix:  # llama.cpp's own reuse: fast, but an answer depends on the call before
                self._scored = None
            else:
                tokens = self._prompt_tokens(messages)
                whole = (len(tokens) - 1) // SCORE_BLOCK * SCORE_BLOCK  # at least one token left to evaluate
                if len(tokens) >= self._llm.n_ctx():  # too long: llama-cpp-python's own error names the limit
                    whole = 0
                self._eval_blocks(tokens[:whole], last_block_again=False)
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

    def _prompt_tokens(self, messages: list[Message]) -> list[int]:
        recorder = _PromptRecorder(self._llm)
        try:
            type(self._llm).create_chat_completion(recorder, messages=list(messages), max_tokens=1, temperature=0.0)
        except _PromptBuilt:
            return recorder.tokens
        raise RuntimeError("llama-cpp-python's chat handler did not call create_completion")

    def _first_token_sync(self, messages, top_logprobs: int) -> TopLogprobs:
        import llama_cpp

        llm = self._llm
        with self._lock:
            tokens = self._prompt_tokens(messages)
            if len(tokens) >= llm.n_ctx():
                raise PermanentError(f"prompt of {len(tokens)} tokens does not fit the context of {llm.n_ctx()}")
            self._eval_blocks(tokens)
            # Only the last position has logits (logits_all=False); copy before the next eval.
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()
        logprobs = type(llm).logits_to_logprobs(logits)  # (n_vocab,) natural log
        k = min(top_logprobs, logprobs.shape[0])
        best = np.argpartition(-logprobs, k - 1)[:k]
        best = best[np.argsort(-logprobs[best])]
        pieces = ((llm.detokenize([int(i)]).decode("utf-8", errors="ignore"), logprobs[i]) for i in best)
        return merge_tokens(pieces, tokens_in=len(tokens))

    def _eval_blocks(self, tokens: list[int], *, last_block_again: bool = True) -> None:
        """Evaluate ``tokens`` in fixed blocks of SCORE_BLOCK tokens from position 0, reusing the
        blocks already in the KV cache from the previous call.

        Block k's keys and values depend on tokens[:(k + 1) * SCORE_BLOCK] only and are always
        computed in the same chunks, so the last logits are the same whether a block was reused
        or computed now: a score stays a function of its prompt alone (tested), while a persona's
        long system prompt is evaluated once for all the items asked about. Scoring needs the
        last position's logits, so its last block is evaluated again (``last_block_again``);
        a generation's prompt prefix (whole blocks only) needs no logits.
        """
        llm, B = self._llm, SCORE_BLOCK
        limit = len(tokens) - 1 if last_block_again else len(tokens)
        keep = min(_common_prefix(self._scored or [], tokens), limit) // B * B
        keep = self._swap_in_saved(tokens, keep, limit)
        if keep == 0:
            llm.reset()
        else:
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            llm.n_tokens = keep
        for i in range(keep, len(tokens), B):
            llm.eval(tokens[i:i + B])
        # what the KV cache holds in whole fixed blocks (a generation adds tokens past them)
        self._scored = list(tokens)

    def _swap_in_saved(self, tokens: list[int], keep: int, limit: int) -> int:
        """Keep the live cache for later if this prompt would discard SET_ASIDE_BLOCKS or more of its
        blocks, and copy a saved cache back if it shares more whole blocks with ``tokens`` than the
        live one (``keep``). Returns how many of ``tokens`` are now in the cache, in whole blocks."""
        import ctypes

        import llama_cpp

        B = SCORE_BLOCK
        live = self._scored or []
        shared = [min(_common_prefix(saved, tokens), limit) // B * B for saved, _ in self._saved]
        best = int(np.argmax(shared)) if shared else -1
        swap = best >= 0 and shared[best] > keep
        llm, ctx = self._llm, self._llm._ctx.ctx
        if len(live) // B * B - keep >= SET_ASIDE_BLOCKS * B or (swap and len(live) >= B):
            llm._ctx.kv_cache_seq_rm(-1, len(live), -1)  # the cells of a generation's answer go
            size = llama_cpp.llama_state_seq_get_size(ctx, 0)
            buf = (ctypes.c_uint8 * size)()
            n = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
            entry = (live, ctypes.string_at(buf, n))
        else:
            entry = None
        if swap:
            saved_tokens, state = self._saved.pop(best)
            llm._ctx.kv_cache_clear()
            if llama_cpp.llama_state_seq_set_data(ctx, (ctypes.c_uint8 * len(state)).from_buffer_copy(state),
                                                  len(state), 0) != len(state):
                raise RuntimeError("llama.cpp refused a saved KV cache")
            llm.n_tokens = len(saved_tokens)
            llm.input_ids[:len(saved_tokens)] = saved_tokens
            self._scored, keep = saved_tokens, shared[best]
        if entry is not None:
            self._saved = (self._saved + [entry])[-SAVED_PREFIXES:]
        return keep

    async def first_token_logprobs_many(self, conversations, *, seed: int, top_logprobs: int) -> list[TopLogprobs]:
        """All prompts in one go on this thread: no other call can take the KV cache in between, so
        a prefix they share (a persona's system prompt) is evaluated once."""
        await asyncio.sleep(0)
        return [self._first_token_sync(m, top_logprobs) for m in conversations]

    async def first_token_logprobs(self, messages: list[Message], *, seed: int, top_logprobs: int) -> TopLogprobs:
        """Top-k first answer tokens at temperature 0 (``seed`` is unused: nothing is sampled)."""
        if self.in_thread:
            return await asyncio.to_thread(self._first_token_sync, messages, top_logprobs)
        await asyncio.sleep(0)
        return self._first_token_sync(messages, top_logprobs)
