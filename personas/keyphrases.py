"""Class-based TF-IDF key phrases (c-TF-IDF, as in BERTopic) with scikit-learn.

All documents of a class are one "super document". For term t and class c:
``tf(t,c)`` = count / words in c (L1), ``idf(t)`` = log(1 + A / f(t)) with A the mean
words per class and f(t) the count of t over all classes. The top-scoring 1-2 word
phrases of a class are its key phrases; they come from the class's own text, so each
traces to the class's documents.

A phrase must also be over-represented in its class (rate above its pooled rate), and
review filler (``GENERIC``: love, like, really, ...) is a stop word.

Likes of persona c = top phrases of c's not-low-rated text, classes = the K personas.
Dislikes of c = top phrases of c's low-rated text with classes = (c not low, c low): what
these people complain about more than they praise, minus any word of a like. "Low-rated" = rating <= the corpus's low bound (e.g. 1-2 stars); with no rating
field, a document is low when it has more negative than positive words (small lexicon
in personas.traits).

MovieLens users (``whole_lines``): the terms are whole movie titles (one per line of the
positive / negative text), so likes read "Star Wars", not "star" and "wars".
"""

from __future__ import annotations

import numpy as np

MIN_DF = 2
#: Review filler that carries no subtopic (added to scikit-learn's English stop words).
GENERIC = frozenset("""love loved loves like liked likes just really it's i'm don't didn't doesn't isn't great
good nice look looks looked little bit lot wear wearing wore ordered order bought buy got get think way usually
definitely pretty super totally glad absolutely""".split())


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.split("\n") if x.strip()]


def ctfidf_top(class_texts: list[str], top_n: int = 8, min_df: int = MIN_DF, whole_lines: bool = False) -> list[list[str]]:
    """Top ``top_n`` phrases for each class text (empty list for an empty class).

    ``whole_lines``: each line of a class text is one phrase (e.g. a movie title), kept as written.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    nonempty = [t for t in class_texts if t.strip()]
    if not nonempty:
        return [[] for _ in class_texts]
    if whole_lines:
        vec = CountVectorizer(analyzer=_lines, lowercase=False)
    else:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        vec = CountVectorizer(ngram_range=(1, 2), stop_words=sorted(ENGLISH_STOP_WORDS | GENERIC), min_df=1,
                              token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z'\-]+\b")
    try:
        counts = vec.fit_transform(class_texts)  # (classes, vocab), sparse
    except ValueError:  # only stop words
        return [[] for _ in class_texts]
    counts = counts.astype(np.float64)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    term_freq = np.asarray(counts.sum(axis=0)).ravel()
    ok_terms = term_freq >= min_df
    avg_words = totals[totals > 0].mean()
    idf = np.log1p(avg_words / np.maximum(term_freq, 1))
    pooled_rate = term_freq / totals.sum()
    vocab = np.array(vec.get_feature_names_out())
    out: list[list[str]] = []
    for row, total in enumerate(totals):
        if total == 0:
            out.append([])
            continue
        tf = counts[row].toarray().ravel() / total
        score = tf * idf * ok_terms * (tf > pooled_rate)  # over-represented in the class only
        order = np.argsort(-score, kind="stable")
        picked: list[str] = []
        for idx in order:
            if score[idx] <= 0 or len(picked) >= top_n:
                break
            term = str(vocab[idx])
            if whole_lines:
                picked.append(term)
                continue
            words = term.split()
            if any(term in p.split() for p in picked):  # unigram already inside a picked bigram
                continue
            inside = [p for p in picked if p in words]
            if inside:  # a bigram extends a picked unigram: prefer the bigram ("star" -> "star wars")
                picked[picked.index(inside[0])] = term
                picked = [p for p in picked if p not in inside[1:]]
                continue
            picked.append(term)
        out.append(picked)
    return out


def likes_dislikes_split(pos_texts: list[str], neg_texts: list[str], labels: np.ndarray, clusters: list[int],
                         top_n: int = 6, whole_lines: bool = False) -> dict[int, tuple[list[str], list[str]]]:
    """{cluster: (likes, dislikes)} from c-TF-IDF over cluster x {positive text, negative text} classes.

    ``pos_texts[i]``/``neg_texts[i]``: document i's positive / negative part ("" when none);
    with ``whole_lines`` each is newline-separated phrases (e.g. movie titles).
    """
    sep = "\n" if whole_lines else " "
    class_texts = [sep.join(pos_texts[i] for i in np.flatnonzero(labels == c) if pos_texts[i]) for c in clusters]
    tops = ctfidf_top(class_texts, top_n=top_n, whole_lines=whole_lines)
    out = {}
    for n, c in enumerate(clusters):
        likes = tops[n]
        low = sep.join(neg_texts[i] for i in np.flatnonzero(labels == c) if neg_texts[i])
        # the cluster's low-rated text against its own other text: what these people complain about
        complaints = ctfidf_top([class_texts[n], low], top_n=top_n, whole_lines=whole_lines)[1] if low else []
        if whole_lines:
            dislikes = [p for p in complaints if p not in likes]
        else:
            like_words = {w for p in likes for w in p.split()}
            dislikes = [p for p in complaints if not set(p.split()) & like_words]  # no contradictions
        out[c] = (likes, dislikes)
    return out
