"""personas: real documents -> embeddings -> clusters -> grounded persona cards.

Public API::

    from personas import extract_personas, load_documents
    docs = load_documents("clothing-reviews")          # or a path; see personas.loaders
    result = extract_personas(docs, k="auto", seed=0)
    result.write("out/")  # personas.jsonl, assignments.jsonl, separability.json

Heavy dependencies (torch, scikit-learn) load on first use, not on import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from personas.card import BigFive, Fact, Passage, PersonaCard, read_personas, write_personas
from personas.documents import Corpus, Document, SkippedInput
from personas.errors import PersonaError
from personas.llm_writer import CardLLM
from personas.loaders import load_documents

if TYPE_CHECKING:
    from personas.pipeline import ExtractionResult


def extract_personas(docs, k="auto", method="kmeans", seed=0, llm=None, cache_dir=None, show_progress=True,
                     **options) -> "ExtractionResult":
    """See :func:`personas.pipeline.extract_personas`."""
    from personas.pipeline import extract_personas as _extract

    return _extract(docs, k=k, method=method, seed=seed, llm=llm, cache_dir=cache_dir, show_progress=show_progress,
                    **options)


__all__ = ["BigFive", "CardLLM", "Corpus", "Document", "Fact", "Passage", "PersonaCard", "PersonaError", "SkippedInput",
           "extract_personas", "load_documents", "read_personas", "write_personas"]
