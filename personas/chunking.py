"""Clean and chunk documents: sentence-aware, bounded length, bounded count per document.

* clean: control characters removed, whitespace collapsed.
* chunk: sentences (split after . ! ? followed by space) are packed greedily into
  chunks of at most ``max_chars`` characters (1,000 chars ~ 200-250 word pieces,
  inside MiniLM's 256-token window); a sentence longer than that is cut at word
  boundaries.
* cap: a document yielding more than ``max_chunks`` chunks (e.g. a 10 MB file gives
  ~10,000) keeps ``max_chunks`` chunks spread evenly over the whole document; the
  cut is recorded (``n_chunks_total`` vs ``n_chunks_used`` in assignments.jsonl).
"""

from __future__ import annotations

import re

from pydantic import BaseModel

MAX_CHARS = 1000
MAX_CHUNKS_PER_DOC = 64

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class Chunk(BaseModel):
    """A piece of one document; ``index`` counts chunks within the document."""

    doc_id: str
    index: int
    text: str


def clean(text: str) -> str:
    """Remove control characters and collapse whitespace."""
    return _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s]


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    pieces, current = [], ""
    for word in sentence.split(" "):
        while len(word) > max_chars:  # a single huge "word" (no spaces): hard cut
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def chunk_text(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Cleaned ``text`` packed into sentence-aligned chunks of <= ``max_chars`` characters."""
    chunks: list[str] = []
    current = ""
    for sentence in split_sentences(clean(text)):
        for piece in (_cut_long(sentence, max_chars) if len(sentence) > max_chars else [sentence]):
            if current and len(current) + 1 + len(piece) > max_chars:
                chunks.append(current)
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def chunk_document(doc_id: str, text: str, max_chars: int = MAX_CHARS,
                   max_chunks: int = MAX_CHUNKS_PER_DOC) -> tuple[list[Chunk], int]:
    """Chunks of one document (at most ``max_chunks``, evenly spread) and the uncapped count."""
    texts = chunk_text(text, max_chars)
    total = len(texts)
    if total > max_chunks:
        step = total / max_chunks
        keep = [int(i * step) for i in range(max_chunks)]
        return [Chunk(doc_id=doc_id, index=i, text=texts[i]) for i in keep], total
    return [Chunk(doc_id=doc_id, index=i, text=t) for i, t in enumerate(texts)], total
