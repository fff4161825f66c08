"""Keyword matching behind the structured judge: concepts, items and stated preferences.

Text is normalised to stemmed tokens: lower case, split on anything that is
not a letter or digit, one-letter tokens dropped, plural endings stripped
("comedies" -> "comedy", "thrillers" -> "thriller"), and a few synonyms mapped
(`SYNONYMS`: "romantic" -> "romance", "animated" -> "animation", "scifi" ->
"sci fi", "funny" -> "comedy", "scary" -> "horror", "kids" -> "children", ...).
A concept (a genre or a persona like/dislike) occurs in a text when its
tokens occur there contiguously.

Stated preferences: an utterance is cut into clauses (at . ! ? ; , and
"but"); a clause with a positive cue ("love", "like", "enjoy", "want",
"fan of", "into", "prefer", "in the mood for", ...) states +1 for every
concept in it, one with a negative cue ("hate", "dislike", "boring", "avoid",
"can't stand", "tired of", ...) states -1; a negation ("not", "don't",
"never", "no", ...) within three tokens before a positive cue turns it into
-1. A clause with both or neither kind of cue states nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache

from simulator.catalog import Item

SYNONYMS: dict[str, tuple[str, ...]] = {
    "romantic": ("romance",),
    "romcom": ("romance", "comedy"),
    "animated": ("animation",),
    "cartoon": ("animation",),
    "scifi": ("sci", "fi"),
    "funny": ("comedy",),
    "comedic": ("comedy",),
    "scary": ("horror",),
    "kid": ("children",),
    "kids": ("children",),
    "noir": ("film", "noir"),
    "musicals": ("musical",),
    "westerns": ("western",),
    "documentaries": ("documentary",),
}
_KEEP_S = {"children", "series", "news", "sci", "documentary", "chaos", "bus", "gas", "glass", "class", "dress", "jeans"}
POSITIVE = ("love", "loved", "like", "liked", "enjoy", "enjoyed", "want", "wanted", "fan of", "into", "prefer",
            "adore", "favorite", "favourite", "great", "perfect", "awesome", "in the mood for", "looking for")
NEGATIVE = ("hate", "hated", "dislike", "disliked", "can't stand", "cannot stand", "boring", "avoid", "tired of",
            "sick of", "no more", "awful", "terrible", "not for me", "not my thing", "too scary")
NEGATIONS = {"not", "don't", "dont", "never", "no", "isn't", "doesn't", "didn't", "can't", "won't", "nothing"}
_CLAUSE = re.compile(r"[.!?;,]+|\bbut\b", re.IGNORECASE)


def _stem(tok: str) -> str:
    if tok in _KEEP_S or len(tok) <= 3:
        return tok
    if tok.endswith("ies") and len(tok) > 4:
        return tok[:-3] + "y"
    if tok.endswith("s") and not tok.endswith("ss"):
        return tok[:-1]
    return tok


def tokens(text: str) -> list[str]:
    """Stemmed, synonym-mapped tokens of ``text``."""
    out: list[str] = []
    for raw in re.findall(r"[a-z0-9]+", text.lower().replace("'s", "")):
        if len(raw) < 2:
            continue
        out.extend(SYNONYMS.get(raw, (_stem(raw),)))
    return out


def _contains(hay: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


@lru_cache(maxsize=8192)
def _term_tokens(term: str) -> list[str]:
    """`tokens` of a vocabulary term, cached: a campaign matches the same few hundred terms every turn."""
    return tokens(term)


def concepts_in(text: str, vocabulary: list[str]) -> set[str]:
    """The concepts of ``vocabulary`` (kept as given, lower-cased) that occur in ``text``."""
    toks = tokens(text)
    return {c.lower() for c in vocabulary if _contains(toks, _term_tokens(c))}


def item_concepts(item: Item, vocabulary: list[str]) -> set[str]:
    """Concepts an item carries: each facet value, plus vocabulary phrases in its title or facets."""
    values = [v for k, vs in item.facets.items() if k != "year" for v in vs]
    found = {v.lower() for v in values}
    found |= concepts_in(item.title + " . " + " . ".join(values), vocabulary)
    return found


def term_concepts(term: str, genres: list[str]) -> set[str]:
    """A persona like/dislike as concepts: itself plus every genre mentioned in it."""
    return {term.lower()} | concepts_in(term, genres)


def _cue_positions(words: list[str], cues: tuple[str, ...]) -> list[int]:
    """Word positions where a cue starts (cues match raw lower-cased words, not stems)."""
    hits = []
    for cue in cues:
        cw = cue.split()
        for i in range(len(words) - len(cw) + 1):
            if words[i : i + len(cw)] == cw:
                hits.append(i)
    return hits


def stated_preferences(utterance: str, vocabulary: list[str]) -> dict[str, int]:
    """Concept -> +1 / -1 for the preferences an utterance states (see module docstring).

    A concept stated both ways within one utterance is dropped (ambiguous).
    """
    stated: dict[str, int] = {}
    dropped: set[str] = set()
    for clause in _CLAUSE.split(utterance.replace("\u2019", "'")):
        found = concepts_in(clause, vocabulary)
        if not found:
            continue
        words = re.findall(r"[a-z0-9']+", clause.lower())
        pos = _cue_positions(words, POSITIVE)
        neg = bool(_cue_positions(words, NEGATIVE))
        negated = any(w in NEGATIONS for p in pos for w in words[max(0, p - 3) : p])
        if pos and negated:
            pos, neg = [], True
        if bool(pos) == neg:
            continue
        polarity = 1 if pos else -1
        for c in found:
            if stated.get(c, polarity) != polarity:
                dropped.add(c)
            stated[c] = polarity
    return {c: p for c, p in stated.items() if c not in dropped}
