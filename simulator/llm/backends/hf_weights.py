"""Hugging Face weights on disk: load a causal LM, fingerprint a base model, check a LoRA adapter against it.

No backend here: `hf_transformers` (the backend), `simulator.steering` (the persona axis, which records
and checks the base fingerprint) and `simulator.training` (which writes adapters) all build on it, so the
backend and steering import it rather than each other.
"""

from __future__ import annotations

import json
from pathlib import Path

from simulator.llm.errors import LLMConfigError

ADAPTER_META = "personasim_adapter.json"  #: beside a PEFT adapter: the base model it was trained on


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
