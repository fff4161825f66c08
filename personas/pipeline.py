"""documents -> chunks -> embeddings -> dedup -> clusters -> cards + separability.

Clustering is per *document*: a document's vector is the normalised mean of its
chunk vectors; passages are chunks. Duplicates are clustered once and then get the
persona of the document they copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personas import chunking, cluster, extractive, keyphrases, traits
from personas.corpora import ABOUT
from personas.card import PersonaCard, write_personas
from personas.documents import Corpus, Document, SkippedInput
from personas.errors import PersonaError
from personas.infra.files import write_whole
from personas.separability import separability_report

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"


@dataclass
class ExtractionResult:
    """Cards, one assignment row per input, the separability report and the run config."""

    cards: list[PersonaCard]
    assignments: list[dict[str, Any]]
    separability: dict[str, Any]
    config: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> Path:
        """Write personas.jsonl, assignments.jsonl and separability.json into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_personas(self.cards, out / "personas.jsonl")
        write_whole(out / "assignments.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.assignments))
        write_whole(out / "separability.json", json.dumps(self.separability, indent=2) + "\n")
        return out


def _as_corpus(docs: Any) -> Corpus:
    if isinstance(docs, Corpus):
        return docs
    items = list(docs)
    if not items:
        raise PersonaError("empty source: no documents")
    if all(isinstance(d, str) for d in items):
        return Corpus(name="documents", documents=[Document(id=str(i), text=t) for i, t in enumerate(items)])
    return Corpus(name="documents", documents=[d if isinstance(d, Document) else Document.model_validate(d)
                                               for d in items])


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _low_and_positive_texts(corpus: Corpus, texts: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Per document: is it low-rated, its 'positive' text and its 'negative' text (for c-TF-IDF)."""
    docs = corpus.documents
    if corpus.genre_field:  # MovieLens users: the "Dislikes:" part is the negative text
        import re

        def titles(part: str) -> str:  # "A (1994; Drama); B (1977; War)." -> "A\nB"
            return "\n".join(x.strip() for x in part.rstrip(".").split(";") if x.strip())

        pos, neg = [], []
        for t in texts:  # whole titles only: the genre lists are counted exactly elsewhere
            body = t.partition(f" {ABOUT}")[0]  # not the demographic sentence
            head, _, tail = re.sub(r"\s*\((?:\d{4}|unknown)?;[^)]*\)", "", body).partition(" Dislikes: ")
            pos.append(titles(head.partition("Loves: ")[2]))  # not the favourite genres
            neg.append(titles(tail))
        return np.array([bool(n) for n in neg]), pos, neg
    if corpus.rating_field and corpus.low_rating_max is not None:
        low = np.array([isinstance(d.metadata.get(corpus.rating_field), (int, float))
                        and d.metadata[corpus.rating_field] <= corpus.low_rating_max for d in docs])
    else:
        low = traits.is_negative(texts)
    return low, [t if not lo else "" for t, lo in zip(texts, low)], [t if lo else "" for t, lo in zip(texts, low)]


def extract_personas(docs: Corpus | list, k: int | str = "auto", method: str = "kmeans", seed: int = 0, llm=None,
                     cache_dir: str | Path | None = None, show_progress: bool = True,
                     k_range: tuple[int, int] = cluster.K_RANGE, encoder=None,
                     max_chars: int = chunking.MAX_CHARS, max_chunks: int = chunking.MAX_CHUNKS_PER_DOC,
                     llm_max_tokens: int = 320, vectors: np.ndarray | None = None,
                     vectors_model: str = "given vectors") -> ExtractionResult:
    """Extract persona cards from ``docs`` (a Corpus from load_documents, or a list of texts/Documents).

    ``k``: 'auto' (silhouette over ``k_range``) or an int >= 2; ``method``: 'kmeans' or 'hdbscan'
    (K found by HDBSCAN; ``k`` ignored). ``llm``: optional async client (see personas.llm_writer.CardLLM).
    ``vectors``: one vector per document of ``docs`` [n_documents, d] to cluster on instead of the text's
    embeddings, for documents whose words do not tell their authors apart (a log's users whose items are ids:
    `evals.validity.grounding.behaviour_vectors`); each chunk takes its document's vector, so the passages are
    the members nearest the centroid. ``vectors_model`` names them where the embedding model is recorded.
    Raises PersonaError on unusable input (empty, fewer usable documents than K, bad K/method).
    """
    from personas.embed import Embedder

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    corpus = _as_corpus(docs)
    if method not in ("kmeans", "hdbscan"):
        raise PersonaError(f"unknown method {method!r} (use kmeans or hdbscan)")
    if isinstance(k, str):
        if k != "auto":
            try:
                k = int(k)
            except ValueError:
                raise PersonaError(f"--k must be 'auto' or an integer, got {k!r}") from None
    if isinstance(k, int) and k < 2:
        raise PersonaError(f"K must be at least 2, got {k}")
    if vectors is not None and len(vectors) != len(corpus.documents):
        raise PersonaError(f"{corpus.name}: {len(vectors)} vectors for {len(corpus.documents)} documents")
    model_name = MODEL_NAME if vectors is None else vectors_model
    config = {"source": corpus.name, "k": k, "method": method, "seed": seed, "model": model_name,
              "max_chars": max_chars, "max_chunks_per_doc": max_chunks, "near_dup_cosine": cluster.NEAR_DUP_COSINE,
              "k_range": list(k_range), "n_init": cluster.N_INIT,
              "llm": getattr(llm, "model", type(llm).__name__) if llm is not None else None}
    chash = config_hash(config)

    # 1. chunk
    skipped: list[SkippedInput] = list(corpus.skipped)
    usable: list[Document] = []
    usable_rows: list[int] = []
    chunk_doc, chunk_texts, n_total = [], [], []
    for row, doc in enumerate(corpus.documents):
        chunks, total = chunking.chunk_document(doc.id, doc.text, max_chars, max_chunks)
        if not chunks:
            skipped.append(SkippedInput(id=doc.id, reason="empty after cleaning"))
            continue
        chunk_doc += [len(usable)] * len(chunks)
        chunk_texts += [c.text for c in chunks]
        n_total.append(total)
        usable.append(doc)
        usable_rows.append(row)
    if not usable:
        raise PersonaError(f"{corpus.name}: no usable documents after cleaning")
    if len(usable) != len(corpus.documents):
        corpus = corpus.model_copy(update={"documents": usable})
    n = len(usable)
    if isinstance(k, int) and method == "kmeans" and n < k:
        raise PersonaError(f"{corpus.name}: fewer usable documents ({n}) than K={k}")
    chunk_doc_arr = np.array(chunk_doc, dtype=np.int64)
    timings["chunk_s"] = time.perf_counter() - t0

    # 2. embed (chunks), document vector = normalised mean of its chunks
    t = time.perf_counter()
    if vectors is None:
        embedder = Embedder(cache_dir=cache_dir, encoder=encoder, model_name=MODEL_NAME, show_progress=show_progress)
        chunk_vecs = embedder.embed(chunk_texts)
    else:
        given = np.asarray(vectors, dtype=np.float32)[usable_rows]
        chunk_vecs = given[chunk_doc_arr] / np.linalg.norm(given[chunk_doc_arr], axis=1, keepdims=True).clip(1e-12)
    sums = np.zeros((n, chunk_vecs.shape[1]), dtype=np.float64)
    np.add.at(sums, chunk_doc_arr, chunk_vecs)
    doc_vecs = (sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)
    timings["embed_s"] = time.perf_counter() - t

    # 3. dedup
    t = time.perf_counter()
    # what was embedded is what is analysed: a capped document contributes its used chunks only
    per_doc: list[list[str]] = [[] for _ in range(n)]
    for d, text in zip(chunk_doc, chunk_texts):
        per_doc[d].append(text)
    texts = [" ".join(parts) for parts in per_doc]
    dup_of = cluster.find_duplicates(texts, doc_vecs)
    keep = np.flatnonzero(dup_of < 0)
    n_dup = n - len(keep)
    timings["dedup_s"] = time.perf_counter() - t

    # 4. cluster
    t = time.perf_counter()
    k_curve: list[dict] = []
    if method == "kmeans":
        if k == "auto":
            if len(keep) < 3:
                raise PersonaError(f"{corpus.name}: {len(keep)} usable documents ({n_dup} duplicates removed); "
                                   "need at least 3 to choose K")
            chosen, kept_labels, k_curve = cluster.choose_k(doc_vecs[keep], seed, k_range, show_progress)
        else:
            if len(keep) < k:
                raise PersonaError(f"{corpus.name}: fewer usable documents ({len(keep)}, after removing {n_dup} "
                                   f"duplicates) than K={k}")
            kept_labels = cluster.kmeans(doc_vecs[keep], k, seed)
    else:
        if len(keep) < 10:
            raise PersonaError(f"{corpus.name}: HDBSCAN needs at least 10 usable documents, got {len(keep)}")
        kept_labels = cluster.hdbscan(doc_vecs[keep], seed)
        if len(set(kept_labels.tolist()) - {-1}) < 2:
            raise PersonaError(f"{corpus.name}: HDBSCAN found fewer than 2 clusters; use --method kmeans")
    # relabel by size, largest = 0
    sizes = {c: int((kept_labels == c).sum()) for c in set(kept_labels.tolist()) if c >= 0}
    order = sorted(sizes, key=lambda c: (-sizes[c], c))
    remap = {old: new for new, old in enumerate(order)}
    kept_labels = np.array([remap.get(int(c), -1) for c in kept_labels], dtype=np.int64)
    labels = np.full(n, -1, dtype=np.int64)
    labels[keep] = kept_labels
    labels[dup_of >= 0] = labels[dup_of[dup_of >= 0]]
    clusters = list(range(len(order)))
    timings["cluster_s"] = time.perf_counter() - t

    # 5. cards
    t = time.perf_counter()
    pids = {c: f"p{c}" for c in clusters}
    low, pos_texts, neg_texts = _low_and_positive_texts(corpus, texts)
    phrases = keyphrases.likes_dislikes_split(pos_texts, neg_texts, labels, clusters,
                                              whole_lines=bool(corpus.genre_field))
    trait_scores = traits.doc_scores(texts)
    doc_ids = [d.id for d in usable]
    cards, pinned = [], {}
    for c in clusters:
        members = np.flatnonzero(labels == c)
        centroid = doc_vecs[keep][kept_labels == c].mean(axis=0)
        centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
        uniq_members = np.flatnonzero((labels == c) & (dup_of < 0))
        passages = extractive.passages_for(uniq_members, chunk_doc_arr, chunk_vecs, chunk_texts, centroid, doc_ids)
        genres = extractive.genre_lifts(corpus, labels, c) if corpus.genre_field else None
        if genres is not None:
            pinned[pids[c]] = genres
        cards.append(extractive.build_card(pids[c], corpus, members, len(members), centroid,
                                           doc_vecs[members] @ centroid, passages, phrases[c],
                                           traits.persona_traits(trait_scores, labels, c), genres))
    seen_names: dict[str, int] = {}
    for i, card in enumerate(cards):  # names must tell personas apart: suffix repeats with the id
        seen_names[card.name] = seen_names.get(card.name, 0) + 1
    cards = [c.model_copy(update={"name": f"{c.name} ({c.id})"}) if seen_names[c.name] > 1 else c for c in cards]
    llm_stats = None
    if llm is not None:
        from personas.llm_writer import rewrite_cards

        cards, llm_stats = rewrite_cards(llm, cards, seed=seed, max_tokens=llm_max_tokens, pinned=pinned,
                                         show_progress=show_progress)
    cards = [c.model_copy(update={"config_hash": chash, "embedding_model": model_name, "seed": seed}) for c in cards]
    timings["cards_s"] = time.perf_counter() - t

    # 6. separability (on the de-duplicated documents) and assignments
    t = time.perf_counter()
    report = separability_report(doc_vecs[keep], kept_labels, seed, pids)
    report.update({"n_documents": n, "n_inputs": n + len(skipped), "n_skipped": len(skipped), "n_chunks": len(chunk_texts),
                   "n_duplicates": n_dup, "n_docs_chunk_capped": int(sum(1 for x in n_total if x > max_chunks)),
                   "method": method, "k_requested": k, "k_curve": k_curve,
                   "config_hash": chash, "model": model_name, "seed": seed})
    if llm_stats is not None:
        report["llm"] = llm_stats
    timings["separability_s"] = time.perf_counter() - t
    meta = {"config_hash": chash, "model": model_name, "seed": seed}
    sims = np.einsum("ij,ij->i", doc_vecs, np.stack([np.asarray(cards[l].centroid, dtype=np.float32) if l >= 0
                                                     else np.zeros(doc_vecs.shape[1], np.float32) for l in labels]))
    n_chunks_used = np.bincount(chunk_doc_arr, minlength=n)
    assignments: list[dict[str, Any]] = []
    for i, doc in enumerate(usable):
        row = {"doc_id": doc.id, "persona_id": pids.get(int(labels[i])), "status": "assigned",
               "similarity": round(float(sims[i]), 6), "n_chunks_total": n_total[i],
               "n_chunks_used": int(n_chunks_used[i])}
        if dup_of[i] >= 0:
            row.update(status="duplicate", duplicate_of=doc_ids[dup_of[i]])
        if labels[i] < 0:
            row.update(status="noise", reason="HDBSCAN noise point", similarity=None)
        if n_total[i] > max_chunks:
            row["reason"] = f"chunks capped at {max_chunks} of {n_total[i]}"
        assignments.append(row | meta)
    for s in skipped:
        assignments.append({"doc_id": s.id, "persona_id": None, "status": "skipped", "reason": s.reason} | meta)
    timings["total_s"] = time.perf_counter() - t0
    report["timings_s"] = {k2: round(v, 3) for k2, v in timings.items()}
    log.info("extracted %d personas from %d documents in %.1fs", len(cards), n, timings["total_s"])
    return ExtractionResult(cards=cards, assignments=assignments, separability=report, config=config | {"hash": chash},
                            timings=timings)
