"""Is a line's utterance faithful to that line's decision? A structured check: rules, no LLM.

A grounded user's decision (what it chose, how it rated) is written down before the LLM voices it
(`simulator.grounded`); a layered user decides and speaks in one answer. Either way the words can
drift from the decision: naming a film the user passed over, sounding keen on a slate it turned
down, giving no reason, or filling the line with talk of JSON and episodes. This module reads one
line and says, rule by rule, whether its utterance says what its decision did. It is deterministic.

Text is normalised before it is read: accents dropped, apostrophes removed ("don't" -> "dont"),
any other character that is not a letter or digit a word break, lower case. A line whose
utterance has no letter is *unparseable*: ``faithful`` is None and it is never counted faithful
(`simulator.consistency` counts it, and pays it nothing in the reward).

Titles (`names`): a slate title such as "Shawshank Redemption, The (1994)" loses its trailing
"(year)" and an aka in parentheses (which is matched too), a trailing article (", The", ", A",
", An", and a few foreign ones) moves to the front, and it is normalised; a line names it when
those words occur in the normalised line as whole, contiguous words, with or without the
leading article. A title of 4+ words is also named by its words up to its third significant
one (words other than articles, prepositions and conjunctions). A one-word title must be
written with a capital ("Heat", not "the heat of the moment"). Where one title's words lie inside
a longer title's match in the line (slate and evidence titles alike), the longer title is the one
named: "Terminator 2: Judgment Day" does not name "The Terminator".

Rules (a parsed line is faithful when none fails):

  F1  it names the chosen: when something was chosen, the line names at least one chosen item
      (``names_chosen``; None when nothing was chosen);
  F2  it names nothing passed over: no slate item it did not choose (``names_passed``);
  F3  its sentiment agrees with the decision: its polarity (`polarity`: the cues of `POSITIVE`
      and `NEGATIVE`, a negation in `NEGATIONS` up to three words before a cue in the same
      clause flips it, "like" counts only after a subject or an adverb, so "a comedy like
      Aladdin" states nothing; the sign of the sum) is 0 or the decision's sign:
      sign(mean rating of the chosen items - 3) when something was chosen (a mean of 3: any
      polarity agrees), -1 when nothing was;
  F4  it gives a reason from the evidence: it mentions a genre of a chosen item (its facet values
      other than the year, matched as `simulator.matching.concepts_in` matches concepts, so
      "funny" is comedy) or names a title of the evidence (the line's ``evidence`` and the
      caller's: films the user liked); when nothing was chosen, a genre of any slate item counts;
  F5  it is not degenerate: no word other than the small words of `STOPWORDS` occurs 4+ times,
      no word at all (small ones too: "No, no, no, no") occurs 4+ times in a row, and it does not talk of the machinery or of television (`OFF_WORLD`: JSON, app, API,
      server, response, request, episode, season, "the show", ...).

Titles of the slate and of the evidence are taken out of the line before F3-F5 read it, so
"Love Actually" states no liking, "Scary Movie" gives no horror reason and "Field of Dreams"
is not talk of a form's fields.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from itertools import groupby
from typing import Any

from pydantic import BaseModel, Field

from simulator.matching import concepts_in
from simulator.turn import Turn

#: Sentiment cues, normalised as the line is (no apostrophes). Phrases are matched before words,
#: longest first; a word inside a matched phrase is not read again.
POSITIVE = (
    "love", "loved", "loving", "lovely", "enjoy", "enjoyed", "enjoying", "great", "good", "fun", "perfect",
    "awesome", "excellent", "favorite", "favourite", "wonderful", "amazing", "fantastic", "brilliant", "best",
    "nice", "glad", "happy", "excited", "exciting", "beautiful", "delightful", "charming", "hilarious", "gripping",
    "superb", "yes", "interested", "interesting", "appealing", "like", "liked", "adore",
    "cant wait", "looking forward", "sounds good", "in the mood for", "fan of", "right up my alley",
)
NEGATIVE = (
    "hate", "hated", "dislike", "disliked", "boring", "bored", "dull", "awful", "terrible", "bad", "worst", "avoid",
    "skip", "meh", "disappointing", "disappointed", "unsure", "doubt", "none", "nothing", "neither", "nope",
    "not sure", "not for me", "isnt for me", "wasnt for me", "not for us", "not my thing", "not my taste",
    "not interested", "not really", "not feeling", "not in the mood", "no thanks", "no thank you", "rather not",
    "pass on", "ill pass", "cant stand", "cannot stand", "tired of", "sick of", "too scary",
)
#: A negation up to three words before a cue (same clause) flips the cue's sign ("not good", "dont like").
NEGATIONS = frozenset({"not", "dont", "doesnt", "didnt", "isnt", "wasnt", "arent", "cant", "cannot", "wont",
                       "wouldnt", "never", "no", "hardly", "nothing", "neither", "nor"})
#: "like" is a liking only after one of these (else it compares: "a comedy like Aladdin").
LIKE_AFTER = frozenset({"i", "we", "you", "they", "he", "she", "id", "wed", "youd", "really", "also", "do", "dont",
                        "did", "didnt", "does", "doesnt", "would", "wouldnt", "might", "may", "will", "ill", "quite",
                        "definitely", "totally", "actually", "probably", "truly", "just", "to"})
#: Talk of the machinery or of television, not of films (F5). Phrases are matched as whole words.
OFF_WORLD = (
    "json", "api", "app", "apps", "server", "endpoint", "schema", "prompt", "response", "responses", "request",
    "requests", "assistant", "chatbot", "ai", "null", "undefined", "boolean", "array", "episode", "episodes",
    "season", "seasons", "tv", "the show", "this show", "that show", "a show", "the shows",
)
#: Small words a line may repeat without being degenerate (F5).
STOPWORDS = frozenset({"the", "a", "an", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "is", "it",
                       "its", "this", "that", "i", "im", "ill", "id", "ive", "me", "my", "you", "we", "be", "so", "as",
                       "not", "no", "one", "some", "something", "was", "are", "what", "too", "very"})
#: Words a title's significant-word prefix (4+ word titles) skips over.
TITLE_SMALL = frozenset({"the", "a", "an", "of", "and", "in", "on", "at", "to", "for", "with", "from", "by", "or",
                         "la", "le", "les", "l", "il", "el", "de", "der", "die", "das", "den", "det", "lo", "los", "las"})
_ARTICLE = re.compile(r"^(.*\S)\s*,\s*(the|a|an|la|le|les|l'|il|el|lo|los|las|die|der|das|den|det)\s*$", re.IGNORECASE)
_YEAR = re.compile(r"\s*\(\s*\d{4}\s*\)\s*$")
_AKA = re.compile(r"^(.*\S)\s*\(\s*(?:a\.?k\.?a\.?\s*)?([^()]+?)\s*\)\s*$", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9]+")
_CLAUSE_BREAK = re.compile(r"[.!?;,:]")


def _ascii(text: str) -> str:
    """Accents dropped, apostrophes removed (so "don't" is one word, "dont")."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"['\u2019\u2018`]", "", text)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(_ascii(text))]


@lru_cache(maxsize=16384)
def title_forms(title: str) -> tuple[tuple[str, ...], ...]:
    """The word sequences that name ``title`` (module docstring), longest first."""
    title = _YEAR.sub("", title.strip())
    names = [title]
    m = _AKA.match(title)
    if m:
        names = [m.group(1), m.group(2)]
    forms: set[tuple[str, ...]] = set()
    for name in names:
        m = _ARTICLE.match(name)
        if m:
            art = m.group(2)
            name = art + m.group(1) if art.endswith("'") else f"{art} {m.group(1)}"
        words = _words(name)
        if not words:
            continue
        forms.add(tuple(words))
        if len(words) > 1 and words[0] in TITLE_SMALL:
            forms.add(tuple(words[1:]))
        if len(words) >= 4:
            significant = [i for i, w in enumerate(words) if w not in TITLE_SMALL]
            if len(significant) >= 3 and significant[2] + 1 < len(words):
                prefix = words[: significant[2] + 1]
                forms.add(tuple(prefix))
                if prefix[0] in TITLE_SMALL:
                    forms.add(tuple(prefix[1:]))
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


class _Text:
    """A line's words (normalised), whether each was capitalised, and the clause each is in."""

    def __init__(self, text: str):
        raw = _ascii(text)
        self.words: list[str] = []
        self.capital: list[bool] = []
        self.clause: list[int] = []
        clause, last = 0, 0
        for m in _WORD.finditer(raw):
            if _CLAUSE_BREAK.search(raw[last : m.start()]):
                clause += 1
            word = m.group(0).lower()
            if word == "but":
                clause += 1
            self.words.append(word)
            self.capital.append(m.group(0)[0].isupper())
            self.clause.append(clause)
            last = m.end()

    def spans(self, title: str) -> list[tuple[int, int]]:
        """Where ``title`` is named: (start, end) word spans."""
        out = []
        for form in title_forms(title):
            n = len(form)
            for i in range(len(self.words) - n + 1):
                if tuple(self.words[i : i + n]) == form and (n > 1 or self.capital[i]):
                    out.append((i, i + n))
        return out

    def names(self, title: str) -> bool:
        return bool(self.spans(title))


def names(text: str, title: str) -> bool:
    """Does ``text`` name the film ``title`` (module docstring: year, aka and trailing article
    handled, case and punctuation ignored, whole words; 4+ word titles also by their words up to
    the third significant one; a one-word title only when written with a capital)?"""
    return _Text(text).names(title)


def _cue_hits(words: list[str], cues: tuple[str, ...]) -> list[tuple[int, int]]:
    hits = []
    for cue in cues:
        cw = cue.split()
        for i in range(len(words) - len(cw) + 1):
            if words[i : i + len(cw)] == cw:
                hits.append((i, len(cw)))
    return hits


def _clause_polarity(words: list[str]) -> int:
    """Sum of the cue signs of one clause (phrases first, longest first; negation flips)."""
    cues = sorted([(i, n, 1) for i, n in _cue_hits(words, POSITIVE)] + [(i, n, -1) for i, n in _cue_hits(words, NEGATIVE)],
                  key=lambda h: (-h[1], h[0]))
    used: set[int] = set()
    total = 0
    for i, n, sign in cues:
        span = set(range(i, i + n))
        if span & used:
            continue
        if n == 1 and words[i] == "like" and (i == 0 or words[i - 1] not in LIKE_AFTER):
            continue  # a comparison: "a comedy like Aladdin"
        used |= span
        if n == 1 and any(w in NEGATIONS for w in words[max(0, i - 3) : i]):
            sign = -sign
        total += sign
    return total


def polarity(text: str) -> int:
    """-1, 0 or +1: the sign of the line's summed cues (rule F3)."""
    t = _Text(text)
    return _polarity(t, set())


def _polarity(t: _Text, blanked: set[int]) -> int:
    clauses: dict[int, list[str]] = {}
    for i, (w, c) in enumerate(zip(t.words, t.clause)):
        if i not in blanked:
            clauses.setdefault(c, []).append(w)
    total = sum(_clause_polarity(ws) for ws in clauses.values())
    return (total > 0) - (total < 0)


def _off_world(words: list[str]) -> list[str]:
    found = []
    for term in OFF_WORLD:
        tw = term.split()
        if any(words[i : i + len(tw)] == tw for i in range(len(words) - len(tw) + 1)):
            found.append(term)
    return found


class Faithfulness(BaseModel):
    """The check of one line (rules F1-F5 of `simulator.faithfulness`)."""

    parsed: bool = Field(description="False when the utterance has no word to read: unparseable, never faithful")
    names_chosen: bool | None = Field(None, description="F1: names a chosen item; None when nothing was chosen")
    names_passed: list[str] = Field(default_factory=list, description="F2: titles of slate items not chosen it names")
    sentiment: int = Field(0, description="the line's polarity, -1, 0 or +1")
    sentiment_agrees: bool | None = Field(None, description="F3: polarity 0 or the decision's sign")
    reason: bool | None = Field(None, description="F4: gives a reason that is in the evidence; None if unparsed")
    degenerate: list[str] = Field(default_factory=list, description="F5: why the line is degenerate")
    faithful: bool | None = Field(None, description="None iff unparseable; else every rule holds")

    def reasons(self) -> list[str]:
        """One line per failed rule ("F2: names 'Heat', which was passed over"); [] for a faithful line."""
        if not self.parsed:
            return ["F0: the utterance has no word to read (unparseable)"]
        out = []
        if self.names_chosen is False:
            out.append("F1: does not name what was chosen")
        out += [f"F2: names {t!r}, which was passed over" for t in self.names_passed]
        if self.sentiment_agrees is False:
            out.append(f"F3: sounds {'positive' if self.sentiment > 0 else 'negative'}, against the decision")
        if self.reason is False:
            out.append("F4: gives no reason from the evidence (a genre of the chosen, a film the user liked)")
        out += [f"F5: degenerate: {d}" for d in self.degenerate]
        return out


def faithfulness(line: Turn, *, evidence: Sequence[str] = ()) -> Faithfulness:
    """Rules F1-F5 (module docstring) on one line. The evidence is the line's own ``evidence``
    (`simulator.turn.TurnCore.evidence`) plus ``evidence``: titles the line may cite as a reason."""
    text = _Text(line.utterance or "")
    if not any(any(c.isalpha() for c in w) for w in text.words):
        return Faithfulness(parsed=False)
    cited = list(dict.fromkeys([*line.evidence, *evidence]))
    chosen = [it for it in line.slate if it.id in line.chosen]
    passed = [it for it in line.slate if it.id not in line.chosen]
    spans = {title: text.spans(title) for title in [it.title for it in line.slate] + cited}
    blanked = {i for found in spans.values() for a, b in found for i in range(a, b)}

    def named(title: str) -> bool:  # a span inside a longer title's span is that title ("Terminator 2: ...")
        return any(not any(c <= a and b <= d and d - c > b - a for other, found in spans.items() if other != title
                           for c, d in found) for a, b in spans[title])

    names_chosen = any(named(it.title) for it in chosen) if chosen else None
    names_passed = [it.title for it in passed if named(it.title)]

    sentiment = _polarity(text, blanked)
    if chosen:
        rated = [line.ratings[it.id] for it in chosen if it.id in line.ratings]
        mean = sum(rated) / len(rated) if rated else 4.0
        expected = (mean > 3) - (mean < 3)
    else:
        expected = -1
    agrees = sentiment == 0 or expected == 0 or sentiment == expected

    rest = [w for i, w in enumerate(text.words) if i not in blanked]
    genres = sorted({v for it in (chosen or line.slate) for k, vs in it.facets.items() if k != "year" for v in vs})
    reason = bool(concepts_in(" ".join(rest), genres)) or any(named(t) for t in cited)

    degenerate = [f"{w!r} {n} times" for w, n in Counter(text.words).most_common() if n >= 4 and w not in STOPWORDS]
    runs = [(w, len(list(g))) for w, g in groupby(text.words)]
    degenerate += [f"{w!r} {n} times in a row" for w, n in runs if n >= 4 and w in STOPWORDS]
    degenerate += [f"talks of {term!r}" for term in _off_world(rest)]
    faithful = (names_chosen is not False and not names_passed and agrees and reason and not degenerate)
    return Faithfulness(parsed=True, names_chosen=names_chosen, names_passed=names_passed, sentiment=sentiment,
                        sentiment_agrees=agrees, reason=reason, degenerate=degenerate, faithful=faithful)


def faithfulness_of(line: Turn) -> dict[str, Any]:
    """`faithfulness` of a line as a plain dict, for a caller that stores the parts (e.g. in a turn's ``meta``)."""
    return faithfulness(line).model_dump()
