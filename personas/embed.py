"""Sentence embeddings with MiniLM (offline), batched, with an on-disk cache by content hash.

The cache is one SQLite file per model under ``cache_dir`` (key = sha256 of the
text, value = float32 vector), so a re-run embeds only new texts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BATCH_SIZE = 64


def load_encoder(device: str = "cpu", show_progress: bool = True):
    """The packaged all-MiniLM-L6-v2 SentenceTransformer (no network).

    ``show_progress=False`` also silences transformers' weight-loading bar (process-wide).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if not show_progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    from personas.infra import assets

    return SentenceTransformer(str(assets.minilm_dir()), device=device)


class Embedder:
    """Embeds texts to unit-norm float32 vectors, shape (n, dim)."""

    def __init__(self, cache_dir: str | Path | None = None, encoder=None, model_name: str = "all-MiniLM-L6-v2",
                 batch_size: int = BATCH_SIZE, show_progress: bool = True):
        self._encoder = encoder
        self.model_name = model_name
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.cache_path = Path(cache_dir) / f"embeddings-{model_name}.sqlite" if cache_dir else None
        self.hits = 0
        self.misses = 0

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = load_encoder(show_progress=self.show_progress)
        return self._encoder

    def _encode(self, texts: list[str]) -> np.ndarray:
        vecs = self.encoder.encode(texts, batch_size=self.batch_size, show_progress_bar=self.show_progress,
                                   convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(vecs, dtype=np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) unit vectors; cached texts are read, the rest encoded and stored."""
        if self.cache_path is None:
            self.misses += len(texts)
            return self._encode(texts)
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        with sqlite3.connect(self.cache_path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")
            found: dict[str, np.ndarray] = {}
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 900):  # SQLite parameter limit
                part = unique[start:start + 900]
                rows = db.execute(f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(part))})", part)
                found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
            todo = [k for k in unique if k not in found]
            if todo:
                first = {k: i for i, k in reversed(list(enumerate(keys)))}
                new = self._encode([texts[first[k]] for k in todo])
                db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                               [(k, v.tobytes()) for k, v in zip(todo, new)])
                found.update(zip(todo, new))
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        log.info("embeddings: %d cached, %d encoded", len(texts) - len(todo), len(todo))
        return np.stack([found[k] for k in keys]).astype(np.float32)
