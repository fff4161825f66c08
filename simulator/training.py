"""Train the simulated user for consistency: DPO with a LoRA adapter on its own best-of-N pairs.

    train, held_out = split_personas(cards, held_out=1, seed=0)
    pairs, _ = await collect_pairs(users_of(train), make_recommender, llm=client, turns=3, best_of=4, seed=0)
    write_pair_set(pairs, out / "pairs.jsonl")            # simulator.preferences
    result = train_dpo(out / "pairs.jsonl", out, TrainSettings(), split=...)

Pairs are the best-of-N session's (kept candidate, each strictly lower-scored candidate):
chosen has the higher reward, ties are never pairs (`simulator.session.preference_pairs`),
and `read_pair_set` drops any row that is not strictly ordered. Training is TRL's
``DPOTrainer`` with a PEFT LoRA adapter on the base model loaded through transformers
(the packaged SmolLM2-135M GGUF, dequantised), on the CPU. The reference model is the
base itself (the adapter switched off), so only one copy of the weights is held.

An output folder holds everything a rerun or a reader needs:

    OUT/pairs.jsonl          the pair set trained on (a copy; TRL format)
    OUT/training.json        settings, seeds, persona split, base fingerprint, versions, results
    OUT/checkpoints/         TRL checkpoints (a rerun resumes from the latest one)
    OUT/adapter/             the PEFT adapter + personasim_adapter.json (its base fingerprint)
    OUT/adapter.gguf         the same adapter for llama.cpp (`simulator.lora_gguf`), when asked

A rerun with the same settings and pair set resumes; with other settings it is refused
(the folder would mix two runs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personas.card import PersonaCard, file_bytes, jsonl_rows
from personas.infra.files import write_whole

log = logging.getLogger(__name__)

TRAINING_FILE = "training.json"
PAIRS_FILE = "pairs.jsonl"
ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
GGUF_FILE = "adapter.gguf"
#: Pair collection re-shows one earlier rated item from turn 1 on (`SessionSettings.reshow_from`), so the
#: line-to-line rule L3 (one item rated 3+ points apart) can fire and rank candidates, as it does in a campaign.
RESHOW_FROM = 1


class PairSetError(ValueError):
    """A pair set that cannot be trained on (empty, one-sided, malformed); the message names the file."""


class SplitError(ValueError):
    """A persona split with no training persona or no held-out persona."""


class TrainSettings(BaseModel):
    """Everything that shapes a DPO run (hashed into training.json; a resume must match it)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str | None = Field(None, description="a .gguf file or a model folder; None = packaged SmolLM2-135M")
    seed: int = Field(0, description="seeds Python, NumPy, torch and the Trainer's data order")
    lora_r: int = Field(8, ge=1, description="LoRA rank")
    lora_alpha: int = Field(16, ge=1, description="LoRA scale numerator (scale = alpha / r)")
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    beta: float = Field(0.1, gt=0, description="DPO temperature")
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimiser steps (-1: run the epochs)")
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=32, description="prompt + completion tokens (longer rows are cut at the end)")
    save_steps: int = Field(10, ge=1, description="a checkpoint every this many steps")
    threads: int | None = Field(None, ge=1, description="torch threads (None: torch's default)")

    def key(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class TrainResult(BaseModel):
    out: Path
    adapter: Path
    steps: int
    seconds: float
    pairs: int
    tokens: int
    resumed_from: str | None
    final_loss: float | None
    reward_accuracy: float | None


# ---- the persona split -------------------------------------------------------------------------


def split_personas(cards: list[PersonaCard], *, held_out: int | list[str] = 1,
                   seed: int = 0) -> tuple[list[PersonaCard], list[PersonaCard]]:
    """(training personas, held-out personas). ``held_out`` is a count (drawn with ``seed``) or ids.

    SplitError when either side would be empty, or an id is unknown.
    """
    ids = [c.id for c in cards]
    if isinstance(held_out, int):
        if held_out < 1:
            raise SplitError(f"held_out={held_out}: the split must hold out at least one persona")
        if held_out >= len(cards):
            raise SplitError(f"held_out={held_out} of {len(cards)} personas leaves no training persona")
        picked = set(random.Random(seed).sample(ids, held_out))
    else:
        unknown = [i for i in held_out if i not in ids]
        if unknown:
            raise SplitError(f"held-out persona {unknown[0]!r} is not in the persona file (ids: {', '.join(ids)})")
        picked = set(held_out)
        if not picked:
            raise SplitError("the persona split leaves no held-out persona")
        if len(picked) == len(cards):
            raise SplitError("the persona split holds out every persona: no training persona is left")
    return [c for c in cards if c.id not in picked], [c for c in cards if c.id in picked]


# ---- pairs -------------------------------------------------------------------------------------


async def collect_pairs(users, make_recommender, *, llm, turns: int, best_of: int, seed: int,
                        show_progress: bool = True, reward: str = "structured",
                        reshow_from: int | None = RESHOW_FROM) -> tuple[list[dict[str, Any]], list]:
    """Best-of-N sessions for ``users``; (TRL rows of every scored pair, transcripts).

    The reward is `simulator.consistency.reward_of` of kind ``reward`` ("structured": the judge's
    rules, "ranking": the ratings' order against the card, or "rules": the judge's rules without
    faithfulness); Q&A is not asked (it is an evaluation, never a reward). From turn ``reshow_from``
    on, an item rated earlier is shown again (RESHOW_FROM).
    """
    from simulator.batch import run_sessions
    from simulator.preferences import preference_row
    from simulator.session import SessionSettings

    if best_of < 2:
        raise ValueError(f"best_of={best_of}: pairs need at least 2 candidates per turn")
    transcripts = await run_sessions(users, make_recommender, turns=turns, seed=seed, llm=llm,
                                     settings=SessionSettings(best_of=best_of, qa_turns=[], reward=reward,
                                                              reshow_from=reshow_from),
                                     in_flight=4,
                                     show_progress=show_progress)
    rows = [preference_row(p, "conversational", {"persona_id": tr.persona_id}) for tr in transcripts for p in tr.pairs]
    return rows, transcripts


def _text(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return "\n".join(str(m["content"]) for m in value)
    return None


def read_pair_set(path: str | Path, data: bytes | None = None) -> tuple[list[dict[str, Any]], int]:
    """(usable rows, rows dropped as one-sided) of a TRL pair file.

    A row needs ``prompt``, ``chosen`` and ``rejected`` (strings, or chat message lists). It is
    one-sided, and dropped, when chosen and rejected are the same text or its rewards (when
    given) do not rank chosen strictly above rejected. PairSetError (naming the file and line)
    on a malformed row, an empty file, or a file with no usable row. ``data``: the file's bytes, if read already.
    """
    path = Path(path)
    rows, dropped = [], 0
    for lineno, row in jsonl_rows(path, PairSetError, "pair", data):
        if not isinstance(row, dict):
            raise PairSetError(f"{path}:{lineno}: a pair is a JSON object, got {type(row).__name__}")
        for key in ("prompt", "chosen", "rejected"):
            if _text(row.get(key)) is None:
                raise PairSetError(f"{path}:{lineno}: field {key!r} is missing or not text / chat messages")
        rc, rr = row.get("reward_chosen"), row.get("reward_rejected")
        if _text(row["chosen"]) == _text(row["rejected"]) or (rc is not None and rr is not None and not rc > rr):
            dropped += 1
            continue
        rows.append(row)
    if not rows:
        what = "is empty" if dropped == 0 else f"has only one-sided pairs ({dropped} rows whose chosen is not " \
                                               "strictly better than rejected)"
        raise PairSetError(f"{path}: the pair set {what}: nothing to train on")
    return rows, dropped


# ---- training ----------------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _base_path(settings: TrainSettings) -> Path:
    if settings.base_model is not None:
        path = Path(settings.base_model)
        if not path.exists():
            raise FileNotFoundError(2, "base model does not exist", str(path))
        return path
    from personas.infra.assets import smollm2_gguf

    return smollm2_gguf()


def _latest_checkpoint(folder: Path) -> Path | None:
    ckpts = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)


def train_dpo(pairs_path: str | Path, out: str | Path, settings: TrainSettings | None = None, *,
              extra: dict[str, Any] | None = None, show_progress: bool = True, lm=None, tok=None) -> TrainResult:
    """Train a LoRA adapter with DPO on the pair file; write OUT (see the module docstring).

    ``extra`` (e.g. the persona split and the collection settings) is stored in training.json.
    ``lm``/``tok``: an already loaded base (it gets the adapter attached; pass a fresh one).
    Resumes from OUT/checkpoints when a previous run with the same settings and pairs stopped.
    """
    settings = settings or TrainSettings()
    out = Path(out)
    # read once: the rows trained on are the bytes hashed and copied
    pairs_bytes = file_bytes(pairs_path, PairSetError, "pair")
    rows, dropped = read_pair_set(pairs_path, pairs_bytes)  # bad pairs fail before anything is loaded
    pairs_sha = hashlib.sha256(pairs_bytes).hexdigest()[:16]
    record_path = out / TRAINING_FILE
    if record_path.is_file():
        old = json.loads(record_path.read_text())
        if old.get("settings_key") != settings.key() or old.get("pairs_sha256") != pairs_sha:
            raise ValueError(f"{record_path}: {out} holds a run with other settings or pairs; "
                             "use a new --out folder (or delete this one)")
    out.mkdir(parents=True, exist_ok=True)
    local_pairs = out / PAIRS_FILE
    if Path(pairs_path).resolve() != local_pairs.resolve():
        write_whole(local_pairs, pairs_bytes)

    import peft
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from simulator.llm.backends.hf_weights import ADAPTER_META, base_fingerprint, load_causal_lm

    if settings.threads:
        torch.set_num_threads(settings.threads)
    _seed_everything(settings.seed)
    base = _base_path(settings)
    if lm is None:
        tok, lm = load_causal_lm(base)
    fingerprint = base_fingerprint(lm)
    record = {
        "kind": "personasim-dpo", "version": 1, "settings": settings.model_dump(), "settings_key": settings.key(),
        "seed": settings.seed, "base_model": str(base), "base_fingerprint": fingerprint,
        "pairs": str(local_pairs), "pairs_sha256": pairs_sha, "n_pairs": len(rows), "n_dropped_one_sided": dropped,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                     "peft": peft.__version__},
        **(extra or {}),
    }
    write_whole(record_path, json.dumps(record, indent=2))

    data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    ckpt_dir = out / CHECKPOINT_DIR
    args = DPOConfig(
        output_dir=str(ckpt_dir), seed=settings.seed, data_seed=settings.seed, beta=settings.beta,
        learning_rate=settings.learning_rate, num_train_epochs=settings.epochs, max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.grad_accum,
        max_length=settings.max_length, save_steps=settings.save_steps, save_total_limit=2, logging_steps=1,
        report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=not show_progress,
        gradient_checkpointing=False,  # TRL's default recomputes activations: slower, and memory is no issue here
        bf16=False,  # TRL 1.x defaults to bf16 autocast; on a CPU without bf16 units that is ~10x slower than float32
    )
    lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, target_modules=settings.target_modules,
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=lm, args=args, train_dataset=data, processing_class=tok, peft_config=lora)
    resume = _latest_checkpoint(ckpt_dir)
    if resume is not None:
        log.info("resuming DPO from %s", resume)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    adapter = out / ADAPTER_DIR
    trainer.save_model(str(adapter))
    write_whole(adapter / ADAPTER_META, json.dumps({"base_model": str(base), "base_fingerprint": fingerprint,
                                                    "training": str(record_path)}, indent=2))
    losses = [h for h in trainer.state.log_history if "loss" in h]
    tokens = int(float(losses[-1].get("num_tokens", 0))) if losses else 0
    result = TrainResult(
        out=out, adapter=adapter, steps=int(output.global_step), seconds=round(seconds, 1), pairs=len(rows),
        tokens=tokens, resumed_from=str(resume) if resume else None,
        final_loss=float(losses[-1]["loss"]) if losses else None,
        reward_accuracy=float(losses[-1]["rewards/accuracies"]) if losses and "rewards/accuracies" in losses[-1] else None,
    )
    record["result"] = json.loads(result.model_dump_json())
    write_whole(record_path, json.dumps(record, indent=2))
    return result
