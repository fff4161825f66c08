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
from collections.abc import Iterable

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


def _pack(parts: Iterable[str], max_chars: int) -> list[str]:
    """Join ``parts`` greedily with single spaces into strings of <= ``max_chars`` characters
    (a part longer than ``max_chars`` stands alone)."""
    packed, current = [], ""
    for part in parts:
        if current and len(current) + 1 + len(part) > max_chars:
            packed.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    if current:
        packed.append(current)
    return packed


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    """A sentence over ``max_chars`` packed by words; a single huge "word" (no spaces) is hard-cut."""
    words = (word[i: i + max_chars] for word in sentence.split(" ") for i in range(0, max(len(word), 1), max_chars))
    return _pack(words, max_chars)


def chunk_text(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Cleaned ``text`` packed into sentence-aligned chunks of <= ``max_chars`` characters."""
    pieces = (piece for sentence in split_sentences(clean(text))
              for piece in (_cut_long(sentence, max_chars) if len(sentence) > max_chars else [sentence]))
    return _pack(pieces, max_chars)


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
