"""Grounding from real logs: the item space and the memories of grounded users, from TRAIN ratings only.

Every function here takes the training ratings explicitly (a `recsys.TimeSplit`'s
``train``, or its inner split's), so what a grounded user knows is exactly
what that split allows; `tests/test_grounding.py` and `tests/test_evals_fidelity.py`
prove that no held-out rating reaches a persona document, a memory, a prompt or a
calibration fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from personas.corpora import DISLIKED_MAX, LIKED_MIN, tidy_title  # LIKED_MIN etc.: the persona documents' thresholds
from personas.infra.files import file_sha256, write_whole
from simulator.evidence import CF_DIM, PERSONA_CANON, RECENT, ItemSpace, Memory, ease_weights, genre_profile

#: Shrinkage of an item's mean rating toward the global mean (pseudo-ratings).
ITEM_MEAN_SHRINK = 5.0


def heldout_pairs(ds, test: pd.DataFrame) -> set[tuple[str, str]]:
    """Raw (user id, item id) pairs of held-out ratings (what persona documents must leave out)."""
    uid = ds.users["user_id"].to_numpy()
    iid = ds.items["item_id"].to_numpy()
    return {(str(uid[u]), str(iid[i])) for u, i in zip(test["user"].to_numpy(), test["item"].to_numpy())}


def outside(ds, split) -> pd.DataFrame:
    """Every rating of ``ds`` that is not in ``split``'s train part: its test part, a global split's dropped
    future, and for a validation split the test part of the split it was carved from."""
    key = ["user", "item", "timestamp"]
    merged = ds.ratings.merge(split.train[key].drop_duplicates(), on=key, how="left", indicator=True)
    return merged[merged["_merge"] == "left_only"].drop(columns="_merge")


def item_space(ds, train: pd.DataFrame) -> ItemSpace:
    """The catalog seen through ``train``: item vectors = L2-normalised item columns of the
    binary train "watched" matrix (any rating; item-kNN space), log popularity of the positives,
    shrunk mean ratings, the PureSVD item factors of that matrix (the cf feature; scikit-learn's
    TruncatedSVD, seeded, so the same train part gives the same factors on one machine) and its EASE
    item-item weights (the ease feature)."""
    from sklearn.decomposition import TruncatedSVD

    pos = train[train["rating"] >= LIKED_MIN]
    M = np.zeros((ds.n_items, ds.n_users), dtype=np.float32)
    M[train["item"].to_numpy(), train["user"].to_numpy()] = 1.0
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    vectors = M / np.maximum(norms, 1e-12)
    k = min(CF_DIM, min(M.shape) - 1)
    factors = TruncatedSVD(k, random_state=0).fit(M.T).components_.T  # [N, k]
    counts = np.bincount(pos["item"].to_numpy(), minlength=ds.n_items)
    glob = float(train["rating"].mean())
    n = np.bincount(train["item"].to_numpy(), minlength=ds.n_items)
    s = np.bincount(train["item"].to_numpy(), weights=train["rating"].to_numpy(float), minlength=ds.n_items)
    genres = [list(g) for g in ds.items["genres"]]
    space = ItemSpace(ids=[str(i) for i in ds.items["item_id"]], vectors=vectors, log_pop=np.log1p(counts.astype(float)),
                      mean_rating=(s + ITEM_MEAN_SHRINK * glob) / (n + ITEM_MEAN_SHRINK), genres=genres,
                      titles=[f"{tidy_title(str(t))} ({y})" if str(y) else tidy_title(str(t))
                              for t, y in zip(ds.items["title"], ds.items["year"])], genre_prior={},
                      factors=factors.astype(np.float64), ease=ease_weights(M.T))
    space.genre_prior = genre_profile(space, pos["item"].to_numpy())
    return space


def memories(ds, train: pd.DataFrame, persona_of: dict[str, str], space: ItemSpace) -> dict[str, Memory]:
    """'twin:<raw user id>' for every user with a persona and training ratings, and 'persona:<id>'
    for every persona: its canon (most-liked items of its members) and members' mean rating."""
    uid = ds.users["user_id"].astype(str).to_numpy()
    by_user = {u: g.sort_values(["rating", "timestamp"], ascending=[False, False], kind="stable")
               for u, g in train.groupby("user")}
    members: dict[str, list[int]] = {}
    for u in by_user:
        pid = persona_of.get(uid[u])
        if pid is not None:
            members.setdefault(pid, []).append(u)
    out: dict[str, Memory] = {}
    shares: dict[str, np.ndarray] = {}
    taste = {u: space.factors[g["item"].to_numpy()].sum(0) for u, g in by_user.items()}
    for pid, users in sorted(members.items()):
        likes = np.zeros(ds.n_items)
        watched = np.zeros(ds.n_items)
        ratings = []
        for u in users:
            g = by_user[u]
            likes[g.loc[g["rating"] >= LIKED_MIN, "item"].to_numpy()] += 1
            watched[g["item"].to_numpy()] += 1
            ratings.append(g["rating"].to_numpy())
        share = likes / len(users)
        shares[pid] = share
        canon = np.lexsort((-space.log_pop, -share))[:PERSONA_CANON]
        canon = canon[share[canon] > 0]
        out[f"persona:{pid}"] = Memory(key=f"persona:{pid}", kind="persona", persona_id=pid, liked=canon,
                                       disliked=np.zeros(0, dtype=np.int64), recent=canon[:RECENT],
                                       mean_rating=float(np.concatenate(ratings).mean()), persona_share=share,
                                       taste=np.mean([taste[u] for u in users], axis=0),
                                       watched=watched / len(users))
    for u, g in by_user.items():
        pid = persona_of.get(uid[u])
        if pid is None:
            continue
        out[f"twin:{uid[u]}"] = Memory(
            key=f"twin:{uid[u]}", kind="twin", persona_id=pid,
            liked=g.loc[g["rating"] >= LIKED_MIN, "item"].to_numpy(np.int64),
            disliked=g.loc[g["rating"] <= DISLIKED_MAX, "item"].to_numpy(np.int64)[::-1],
            recent=g.sort_values(["timestamp", "item"], kind="stable")["item"].to_numpy(np.int64)[-RECENT:],
            mean_rating=float(g["rating"].mean()), persona_share=shares[pid], taste=taste[u],
            watched=np.bincount(g["item"].to_numpy(), minlength=ds.n_items).clip(max=1).astype(np.float32))
    return out


