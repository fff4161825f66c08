"""The report's persona gallery: who the personas are, what grounds them, how far apart they lie.

Reads what `personasim personas extract` wrote: ``personas.jsonl`` (the cards) and, beside it,
``separability.json``. Each persona is placed on a 2-D map: the first two principal components of
the persona centroids (centred, unweighted; the same centroids the separability report measures).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from personas.card import PersonaCard, PersonaFileError, read_personas

PASSAGES_SHOWN = 2
PASSAGE_CHARS = 400


def centroid_map(cards: list[PersonaCard]) -> dict | None:
    """{xy: [[pc1, pc2]] one per card, share: [variance share of pc1, pc2]}; None unless every card has a
    centroid of one dimension and there are at least two."""
    dims = {len(c.centroid) for c in cards}
    if len(cards) < 2 or len(dims) != 1 or 0 in dims:
        return None
    centred = np.asarray([c.centroid for c in cards], dtype=float)
    centred -= centred.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    if xy.shape[1] < 2:  # two personas: a single axis
        xy = np.column_stack([xy, np.zeros(len(xy))])
    var = s ** 2
    share = (var[:2] / var.sum()).tolist() if var.sum() > 0 else [0.0, 0.0]
    return {"xy": xy.round(4).tolist(), "share": (share + [0.0])[:2]}


def _card(card: PersonaCard, total: int, users: int) -> dict:
    return {
        "id": card.id, "name": card.name, "summary": card.summary, "likes": card.likes, "dislikes": card.dislikes,
        "facts": [(f.key, f.value) for f in card.facts],
        "passages": [{"doc_id": p.doc_id, "score": p.score,
                      "text": p.text if len(p.text) <= PASSAGE_CHARS else p.text[:PASSAGE_CHARS] + "…"}
                     for p in card.passages[:PASSAGES_SHOWN]],
        "size": card.size, "share": card.size / total if total else None, "users": users,
        "traits": card.traits.model_dump(), "writer": card.writer,
    }


def load_cards(personas_path: Path) -> tuple[list[PersonaCard], str | None]:
    """(the cards, None), or ([], why there are none: one line naming the file)."""
    try:
        return read_personas(personas_path), None
    except PersonaFileError as exc:
        return [], str(exc)


def persona_gallery(cards: list[PersonaCard], personas_path: Path,
                    users_per_persona: dict[str, int] | None = None) -> dict:
    """{path, cards: [card dict], map (centroid_map or None), separability (separability.json beside
    ``personas_path``, or None), notes: [what is absent and why]}. ``users_per_persona``: simulated
    users of each persona in the campaign."""
    notes = []
    sep_path = Path(personas_path).parent / "separability.json"
    separability = None
    if sep_path.is_file():
        try:
            separability = json.loads(sep_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            notes.append(f"{sep_path}: not JSON ({exc})")
    elif cards:
        notes.append(f"{sep_path}: no separability report (cards not written by `personasim personas extract`)")
    cmap = centroid_map(cards)
    if cmap is None and cards:
        notes.append("no map: the cards carry no centroids (or there are fewer than two)")
    if cards and not any(c.passages for c in cards):
        notes.append("no evidence passages: the cards were not extracted from documents")
    total = sum(c.size for c in cards)
    users = users_per_persona or {}
    return {"path": str(personas_path), "cards": [_card(c, total, users.get(c.id, 0)) for c in cards], "map": cmap,
            "separability": separability, "notes": notes}
