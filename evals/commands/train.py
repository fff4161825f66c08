"""`personasim train ...`: tune the simulated user for consistency (simulator/training.py).

    personasim train consistency --personas P --out DIR     best-of-N pairs from the training personas -> DPO LoRA
    personasim train axis --personas P --out axis.json       the persona axis for activation capping
    personasim train export-gguf --adapter DIR               the adapter for llama.cpp (embedded backend)

Bad input (an empty or one-sided pair set, a split with no held-out persona, an adapter for
another base model) is one `error:` line and exit code 2, checked before any model is loaded.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


def _split(personas: Path, held_out: int, held_out_ids: Optional[str], seed: int):
    from personas.card import read_personas
    from simulator.training import SplitError, split_personas

    cards = read_personas(personas)
    ids = [i.strip() for i in held_out_ids.split(",")] if held_out_ids is not None else None
    try:
        return split_personas(cards, held_out=ids if ids is not None else held_out, seed=seed)
    except SplitError as exc:
        from evals.commands.errors import fail

        fail(f"{personas}: {exc}")


@app.command("consistency", help="Best-of-N pairs from the training personas, then DPO with a LoRA adapter (CPU).")
def consistency(
    personas: Path = typer.Option(..., "--personas", help="personas.jsonl; split into training and held-out personas."),
    out: Path = typer.Option(..., "--out", help="Output folder (adapter, pairs, training.json, checkpoints)."),
    held_out: int = typer.Option(1, "--held-out", help="Personas held out of training (drawn with --seed)."),
    held_out_ids: Optional[str] = typer.Option(None, "--held-out-ids", help="Comma-separated persona ids to hold out."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Train on this TRL pair file instead of collecting."),
    users_per_persona: int = typer.Option(2, "--users-per-persona", min=1, help="Simulated users per training persona."),
    turns: int = typer.Option(3, "--turns", min=1),
    best_of: int = typer.Option(4, "--best-of", min=2, help="Candidates per turn; pairs are (best, each lower)."),
    reward: str = typer.Option("structured", "--reward", help="What the pairs are ranked by: 'structured' (the "
                               "structured judge's rules + alignment + faithfulness), 'ranking' (the ratings' "
                               "order against the card + alignment + faithfulness) or 'rules' (the structured "
                               "judge's rules + alignment, faithfulness held out); see "
                               "simulator.consistency.reward_of."),
    catalog: str = typer.Option("ml-100k", "--catalog", help="'ml-100k' or a JSONL item file."),
    seed: int = typer.Option(0, "--seed"),
    epochs: float = typer.Option(1.0, "--epochs"),
    max_steps: int = typer.Option(-1, "--max-steps", help="Stop after N optimiser steps (-1: the epochs)."),
    batch_size: int = typer.Option(2, "--batch-size", min=1),
    lr: float = typer.Option(2e-4, "--lr"),
    beta: float = typer.Option(0.1, "--beta"),
    lora_r: int = typer.Option(8, "--lora-r", min=1),
    save_steps: int = typer.Option(10, "--save-steps", min=1),
    base_model: Optional[Path] = typer.Option(None, "--base-model", help="A .gguf or model folder (default: packaged SmolLM2)."),
    gguf: bool = typer.Option(True, "--gguf/--no-gguf", help="Also write OUT/adapter.gguf for the embedded backend."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for llama.cpp and torch "
                                          "(default: all cores; 1 is faster on a busy machine)."),
) -> None:
    from pydantic import ValidationError

    from evals.commands.errors import fail, option_error
    from simulator.consistency import REWARDS
    from simulator.preferences import write_pair_set
    from simulator.training import PAIRS_FILE, RESHOW_FROM, TRAINING_FILE, TrainSettings, read_pair_set, train_dpo

    try:
        settings = TrainSettings(base_model=str(base_model) if base_model else None, seed=seed, lora_r=lora_r,
                                 lora_alpha=2 * lora_r, beta=beta, learning_rate=lr, epochs=epochs,
                                 max_steps=max_steps, batch_size=batch_size, save_steps=save_steps, threads=threads)
    except ValidationError as exc:
        fail(option_error(exc))
    if base_model is not None and not base_model.exists():
        fail(f"--base-model {base_model}: no such file or folder")
    if reward not in REWARDS:
        fail(f"--reward {reward!r}: expected one of {', '.join(REWARDS)}")
    train_cards, held = _split(personas, held_out, held_out_ids, seed)
    split = {"personas_file": str(personas), "train_personas": [c.id for c in train_cards],
             "held_out_personas": [c.id for c in held]}
    if pairs is not None:
        read_pair_set(pairs)  # empty / one-sided / malformed: the line names the file
        source, collect = pairs, {"pairs_from": str(pairs)}
    else:
        source = out / PAIRS_FILE
        collect = {"users_per_persona": users_per_persona, "turns": turns, "best_of": best_of, "catalog": catalog,
                   "seed": seed, "reward": reward, "reshow_from": RESHOW_FROM}
        record = out / TRAINING_FILE
        try:
            old = json.loads(record.read_text()).get("collection") if record.is_file() else None
        except (ValueError, AttributeError):
            fail(f"{record}: not a training record (JSON object); use a new --out folder")
        if old is not None and not isinstance(old, dict):
            fail(f"{record}: field 'collection' is not an object; use a new --out folder")
        if old is not None and old != collect:
            changed = sorted(k for k in collect.keys() | old.keys() if old.get(k) != collect.get(k))
            fail(f"{record}: its pair set was collected with other settings ({', '.join(changed)}); "
                 "use a new --out folder")
        if source.is_file():
            typer.echo(f"reusing the pair set {source}", err=True)
        else:
            rows = _collect(train_cards, users_per_persona, turns, best_of, catalog, seed, out, threads, reward)
            write_pair_set(rows, source)
            typer.echo(f"collected {len(rows)} pairs from {len(train_cards)} training personas -> {source}", err=True)
        read_pair_set(source)
    typer.echo(f"training DPO (LoRA r={lora_r}) on {source}; held out: {', '.join(split['held_out_personas'])}", err=True)
    result = train_dpo(source, out, settings, extra={"split": split, "collection": collect})
    gguf_path = None
    if gguf:
        gguf_path = _export(result.adapter, base_model, out / "adapter.gguf")
    typer.echo(json.dumps({"adapter": str(result.adapter), "gguf": gguf_path and str(gguf_path), "steps": result.steps,
                           "pairs": result.pairs, "seconds": result.seconds, "final_loss": result.final_loss,
                           "resumed_from": result.resumed_from}))


def _collect(cards, users_per_persona: int, turns: int, best_of: int, catalog: str, seed: int, out: Path,
             threads: Optional[int], reward: str) -> list:
    from evals.commands.simulate import load_catalog
    from simulator import PopularityRecommender, sample_users
    from simulator.llm import create_client
    from simulator.training import collect_pairs

    items, pop = load_catalog(catalog)
    users = sample_users(cards, users_per_persona * len(cards), seed)

    async def go():
        llm = create_client("embedded", cache_dir=out / "llm_cache", concurrency=1,  # a rerun replays from the cache
                            n_threads=threads)
        try:
            rows, _ = await collect_pairs(users, lambda u: PopularityRecommender(items, pop), llm=llm, turns=turns,
                                          best_of=best_of, seed=seed, reward=reward)
        finally:
            await llm.aclose()
        return rows

    return asyncio.run(go())


def _export(adapter: Path, base_model: Optional[Path], out: Path) -> Path:
    from simulator.lora_gguf import convert

    if base_model is None:
        from personas.infra.assets import smollm2_gguf

        base_model = smollm2_gguf()
    if base_model.suffix != ".gguf":
        raise ValueError(f"--base-model {base_model}: a GGUF adapter needs a .gguf base; use --no-gguf")
    return convert(adapter, base_model, out)


@app.command("export-gguf", help="Convert a PEFT LoRA adapter to a llama.cpp GGUF adapter (embedded backend).")
def export_gguf(
    adapter: Path = typer.Option(..., "--adapter", help="A PEFT LoRA folder or a `train consistency` output."),
    base_model: Optional[Path] = typer.Option(None, "--base-model", help="The base .gguf (default: packaged SmolLM2)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Default: ADAPTER/adapter.gguf (or beside the folder)."),
) -> None:
    from simulator.llm.backends.hf_weights import adapter_folder

    folder = adapter_folder(adapter)
    target = out or (folder.parent / "adapter.gguf" if folder.name == "adapter" else folder / "adapter.gguf")
    typer.echo(str(_export(folder, base_model, target)))


@app.command("axis", help="Compute the persona axis for activation capping (transformers backend).")
def axis(
    personas: Path = typer.Option(..., "--personas", help="personas.jsonl (use the training personas)."),
    out: Path = typer.Option(..., "--out", help="The axis file (JSON)."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Decoder layer (default: the middle one)."),
    base_model: Optional[Path] = typer.Option(None, "--base-model", help="A .gguf or model folder (default: SmolLM2)."),
) -> None:
    from personas.card import read_personas
    from simulator.llm.backends.hf_weights import load_causal_lm
    from simulator.steering import persona_axis, save_axis

    cards = read_personas(personas)
    if base_model is None:
        from personas.infra.assets import smollm2_gguf

        base_model = smollm2_gguf()
    tok, lm = load_causal_lm(base_model)
    ax = persona_axis(lm, tok, cards, layer)
    save_axis(ax, out)
    typer.echo(json.dumps({"axis": str(out), "layer": ax.layer, "default_proj": round(ax.default_proj, 3),
                           "role_proj": round(ax.role_proj, 3)}))