def _assignment_rows(personas_dir: str | Path) -> list[dict]:
    """The rows of an extraction's assignments.jsonl that name a persona."""
    path = Path(personas_dir) / "assignments.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no assignments next to the personas (extract them with personasim)")
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    return [r for r in rows if r.get("persona_id") is not None]


def read_assignments(personas_dir: str | Path) -> dict[str, str]:
    """{document id: persona id} (assigned and duplicate rows)."""
    return {str(r["doc_id"]): r["persona_id"] for r in _assignment_rows(personas_dir)}


def persona_members(personas_dir: str | Path) -> dict[str, list[str]]:
    """{persona id: member document ids, most representative (highest similarity) first}."""
    out: dict[str, list[tuple[float, str]]] = {}
    for r in _assignment_rows(personas_dir):
        if r.get("status") == "assigned":
            out.setdefault(r["persona_id"], []).append((-(r.get("similarity") or 0.0), str(r["doc_id"])))
    return {pid: [d for _, d in sorted(v)] for pid, v in out.items()}


def file_hash(path: str | Path) -> str:
    """12 hex chars of a file's content (identifies a personas file for its calibration)."""
    return file_sha256(path)[:12]


class GroundingError(ValueError):
    """Personas, splits or calibrations that do not belong together; the message names the file."""


SPLIT_FILE = "split.json"


def extract_train_personas(ds, split, pdir: str | Path, *, k: int, seed: int, cache_dir=None,
                           show_progress: bool = True, source: str = "ml-100k-users") -> Path:
    """Personas from user documents rendered from ``split``'s TRAIN ratings only, written to ``pdir`` with
    ``split.json`` (the split they may be evaluated on). Returns the personas path. ``source``: 'ml-100k-users'
    (the MovieLens documents, `personas.corpora.ml100k_users`) or DATASET_USERS (``ds``'s own users,
    `dataset_documents`)."""
    from personas import extract_personas
    from personas.corpora import ml100k_users

    pdir = Path(pdir)
    if source == DATASET_USERS:
        result = _dataset_personas(ds, split.train, k=k, seed=seed, show_progress=show_progress)
    else:
        docs = ml100k_users(exclude=heldout_pairs(ds, outside(ds, split)))
        result = extract_personas(docs, k=k, seed=seed, cache_dir=cache_dir, show_progress=show_progress)
    result.write(pdir)
    write_split_record(pdir, split)
    return pdir / "personas.jsonl"


