"""Documents and corpora: what the pipeline reads, with stable ids and metadata.

A :class:`Corpus` is the list of usable documents plus every input that was
*not* usable (``skipped``, each with a reason), so that nothing is dropped
silently: skipped inputs reappear in ``assignments.jsonl`` with their reason.

It also says which metadata fields become multiple-choice facts on the cards
(``fact_fields``) and which numeric field is a rating (for dislikes).
"""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import BaseModel, Field


class Document(BaseModel):
    """One input document. ``id`` is stable across runs (file path, id column or row number)."""

    id: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class SkippedInput(BaseModel):
    """An input that did not become a document, and why (e.g. 'binary file', 'not UTF-8')."""

    id: str
    reason: str


#: Metadata columns with this many distinct values or fewer become multiple-choice facts (`personas.loaders`'
#: tables, `personas.corpora.interaction_users`' demographics).
MAX_FACT_CHOICES = 12


class FactField(BaseModel):
    """A metadata field that becomes a multiple-choice fact (value = the cluster's mode)."""

    question: str
    choices: list[str] = Field(min_length=2)


class Corpus(BaseModel):
    """Usable documents + skipped inputs + how to read the metadata.

    ``rating_field``/``low_rating_max``: documents whose rating is <= the bound are
    'low-rated' and drive the dislikes. ``genre_field``: metadata key holding
    ``{"liked": {genre: n}, "disliked": {genre: n}}`` (MovieLens users), which makes
    likes/dislikes start with catalog genre names.
    """

    name: str
    documents: list[Document]
    skipped: list[SkippedInput] = Field(default_factory=list)
    fact_fields: dict[str, FactField] = Field(default_factory=dict)
    rating_field: str | None = None
    low_rating_max: float | None = None
    genre_field: str | None = None

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self) -> Iterator[Document]:  # type: ignore[override]
        return iter(self.documents)

    def __getitem__(self, i: int) -> Document:
        return self.documents[i]
