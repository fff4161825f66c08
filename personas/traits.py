"""Big Five estimates from a small word lexicon (a documented heuristic, not a classifier).

For each trait there is a short list of words that signal the high pole and one for the
low pole (LIWC-inspired, hand-picked for review/forum text). A document's score is
(high hits - low hits) / words. A persona's trait value is
``sigmoid(4 * (mean over its documents - corpus mean) / corpus std)``: 0.5 = the corpus
average, 0.73 = a quarter standard deviation above it. These are relative estimates
within one corpus, nothing more.
"""

from __future__ import annotations

import re

import numpy as np

LEXICON: dict[str, tuple[set[str], set[str]]] = {
    "openness": (
        {"new", "different", "unique", "creative", "art", "artistic", "interesting", "curious", "imagine",
         "style", "unusual", "explore", "idea", "ideas", "vintage", "bohemian", "experiment", "quirky",
         "fun", "original", "documentary", "foreign", "classic"},
        {"usual", "traditional", "simple", "basic", "standard", "plain", "familiar", "safe", "boring"},
    ),
    "conscientiousness": (
        {"careful", "plan", "organized", "measured", "measurements", "exact", "quality", "detail", "details",
         "precise", "checked", "always", "work", "washed", "wash", "fits", "tailored", "length", "inches"},
        {"lazy", "whatever", "forgot", "messy", "random", "careless", "impulse", "sloppy"},
    ),
    "extraversion": (
        {"party", "fun", "friends", "compliments", "excited", "exciting", "wedding", "dance", "bright",
         "wow", "amazing", "love", "bold", "statement", "night", "action", "adventure"},
        {"quiet", "alone", "home", "calm", "subtle", "lounge", "lounging", "simple", "understated"},
    ),
    "agreeableness": (
        {"love", "lovely", "thank", "happy", "nice", "kind", "sweet", "wonderful", "great", "perfect",
         "recommend", "beautiful", "comfortable", "glad"},
        {"hate", "terrible", "awful", "horrible", "worst", "rude", "ugly", "cheap", "waste", "returned",
         "return", "returning", "stupid"},
    ),
    "neuroticism": (
        {"worried", "disappointed", "disappointing", "afraid", "unfortunately", "sadly", "anxious", "upset",
         "frustrated", "itchy", "uncomfortable", "sad", "nervous", "worry", "horror", "scared", "unflattering"},
        {"relaxed", "calm", "confident", "easy", "happy", "comfortable", "effortless"},
    ),
}
NEGATIVE = LEXICON["agreeableness"][1] | LEXICON["neuroticism"][0] | {"not", "poor", "bad", "disappointment"}
POSITIVE = LEXICON["agreeableness"][0] | {"good", "best", "favorite", "favourite", "loves"}

_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def doc_scores(texts: list[str]) -> np.ndarray:
    """(n, 5) lexicon scores per document, traits in LEXICON order."""
    out = np.zeros((len(texts), len(LEXICON)), dtype=np.float64)
    for i, text in enumerate(texts):
        ws = words(text)
        if not ws:
            continue
        for j, (high, low) in enumerate(LEXICON.values()):
            out[i, j] = (sum(w in high for w in ws) - sum(w in low for w in ws)) / len(ws)
    return out


def is_negative(texts: list[str]) -> np.ndarray:
    """(n,) bool: more negative than positive lexicon words (the 'low' fallback without ratings)."""
    res = []
    for text in texts:
        ws = words(text)
        res.append(sum(w in NEGATIVE for w in ws) > sum(w in POSITIVE for w in ws))
    return np.array(res, dtype=bool)


def persona_traits(scores: np.ndarray, labels: np.ndarray, cluster: int) -> dict[str, float]:
    """Trait values in [0, 1] for one cluster, relative to the corpus (see module doc)."""
    mean, std = scores.mean(axis=0), scores.std(axis=0)
    own = scores[labels == cluster].mean(axis=0)
    z = np.where(std > 0, (own - mean) / np.where(std > 0, std, 1.0), 0.0)
    vals = 1.0 / (1.0 + np.exp(-4.0 * z))
    return {name: round(float(v), 4) for name, v in zip(LEXICON, vals)}