def write_split_record(pdir: str | Path, split) -> Path:
    """``split.json`` beside personas: which split's TRAIN part they were extracted from."""
    path = Path(pdir) / SPLIT_FILE
    return write_whole(path, json.dumps({"split": split.key, **split.recipe, "n_heldout": int(len(split.test))}) + "\n")


def split_of(personas_path: str | Path) -> dict:
    """The split record beside a personas file; GroundingError when there is none."""
    path = Path(personas_path).parent / SPLIT_FILE
    if not path.is_file():
        raise GroundingError(f"{personas_path}: no {SPLIT_FILE} beside it, so nothing says which ratings these "
                             "personas saw; extract them with `personasim personas extract ml-100k-users --holdout 0.2`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        record["split"], record["holdout"]
    except (ValueError, KeyError, TypeError):
        raise GroundingError(f"{path}: not a personasim split record") from None
    return record


def split_for(ds, personas_path: str | Path):
    """The split a personas file was extracted from, rebuilt on ``ds`` (a record without a kind is of the per-user
    split, as every record was before the global one); GroundingError when the rebuilt split is not the one
    recorded (another data set, or another version of it)."""
    from recsys.time_splits import make_split

    record = split_of(personas_path)
    split = make_split(ds, record.get("kind") or "per-user", float(record["holdout"]), record.get("cut"),
                       int(record.get("validation") or 0))
    if split.key != record["split"]:
        raise GroundingError(f"{Path(personas_path).parent / SPLIT_FILE}: of split {record['split']}, but this "
                             f"data set gives {split.key}")
    return split


# -- a campaign's own data set --------------------------------------------------------------------------------------

#: The persona source of a campaign's own data set (`recsys.dataset`): one document per user.
DATASET_USERS = "dataset-users"


def explicit_ratings(ds) -> bool:
    """Whether ``ds`` has explicit ratings on the simulated users' 1-5 scale: at least two distinct values, all
    within [1, 5]. False for an implicit log (`recsys.atomic`: every interaction 5, a label's shown-but-not-chosen
    rows 0), on which nothing like-given-watched can be fitted."""
    r = ds.ratings["rating"]
    return bool(r.nunique() >= 2 and r.min() >= 1 and r.max() <= 5)


def implicit_log(ds) -> bool:
    """Whether ``ds`` is an implicit log as `recsys.atomic` reads one: every rating 5 (an interaction) or 0 (a
    label's shown-but-not-chosen row), and at least one 5. Grounded users are calibrated on such a log without
    ratings (`evals.validity.calibration`: affinity and take level only); any other scale that is not
    `explicit_ratings` (e.g. 1-10) is neither, and refused."""
    values = set(ds.ratings["rating"].unique().tolist())
    return not explicit_ratings(ds) and values <= {0.0, 5.0} and 5.0 in values


def dataset_documents(ds, train: pd.DataFrame):
    """``ds``'s users as persona documents, rendered from ``train`` (rows of ``ds.ratings``) only:
    `personas.corpora.interaction_users` (titles, genres or categories, and whatever demographics ``ds.users``
    holds; dislikes only with `explicit_ratings`). The corpus is named 'NAME-users[train]', or 'NAME-users' when
    ``train`` is every interaction."""
    from personas.corpora import interaction_users

    whole = len(train) == len(ds.ratings)
    return interaction_users(train, ds.items, ds.users, name=f"{ds.name}-users{'' if whole else '[train]'}",
                             explicit=explicit_ratings(ds))


#: Factors of a user's behaviour vector (`behaviour_vectors`).
BEHAVIOUR_DIM = 32


def behaviour_vectors(ds, rows: pd.DataFrame, user_ids: list[str], seed: int) -> np.ndarray:
    """What each user of ``user_ids`` (raw ids) did in ``rows`` (rows of ``ds.ratings``), as a unit vector
    [len(user_ids), d]: their row of a seeded TruncatedSVD (up to BEHAVIOUR_DIM factors) of the binary user x item
    matrix of ``rows``' positives (rating >= LIKED_MIN). A user without a positive has the zero vector.

    DATASET_USERS personas cluster on these, not on the documents' words: a log's items are often ids ("product
    196", "category_07"), and MiniLM puts such documents within the pipeline's near-duplicate cosine of each other
    (Instacart's 586 user documents: mean pairwise cosine 0.975, all but 3 removed as duplicates)."""
    import scipy.sparse as sp
    from sklearn.decomposition import TruncatedSVD

    pos = rows[rows["rating"] >= LIKED_MIN].drop_duplicates(["user", "item"])
    M = sp.csr_matrix((np.ones(len(pos), dtype=np.float32), (pos["user"].to_numpy(), pos["item"].to_numpy())),
                      shape=(ds.n_users, ds.n_items))
    d = max(1, min(BEHAVIOUR_DIM, ds.n_items - 1, ds.n_users - 1))
    U = TruncatedSVD(d, random_state=seed).fit_transform(M)
    U /= np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)
    index = {u: i for i, u in enumerate(ds.users["user_id"].astype(str))}
    return U[[index[u] for u in user_ids]]


