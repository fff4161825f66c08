"""`transformers`: a local Hugging Face causal LM, for weights already on disk.

Loads a model folder, or a GGUF file (dequantised by transformers + gguf),
with ``local_files_only=True``: nothing is downloaded. There is no grammar
here, so the schema goes into the prompt and LLMClient validates and repairs.
About 16 tok/s for SmolLM2-135M on 2 cores; prefer `embedded` for speed.
`first_token_logprobs` is one forward pass over the templated prompt:
log_softmax of the last position's logits, top-k; 0.7-2.4 s for a 285-token
prompt on the 2 shared cores here (loading the GGUF: 20-24 s). Its dequantised
weights give slightly different numbers from `embedded` (P(yes) 0.159 vs 0.168
on one prompt).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from simulator.llm.backends.base import Backend, merge_tokens
from simulator.llm.errors import LLMConfigError
from simulator.llm.types import Message, RawCompletion, TopLogprobs


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, model: str | Path | None = None):
        if model is None:
            from personas.assets import AssetMissingError, smollm2_gguf

            try:
                model = smollm2_gguf()
            except AssetMissingError as exc:
                raise LLMConfigError(str(exc)) from None
        path = Path(model)
        if not path.exists():
            raise LLMConfigError(f"model {path} does not exist: give a local model folder or a .gguf file")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise LLMConfigError("backend 'transformers' needs torch and transformers installed") from None
        folder, extra = (path.parent, {"gguf_file": path.name}) if path.suffix == ".gguf" else (path, {})
        self.model = path.stem if path.suffix == ".gguf" else path.name
        self._torch = torch
        self._tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, **extra)
        self._lm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, **extra)
        self._lm.eval()
        self._lock = threading.Lock()

    def _complete_sync(self, messages, temperature, max_tokens, seed, json_schema) -> RawCompletion:
        messages = list(messages)
        if json_schema is not None:
            messages.append(
                {"role": "system", "content": f"Reply with only a JSON object matching: {json.dumps(json_schema)}"}
            )
        torch = self._torch
        ids = self._tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with self._lock, torch.no_grad():
            torch.manual_seed(seed)  # sampling draws from the global generator
            out = self._lm.generate(
                **ids,
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                pad_token_id=self._tok.eos_token_id,
            )
        n_in = ids["input_ids"].shape[1]
        new = out[0, n_in:]
        return RawCompletion(
            text=self._tok.decode(new, skip_special_tokens=True),
            tokens_in=int(n_in),
            tokens_out=int(new.shape[0]),
            finish_reason="length" if new.shape[0] >= max_tokens else "stop",
        )

    async def complete(self, messages: list[Message], *, temperature, max_tokens, seed, json_schema) -> RawCompletion:
        return await asyncio.to_thread(self._complete_sync, messages, temperature, max_tokens, seed, json_schema)

    def _first_token_sync(self, messages, top_logprobs: int) -> TopLogprobs:
        torch = self._torch
        ids = self._tok.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with self._lock, torch.no_grad():
            logits = self._lm(**ids).logits[0, -1]  # (vocab,) scores of the first answer token
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        top = torch.topk(logprobs, k=min(top_logprobs, logprobs.shape[0]))
        pieces = ((self._tok.decode([i]), lp) for lp, i in zip(top.values.tolist(), top.indices.tolist()))
        return merge_tokens(pieces, tokens_in=int(ids["input_ids"].shape[1]))

    async def first_token_logprobs(self, messages: list[Message], *, seed: int, top_logprobs: int) -> TopLogprobs:
        """Top-k first answer tokens (``seed`` is unused: nothing is sampled)."""
        return await asyncio.to_thread(self._first_token_sync, messages, top_logprobs)
