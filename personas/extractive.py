"""Extractive persona cards (no LLM): facts, likes/dislikes, traits, passages, name, summary.

Everything on an extractive card is drawn from the cluster's own documents:
passages are the chunks nearest the centroid (one per document, best first), facts
are the mode of a metadata field over members (evidence = member ids holding that
value, nearest the centroid first), likes/dislikes are c-TF-IDF phrases of the
members' text (personas.keyphrases). For MovieLens users, likes/dislikes start with
catalog genre names over-represented (lift > ``MIN_LIFT``) in the cluster's liked
(rating >= 4) / disliked (rating <= 2) movies relative to the whole corpus, and the
card's favourite-genre fact is its top liked genre (so Q&A answers agree with likes).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from personas.card import BigFive, Fact, Passage, PersonaCard
from personas.documents import Corpus

N_PASSAGES = 5
N_EVIDENCE = 5
N_GENRES = 3
N_PHRASES = 4
MIN_LIFT = 1.05
MIN_GENRE_COUNT = 5


def passages_for(cluster_docs: np.ndarray, chunk_doc: np.ndarray, chunk_vecs: np.ndarray, chunk_texts: list[str],
                 centroid: np.ndarray, doc_ids: list[str], n: int = N_PASSAGES) -> list[Passage]:
    """Top-``n`` chunks by cosine to ``centroid``, at most one per document."""
    members = np.flatnonzero(np.isin(chunk_doc, cluster_docs))
    sims = chunk_vecs[members] @ centroid
    out: list[Passage] = []
    used: set[int] = set()
    for idx in members[np.argsort(-sims, kind="stable")]:
        d = int(chunk_doc[idx])
        if d in used:
            continue
        used.add(d)
        out.append(Passage(doc_id=doc_ids[d], text=chunk_texts[idx], score=round(float(chunk_vecs[idx] @ centroid), 6)))
        if len(out) == n:
            break
    return out


def facts_for(corpus: Corpus, members: np.ndarray, member_sims: np.ndarray) -> list[Fact]:
    """One fact per corpus fact field: the members' most common value (must be a choice)."""
    facts = []
    order = members[np.argsort(-member_sims, kind="stable")]
    for key, field in corpus.fact_fields.items():
        values = [str(corpus.documents[i].metadata.get(key)) for i in order]
        counts = Counter(v for v in values if v in field.choices)
        if not counts:
            continue
        top = max(counts.values())
        value = next(c for c in field.choices if counts.get(c) == top)
        evidence = [corpus.documents[i].id for i, v in zip(order, values) if v == value][:N_EVIDENCE]
        facts.append(Fact(key=key, question=field.question, value=value, choices=list(field.choices),
                          evidence=evidence))
    return facts


def _favourite_fact(corpus: Corpus, fact: Fact, members: np.ndarray, genre: str) -> Fact:
    """The persona's favourite genre = its most over-represented liked genre (likes[0]), so the Q&A
    answer agrees with the likes; evidence = members who liked the most movies of that genre."""
    if genre not in fact.choices:
        return fact
    counts = [(corpus.documents[i].metadata.get(corpus.genre_field, {}).get("liked", {}).get(genre, 0), i)
              for i in members]
    best = [corpus.documents[i].id for n, i in sorted(counts, key=lambda t: (-t[0], t[1])) if n > 0][:N_EVIDENCE]
    return fact.model_copy(update={"value": genre, "evidence": best}) if best else fact


def genre_lifts(corpus: Corpus, labels: np.ndarray, cluster: int) -> tuple[list[str], list[str]]:
    """(liked genres, disliked genres) over-represented in the cluster vs the corpus."""
    field = corpus.genre_field
    result = []
    for side in ("liked", "disliked"):
        total, own = Counter(), Counter()
        for i, doc in enumerate(corpus.documents):
            counts = doc.metadata.get(field, {}).get(side, {})
            total.update(counts)
            if labels[i] == cluster:
                own.update(counts)
        n_total, n_own = sum(total.values()), sum(own.values())
        lifts = {g: (own[g] / n_own) / (total[g] / n_total) for g in own
                 if n_own and own[g] >= MIN_GENRE_COUNT and total[g]}
        result.append({g: v for g, v in lifts.items() if v > MIN_LIFT})
    liked, disliked = result
    both = set(liked) & set(disliked)
    for g in both:  # a genre cannot be both: keep the side where it stands out more
        (disliked if liked[g] >= disliked[g] else liked).pop(g)
    rank = lambda d: [g for g, _ in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))][:N_GENRES]
    return rank(liked), rank(disliked)


def name_for(corpus: Corpus, facts: list[Fact], likes: list[str], pid: str) -> str:
    f = {x.key: x.value for x in facts}
    top = ", ".join(likes[:2])
    if corpus.name.startswith("ml-100k-users"):  # also "ml-100k-users[train]"
        return f"{top} fan ({f.get('age group', '')} {f.get('gender', '')} {f.get('occupation', '')})"
    if corpus.name == "clothing-reviews":
        return f"{f.get('department', '')} shopper {f.get('age group', '')}: {top}"
    return f"{pid}: {top}" if top else pid


def summary_for(name: str, size: int, n_docs: int, facts: list[Fact], likes: list[str], dislikes: list[str],
                passages: list[Passage]) -> str:
    parts = [f"{name}. This persona stands for {size} of {n_docs} documents ({100 * size / max(n_docs, 1):.1f}%)."]
    if facts:
        parts.append("Typical: " + "; ".join(f"{x.key} {x.value}" for x in facts) + ".")
    if likes:
        parts.append("Distinctive likes: " + ", ".join(likes) + ".")
    if dislikes:
        parts.append("Complaints and dislikes: " + ", ".join(dislikes) + ".")
    if passages:
        snippet = passages[0].text if len(passages[0].text) <= 180 else passages[0].text[:177] + "..."
        parts.append(f'Most representative (doc {passages[0].doc_id}): "{snippet}"')
    return " ".join(parts)


def build_card(pid: str, corpus: Corpus, members: np.ndarray, size: int, centroid: np.ndarray, member_sims: np.ndarray,
               passages: list[Passage], phrases: tuple[list[str], list[str]], traits: dict[str, float],
               genres: tuple[list[str], list[str]] | None) -> PersonaCard:
    likes, dislikes = list(phrases[0][:N_PHRASES]), list(phrases[1][:N_PHRASES])
    if genres is not None:
        likes = genres[0] + [p for p in likes if p not in genres[0]][:N_PHRASES - 1]
        dislikes = genres[1] + [p for p in dislikes if p not in genres[1] and p not in likes][:N_PHRASES - 1]
    facts = facts_for(corpus, members, member_sims)
    if genres is not None and genres[0]:
        facts = [_favourite_fact(corpus, f, members, genres[0][0]) if f.key == "favourite genre" else f for f in facts]
    if genres is not None:  # never dislike the genre a fact says is liked most
        fav = {x.value for x in facts if x.key == "favourite genre"}
        dislikes = [d for d in dislikes if d not in fav]
    name = name_for(corpus, facts, (genres[0] or likes) if genres is not None else likes, pid)
    return PersonaCard(
        id=pid, name=name,
        summary=summary_for(name, size, len(corpus.documents), facts, likes, dislikes, passages),
        traits=BigFive(**traits), likes=likes, dislikes=dislikes, facts=facts, passages=passages, size=size,
        centroid=[round(float(x), 6) for x in centroid], source=corpus.name, writer="extractive",
    )
