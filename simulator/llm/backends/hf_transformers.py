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
shapes of that module, and a personasim adapter's base fingerprint (`base_fingerprint`) must
match; otherwise LLMConfigError names the adapter file. ``axis`` (a file from
`simulator.steering.save_axis`) with ``cap`` installs activation capping on that layer.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from simulator.llm.backends.base import Backend, merge_tokens
from simulator.llm.cache import content_tag
from simulator.llm.errors import LLMConfigError
from simulator.llm.types import Message, RawCompletion, TopLogprobs


ADAPTER_META = "personasim_adapter.json"  #: beside a PEFT adapter: the base model it was trained on


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


def load_causal_lm(path: str | Path):
    """(tokenizer, model) from a local folder or a .gguf file, float32, on the CPU, nothing downloaded.

    A GGUF is dequantised by transformers into plain float tensors; the quantisation marker it leaves
    on the model would stop a Trainer, so it is cleared (the weights really are float now).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    folder, extra = (path.parent, {"gguf_file": path.name}) if path.suffix == ".gguf" else (path, {})
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, **extra)
    lm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32, **extra)
    if extra:
        lm.hf_quantizer = None
        lm.is_quantized = False
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
    return tok, lm


def base_fingerprint(lm) -> dict:
    """What identifies a base model for an adapter: its architecture sizes and a checksum of its
    token embeddings (the same weights give the same sum, whether read from GGUF or a folder)."""
    import torch

    cfg = lm.config
    emb = lm.get_input_embeddings().weight
    with torch.no_grad():
        checksum = float(emb[: min(4096, emb.shape[0])].double().abs().sum())
    keys = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "vocab_size")
    return {**{k: getattr(cfg, k, None) for k in keys}, "embedding_checksum": round(checksum, 1)}


def fingerprint_mismatch(recorded: dict, lm) -> str | None:
    """None when ``lm`` has the ``recorded`` `base_fingerprint`; else the first field that differs,
    as "FIELD THERE there, HERE in the model loaded"."""
    here = base_fingerprint(lm)
    diff = sorted(k for k in recorded if recorded[k] != here.get(k))
    return None if not diff else f"{diff[0]} {recorded[diff[0]]} there, {here.get(diff[0])} in the model loaded"


def adapter_folder(path: str | Path) -> Path:
    """The PEFT adapter folder at ``path``: the folder itself, or its ``adapter/`` (a training output)."""
    path = Path(path)
    for folder in (path, path / "adapter"):
        if (folder / "adapter_config.json").is_file():
            return folder
    raise LLMConfigError(f"adapter {path}: no adapter_config.json there or in {path / 'adapter'}; "
                         "give a PEFT LoRA folder or a `personasim train consistency` output")


def adapter_name(folder: Path) -> str:
    return folder.parent.name if folder.name == "adapter" else folder.name


def check_adapter(folder: Path, lm) -> None:
    """LLMConfigError (naming the file) unless the adapter at ``folder`` fits the base model ``lm``."""
    cfg_file, weights = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    try:
        cfg = json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise LLMConfigError(f"{cfg_file}: not JSON ({exc})") from None
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise LLMConfigError(f"{cfg_file}: peft_type is {cfg.get('peft_type')!r}, not 'LORA'")
    meta = folder / ADAPTER_META
    if meta.is_file():
        mismatch = fingerprint_mismatch(json.loads(meta.read_text()).get("base_fingerprint", {}), lm)
        if mismatch:
            raise LLMConfigError(f"{meta}: adapter trained on another base model ({mismatch})")
    if not weights.is_file():
        raise LLMConfigError(f"{weights}: missing (the adapter's weights)")
    from safetensors import safe_open

    modules = dict(lm.named_modules())
    with safe_open(str(weights), framework="pt") as fh:
        for key in fh.keys():
            if ".lora_A." not in key and ".lora_B." not in key:
                continue
            name = key.split(".lora_")[0].removeprefix("base_model.model.")
            module = modules.get(name)
            if module is None or not hasattr(module, "in_features"):
                raise LLMConfigError(f"{weights}: tensor {key} is for module {name!r}, which the base model "
                                     "does not have (an adapter for another base model)")
            shape = tuple(fh.get_slice(key).get_shape())
            want = shape[1] if ".lora_A." in key else shape[0]
            have = module.in_features if ".lora_A." in key else module.out_features
            if want != have:
                raise LLMConfigError(f"{weights}: tensor {key} has shape {list(shape)}, but {name} of the base "
                                     f"model has {have} {'inputs' if '.lora_A.' in key else 'outputs'} "
                                     "(an adapter for another base model)")


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
