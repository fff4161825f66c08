"""Tokens/s of the tuned simulator against the untuned one, through the backend that serves it.

Issue 12's target: the tuned model's tokens/s >= 0.85x the untuned model's.

- embedded (llama.cpp): base GGUF vs base + the GGUF LoRA adapter (llama.cpp applies the
  adapter at run time, unmerged, so it costs extra matrix products per layer);
- transformers: base vs base + the PEFT adapter (merged into the weights at load time).

Both arms generate the same prompts at temperature 0 with the cache off, interleaved
(base, tuned, base, tuned, ...) so a change in machine load hits both alike; tokens/s
is completion tokens over wall time. Speed does not depend on what the adapter learnt,
only on its shape, so without --adapter a one-step adapter of the default training
settings (rank 8 on q, k, v, o) is trained here first (a few seconds).

    .venv/bin/python benchmarks/adapter_speed.py [--adapter DIR] [--rounds 3] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from personas.infra.assets import smollm2_gguf
from simulator.llm import LLMClient, create_backend


SYSTEM = "You are Maya, a nurse who loves comedies and avoids horror. Answer in two short sentences."
TOPICS = ["a rainy Sunday", "a first date", "a long flight", "kids at home", "a bad week", "a heist"]
PAIR = {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Airplane or Scream tonight?"}],
        "chosen": [{"role": "assistant", "content": "Airplane, I need a laugh after my shift."}],
        "rejected": [{"role": "assistant", "content": "Scream, I love a good fright."}],
        "reward_chosen": 1.0, "reward_rejected": 0.0}


def one_step_adapter(tmp: Path) -> Path:
    """A `personasim train consistency`-shaped output: one DPO step on one pair, then its GGUF form."""
    from simulator.lora_gguf import convert
    from simulator.training import TrainSettings, train_dpo

    pairs = tmp / "pairs.jsonl"
    pairs.write_text(json.dumps(PAIR) + "\n")
    result = train_dpo(pairs, tmp / "tuned", TrainSettings(max_steps=1, batch_size=1, save_steps=1, max_length=256),
                       show_progress=False)
    convert(result.adapter, smollm2_gguf(), result.out / "adapter.gguf")
    return result.out


async def _generate(client: LLMClient, prompt: list[dict], max_tokens: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    done = await client.generate(prompt, temperature=0.0, max_tokens=max_tokens, seed=0)
    return done.tokens_out, time.perf_counter() - t0


def compare(base, tuned, rounds: int, max_tokens: int) -> dict:
    """Interleaved generations; (tokens/s base, tokens/s tuned)."""
    clients = {"base": LLMClient(base), "tuned": LLMClient(tuned)}
    prompts = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"A film for {t}?"}] for t in TOPICS]
    totals = {name: [0, 0.0] for name in clients}

    async def run() -> None:
        for name, c in clients.items():  # warm-up, not counted
            await _generate(c, prompts[0], 4)
        for r in range(rounds):
            for i, p in enumerate(prompts):
                order = ("base", "tuned") if (r + i) % 2 == 0 else ("tuned", "base")
                for name in order:
                    n, s = await _generate(clients[name], p, max_tokens)
                    totals[name][0] += n
                    totals[name][1] += s

    asyncio.run(run())
    return {name: {"tokens": n, "seconds": round(s, 2), "tokens_per_s": n / s} for name, (n, s) in totals.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--adapter", type=Path, help="a `personasim train consistency` output (with adapter.gguf)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=2, help="llama.cpp and torch threads")
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = a.adapter or one_step_adapter(Path(tmp))
        cpp = compare(create_backend("embedded", n_threads=a.threads),
                      create_backend("embedded", n_threads=a.threads, lora_path=adapter / "adapter.gguf"),
                      a.rounds, a.max_tokens)
        base_dir = Path(tmp) / "base"
        from simulator.llm.backends.hf_weights import load_causal_lm

        tok, lm = load_causal_lm(smollm2_gguf())  # the packaged GGUF as a transformers folder
        lm.save_pretrained(base_dir)
        tok.save_pretrained(base_dir)
        hf = compare(create_backend("transformers", model=str(base_dir)),
                     create_backend("transformers", model=str(base_dir), adapter=str(adapter)),
                     max(1, a.rounds // 3), a.max_tokens)
    for name, r in (("embedded (llama.cpp, LoRA applied at run time)", cpp),
                    ("transformers (LoRA merged at load)", hf)):
        ratio = r["tuned"]["tokens_per_s"] / r["base"]["tokens_per_s"]
        print(f"{name}: base {r['base']['tokens_per_s']:.1f} tok/s ({r['base']['tokens']} tokens), tuned "
              f"{r['tuned']['tokens_per_s']:.1f} tok/s ({r['tuned']['tokens']} tokens) -> ratio {ratio:.2f} "
              f"(target >= 0.85)")


if __name__ == "__main__":
    main()