def _dataset_personas(ds, rows: pd.DataFrame, *, k: int, seed: int, show_progress: bool):
    """`personas.extract_personas` of ``ds``'s users: their documents rendered from ``rows``
    (`dataset_documents`), clustered on what they did there (`behaviour_vectors`)."""
    from personas import extract_personas

    docs = dataset_documents(ds, rows)
    vectors = behaviour_vectors(ds, rows, [d.id for d in docs.documents], seed)
    return extract_personas(docs, k=k, seed=seed, show_progress=show_progress, vectors=vectors,
                            vectors_model=f"behaviour: SVD-{vectors.shape[1]} of train positives")


def document_split(ds, kind: str, holdout: float | None):
    """The split whose TRAIN part a DATASET_USERS extraction renders, or None when there is none:
    - with ``holdout`` and `explicit_ratings` or an `implicit_log`: ``recsys.time_splits.make_split(ds, kind,
      holdout)``, the split grounded users are calibrated on, recorded in split.json as ml-100k-users' is (DataError
      when ``ds`` cannot have it: no timestamps, too few test users);
    - otherwise None: ``holdout`` None asks for every interaction; ratings on another scale have no such split
      (no grounded user can be calibrated on them)."""
    from recsys.time_splits import make_split

    return make_split(ds, kind, holdout) if holdout and (explicit_ratings(ds) or implicit_log(ds)) else None


def document_rows(ds, split, holdout: float | None) -> pd.DataFrame:
    """The interactions DATASET_USERS documents are rendered from: ``split``'s TRAIN part when there is a split
    (`document_split`); every interaction when ``holdout`` is None; on ratings of another scale, every interaction but
    what the campaign's recommenders are scored on (each user's leave-last-out test item, `recsys.leave_last_out`),
    so that no persona is made from an offline test item."""
    if split is not None:
        return split.train
    if not holdout:
        return ds.ratings
    from recsys import leave_last_out

    test = leave_last_out(ds)
    held = pd.MultiIndex.from_arrays([test.test_users, test.test_items])
    r = ds.ratings
    return r[~pd.MultiIndex.from_arrays([r["user"].to_numpy(), r["item"].to_numpy()]).isin(held)]


def extract_dataset_personas(ds, pdir: str | Path, *, kind: str, holdout: float | None, k: int, seed: int,
                             show_progress: bool = True) -> Path:
    """DATASET_USERS personas of ``ds`` in ``pdir``: with a `document_split`, `extract_train_personas` (split.json
    included); otherwise from `document_rows`, without split.json (so no grounded user can take them: `split_of`
    refuses). Returns the personas path. No text is embedded (`behaviour_vectors`), so there is no cache."""
    split = document_split(ds, kind, holdout)
    if split is not None:
        return extract_train_personas(ds, split, pdir, k=k, seed=seed, show_progress=show_progress,
                                      source=DATASET_USERS)
    _dataset_personas(ds, document_rows(ds, None, holdout), k=k, seed=seed, show_progress=show_progress).write(pdir)
    return Path(pdir) / "personas.jsonl"
