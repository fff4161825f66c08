"""Scored candidate pairs as preference data for DPO (TRL's ``DPOTrainer`` format).

Each JSONL row has ``prompt``, ``chosen`` and ``rejected``. In the default
conversational format ``prompt`` is the list of chat messages and ``chosen`` /
``rejected`` are one-message assistant lists (TRL applies the model's chat
template); ``format="standard"`` writes plain strings instead (the messages
joined as "role: content" lines). Extra keys (rewards, user, turn, seed,
model, and the caller's ``meta`` such as a config hash) ride along for
provenance; TRL ignores columns it does not use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from personas.infra.files import write_whole
from simulator.turn import PreferencePair, Transcript


def preference_row(pair: PreferencePair, fmt: Literal["conversational", "standard"] = "conversational",
                   meta: dict[str, Any] | None = None) -> dict[str, Any]:
    if fmt == "conversational":
        row: dict[str, Any] = {
            "prompt": pair.prompt,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
    elif fmt == "standard":
        prompt = "\n".join(f"{m['role']}: {m['content']}" for m in pair.prompt) + "\nassistant: "
        row = {"prompt": prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    else:
        raise ValueError(f"unknown preference format {fmt!r}; choose 'conversational' or 'standard'")
    row.update(
        reward_chosen=pair.reward_chosen, reward_rejected=pair.reward_rejected, user_id=pair.user_id,
        turn=pair.turn, seed=pair.seed, model=pair.model, **(meta or {}),
    )
    return row


def write_pair_set(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write preference rows to ``path`` as JSONL (replaced whole: written beside it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_whole(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_preferences(transcripts: list[Transcript], path: str | Path,
                      fmt: Literal["conversational", "standard"] = "conversational") -> int:
    """Write every transcript's pairs to ``path`` (JSONL, overwritten); returns the number of rows."""
    rows = [preference_row(pair, fmt, tr.meta) for tr in transcripts for pair in tr.pairs]
    write_pair_set(rows, path)
    return len(rows)
