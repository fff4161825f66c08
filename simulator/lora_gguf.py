"""A PEFT LoRA adapter as a llama.cpp GGUF LoRA adapter, so the embedded backend can serve it.

llama.cpp's adapter format: a GGUF whose ``general.type`` is "adapter", ``adapter.type`` is
"lora" and ``adapter.lora.alpha`` the LoRA alpha (llama.cpp scales by alpha / rank, as PEFT
does); per adapted weight two tensors named after the base model's GGUF tensor,
``<name>.lora_a`` (rank x in_features) and ``<name>.lora_b`` (out_features x rank).

Llama-family GGUFs store q_proj and k_proj with their rows permuted for llama.cpp's rotary
layout (transformers undoes it when it loads a GGUF), so lora_b of those two is permuted the
same way: W = B A, and permuting W's rows is permuting B's rows. Written with the ``gguf``
package's GGUFWriter; checked against the base GGUF's tensor shapes first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from personas.infra.files import write_whole

#: HF Llama module suffix -> GGUF tensor name (per block).
LLAMA_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


class AdapterConversionError(ValueError):
    """The adapter cannot become a GGUF adapter for this base; the message names the file."""


def _field(reader, key: str):
    f = reader.fields.get(key)
    if f is None:
        return None
    part = f.parts[f.data[0]]
    return bytes(part).decode() if f.types and f.types[0].name == "STRING" else part.tolist()[0]


def _permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """The row permutation llama.cpp's converter applies to Llama q/k weights."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(hf_module: str) -> str | None:
    """'model.layers.3.self_attn.q_proj' -> 'blk.3.attn_q.weight' (None when not mapped)."""
    parts = hf_module.split(".")
    if len(parts) < 5 or parts[:2] != ["model", "layers"] or not parts[2].isdigit():
        return None
    short = LLAMA_NAMES.get(".".join(parts[3:]))
    return None if short is None else f"blk.{parts[2]}.{short}.weight"


def convert(adapter_dir: str | Path, base_gguf: str | Path, out: str | Path) -> Path:
    """Write the GGUF adapter for the PEFT LoRA in ``adapter_dir`` (checked against ``base_gguf``)."""
    import gguf
    from safetensors.numpy import load_file

    adapter_dir, base_gguf, out = Path(adapter_dir), Path(base_gguf), Path(out)
    cfg_file, weights_file = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not cfg_file.is_file() or not weights_file.is_file():
        raise AdapterConversionError(f"{adapter_dir}: not a PEFT adapter folder (needs adapter_config.json and "
                                     "adapter_model.safetensors)")
    cfg = json.loads(cfg_file.read_text())
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise AdapterConversionError(f"{cfg_file}: peft_type is {cfg.get('peft_type')!r}, not 'LORA'")
    if cfg.get("use_rslora") or cfg.get("rank_pattern") or cfg.get("alpha_pattern") or cfg.get("use_dora"):
        raise AdapterConversionError(f"{cfg_file}: rsLoRA, DoRA and per-module ranks are not supported")
    if not base_gguf.is_file():
        raise AdapterConversionError(f"{base_gguf}: no such base GGUF file")
    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise AdapterConversionError(f"{base_gguf}: architecture {arch!r}; only 'llama' GGUFs are supported")
    n_head, n_kv = _field(reader, "llama.attention.head_count"), _field(reader, "llama.attention.head_count_kv")
    base_shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}  # [in, out] (ggml order)

    weights = load_file(str(weights_file))
    tensors: dict[str, np.ndarray] = {}
    for key, a in sorted(weights.items()):
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        b = weights.get(key.replace(".lora_A.", ".lora_B."))
        name = gguf_name(module)
        if b is None:
            raise AdapterConversionError(f"{weights_file}: {key} has no matching lora_B tensor")
        if name is None:
            raise AdapterConversionError(f"{weights_file}: module {module!r} has no llama.cpp counterpart")
        if name not in base_shapes:
            raise AdapterConversionError(f"{weights_file}: {module} maps to {name}, which {base_gguf.name} does not "
                                         "have (an adapter for another base model)")
        n_in, n_out = base_shapes[name][:2]
        if a.shape[1] != n_in or b.shape[0] != n_out:
            raise AdapterConversionError(
                f"{weights_file}: {module} is {a.shape[1]} -> {b.shape[0]} in the adapter but {n_in} -> {n_out} in "
                f"{base_gguf.name} (an adapter for another base model)")
        b = b.astype(np.float32)
        if name.endswith("attn_q.weight"):
            b = _permute_rows(b, n_head)
        elif name.endswith("attn_k.weight"):
            b = _permute_rows(b, n_kv)
        tensors[f"{name}.lora_a"] = np.ascontiguousarray(a.astype(np.float32))
        tensors[f"{name}.lora_b"] = np.ascontiguousarray(b)
    if not tensors:
        raise AdapterConversionError(f"{weights_file}: no LoRA tensors")

    out.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(str(tmp), arch="llama")
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg.get("lora_alpha", cfg.get("r", 8))))
        for name, arr in tensors.items():
            writer.add_tensor(name, arr)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return write_whole(out, write)
