"""`transformers`: a local Hugging Face causal LM, for weights already on disk.

Loads a model folder, or a GGUF file (dequantised by transformers + gguf),
with ``local_files_only=True``: nothing is downloaded. A JSON schema is
enforced token by token, as llama.cpp's grammar does for `embedded`: at each
step lm-format-enforcer's `TokenEnforcer` lists the tokens that keep the text
a prefix of a valid answer (`prefix_allowed_tokens_fn`). Its own transformers
integration does not import under transformers 5, so the tokenizer table it
needs is built here (`_enforcer_data`). A string with a ``pattern`` is
enforced by the pattern alone (the enforcer refuses a pattern with a length
bound; ours bound the length themselves); the schema also goes into the
prompt, and LLMClient validates every answer against the full schema.
About 16 tok/s for SmolLM2-135M on 2 cores; prefer `embedded` for speed.
`first_token_logprobs` is one forward pass over the templated prompt:
log_softmax of the last position's logits, top-k; 0.7-2.4 s for a 285-token
prompt on the 2 shared cores here (loading the GGUF: 20-24 s). Its dequantised
weights give slightly different numbers from `embedded` (P(yes) 0.159 vs 0.168
on one prompt).

``adapter`` loads a PEFT LoRA adapter (`simulator.training` writes one) on the base and merges
it into the weights, so the tuned model generates at the base model's speed. The adapter is
checked against the base first: every LoRA tensor must name a module of this model with the
shapes of that module, and a personasim adapter's base fingerprint (`hf_weights.base_fingerprint`) must
match; otherwise LLMConfigError names the adapter file. ``axis`` (a file from
`simulator.steering.save_axis`) with ``cap`` installs activation capping on that layer.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from simulator.llm.backends.base import Backend, merge_tokens
from simulator.llm.backends.hf_weights import adapter_folder, adapter_name, check_adapter, load_causal_lm
from simulator.llm.cache import content_tag
from simulator.llm.errors import LLMConfigError
from simulator.llm.types import Message, RawCompletion, TopLogprobs


def _enforceable(schema):
    """``schema`` as lm-format-enforcer can enforce it: a string with a ``pattern`` loses its
    minLength / maxLength (the enforcer refuses both together; our patterns bound the length)."""
    if isinstance(schema, dict):
        out = {k: _enforceable(v) for k, v in schema.items()}
        if "pattern" in out:
            out.pop("minLength", None)
            out.pop("maxLength", None)
        return out
    if isinstance(schema, list):
        return [_enforceable(v) for v in schema]
    return schema


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        adapter: str | Path | None = None,
        axis: str | Path | None = None,
        cap: float | None = None,
    ):
        if model is None:
            from personas.infra.assets import AssetMissingError, smollm2_gguf

            try:
                model = smollm2_gguf()
            except AssetMissingError as exc:
                raise LLMConfigError(str(exc)) from None
        path = Path(model)
        if not path.exists():
            raise LLMConfigError(f"model {path} does not exist: give a local model folder or a .gguf file")
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError:
            raise LLMConfigError("backend 'transformers' needs torch and transformers installed") from None
        if (axis is None) != (cap is None):
            raise LLMConfigError("activation capping needs both 'axis' (a persona-axis file) and 'cap'")
        self.model = path.stem if path.suffix == ".gguf" else path.name
        self._torch = torch
        self._tok, self._lm = load_causal_lm(path)
        if adapter is not None:
            adapter = adapter_folder(adapter)
            check_adapter(adapter, self._lm)
            from peft import PeftModel

            self._lm = PeftModel.from_pretrained(self._lm, str(adapter), is_trainable=False).merge_and_unload()
            # another model: no cache hits from the base, nor from another adapter in a folder of the same name
            self.model = f"{self.model}+{adapter_name(adapter)}@{content_tag(adapter / 'adapter_model.safetensors')}"
        self._cap_hook = None
        self._enforcer_table = None  # built on the first schema (`_enforcer_data`)
        if axis is not None:
            from simulator.steering import install_cap, load_axis

            persona_axis = load_axis(axis)
            persona_axis.check_model(self._lm, axis)
            self._cap_hook = install_cap(self._lm, persona_axis, float(cap))
            self.model = f"{self.model}+cap{float(cap):g}@L{persona_axis.layer}:{content_tag(axis)}"
        self._lm.eval()
        self._lock = threading.Lock()

    def _enforcer_data(self):
        """lm-format-enforcer's table of the vocabulary (built once, about a second): each regular token,
        its text as it reads after another token, and whether it starts a word."""
        if self._enforcer_table is None:
            from lmformatenforcer import TokenEnforcerTokenizerData

            tok = self._tok
            zero, special = tok.encode("0")[-1], set(tok.all_special_ids)
            regular = []
            for i in range(len(tok)):
                if i not in special:
                    after = tok.decode([zero, i])[1:]  # after "0": a leading space survives decoding
                    regular.append((i, after, len(after) > len(tok.decode([i]))))
            self._enforcer_table = TokenEnforcerTokenizerData(
                regular, lambda ids: tok.decode(ids).rstrip("\ufffd"), tok.eos_token_id, False, len(tok))
        return self._enforcer_table

    def _allowed_tokens(self, schema: dict):
        """`generate`'s ``prefix_allowed_tokens_fn`` for answers that match ``schema``."""
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        enforcer = TokenEnforcer(self._enforcer_data(), JsonSchemaParser(_enforceable(schema)))
        eos = self._tok.eos_token_id

        def allowed(batch_id, sent) -> list[int]:
            tokens = enforcer.get_allowed_tokens(sent.tolist()).allowed_tokens
            # end-of-text is allowed only once the object is complete: stop there, not after trailing newlines
            return [eos] if eos in tokens else tokens

        return allowed

    def _complete_sync(self, messages, temperature, max_tokens, seed, json_schema) -> RawCompletion:
        messages = list(messages)
        constrained = {}
        if json_schema is not None:
            messages.append(
                {"role": "system", "content": f"Reply with only a JSON object matching: {json.dumps(json_schema)}"}
            )
            constrained["prefix_allowed_tokens_fn"] = self._allowed_tokens(json_schema)
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
                **constrained,
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
