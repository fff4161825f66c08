"""Grounded evidence: what a simulated user knows from real training logs, as numbers per item.

A grounded user (`simulator.grounded`) decides from features that can be
written down. The seven evidence features of an item j for a user with memory m:

- ``history``: item-kNN affinity to the user's remembered likes: the mean of the
  ``KNN`` largest cosines between j and the liked items, in the item space
  (`ItemSpace.vectors`: the item columns of the train "watched" matrix, any rating);
- ``recent``: the mean cosine between j and the ``RECENT`` items the user rated last
  (any rating): tastes drift, and what comes next resembles what came just before;
- ``persona``: log(share of the persona's members who liked j in train + 0.01).
- ``genre``: mean over j's genres of log(lift), lift = the genre's share of the
  memory's liked genre mass / its share over all training likes (smoothed).
- ``popularity``: log(1 + training positives of j).
- ``cf``: where j ranks in the memory's own collaborative-filtering ranking of the whole
  catalog, as a percentile (1 = its top item): PureSVD (Cremonesi et al., 2010), i.e.
  score_j = v_j . q with ``ItemSpace.factors`` v (the top ``CF_DIM`` right singular vectors
  of the train "watched" matrix) and the memory's ``taste`` q (the sum of the factors of
  the items it rated; a persona: the mean over its members). A percentile is on the same
  scale for every user, whatever the length of their history.
- ``ease``: where j ranks in the memory's EASE ranking of the catalog, as a percentile:
  EASE (Steck, 2019) is the closed-form item-item model B = argmin ||X - XB||^2 + lambda ||B||^2,
  diag(B) = 0, on the train "watched" matrix X (``ItemSpace.ease``), and score_j = w . B[:, j]
  for the memory's ``watched`` row w (a twin: 1 for each item it rated in train; a persona: the
  share of its members who rated it). PureSVD sees the catalog through 16 factors; EASE keeps
  every item-item weight, and on validation it adds to the others (benchmarks/ease_feature.py).

How much each of these seven says depends on how much the user has rated: a long history
makes its own-history features (ease, cf, history) sharper and its taste further from the
crowd's (popularity). So the evidence also carries

- ``n_rated``: log(1 + the number of items the memory rated in train) (a persona: the
  mean of that number over its members, then the log), and
- ``<feature>*n_rated`` for each of the seven: the product of the two, so that each
  feature's weight in the logistic decision is linear in ``n_rated``.

On the calibration's validation rows (benchmarks/twin_ceiling.py, 3 draws) fitted on 300
users, they lifted popularity-matched AUC 0.787 -> 0.795 (every draw: +0.004 to +0.011) and
uniform 1:1 accuracy 0.845 -> 0.851 (two draws of three); fitted on 150 users, +0.005 and
+0.001 (more weights need more rows: `personasim calibrate` fits 300 users by default).
The user's like rate, or the item's popularity in the last 30 days and the film's age,
tried beside them, are within the draws' spread and left out.

A user's ratings drift towards less known films as the user goes on (the share of likes
falls, and the films liked last have fewer ratings: benchmarks/period_gap.py), and how far a
user has gone shows in what it rated last. So the evidence also carries

- ``recent_pop``: the mean popularity (log(1 + train positives)) of the ``RECENT`` items the
  memory rated last (a persona: its canon's head), and
- ``popularity*recent_pop``: the item's popularity times it, so that popularity's weight in
  the decision is linear in how well known the user's latest films are.

On the same validation rows (3 draws, 300 fitted users) they lifted popularity-matched AUC
0.795 -> 0.810 and uniform 1:1 accuracy 0.851 -> 0.856; over six draws, matched AUC rose in
every one (+0.014 to +0.016) and accuracy in four (-0.002 to +0.011).

A *twin* remembers one real user's own training ratings; a *persona-level*
user remembers its persona's canon: the ``PERSONA_CANON`` items most liked by
the persona's members in train. The last feature, ``llm`` (the LLM's
judgement read from token log-probabilities), is added by `simulator.grounded`.

Everything here is built from a training split only (evals/ builds it;
simulator/ never imports recsys).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ITEM_EVIDENCE = ("history", "recent", "persona", "genre", "popularity", "cf", "ease")
N_RATED = "n_rated"
RECENT_POP = "recent_pop"
EVIDENCE = (ITEM_EVIDENCE + (N_RATED,) + tuple(f"{f}*{N_RATED}" for f in ITEM_EVIDENCE)
            + (RECENT_POP, f"popularity*{RECENT_POP}"))
#: Neighbours averaged by the history feature; latest rated items of the recent feature.
KNN = 10
RECENT = 10
#: Items a persona-level user remembers as liked.
PERSONA_CANON = 30
#: Factors of the cf feature's PureSVD: the best popularity-matched AUC of 8/16/24/32/64 on the calibration's
#: inner (validation) split of ML-100k, never its test part (benchmarks/cf_factors.py).
CF_DIM = 16
#: L2 penalty of the ease feature's item-item model: the best sum of uniform 1:1 accuracy and popularity-matched AUC of
#: 100/250/500/1000/3000 on the inner (validation) split of ML-100k, never its test part (benchmarks/ease_feature.py).
EASE_LAMBDA = 1000.0
_GENRE_EPS = 1e-3


@dataclass
class ItemSpace:
    """The catalog as the training logs see it. N items, d dimensions.

    ids [N] raw item ids; vectors [N, d] L2-normalised (zero rows allowed: no signal);
    log_pop [N] log(1 + train positives); mean_rating [N] train mean rating shrunk to the
    global mean; genres [N] lists; titles [N] ('Title (year)'); genre_prior: share of each genre in all train likes;
    factors [N, k] the cf feature's item factors (k <= CF_DIM); ease [N, N] the ease feature's
    item-item weights (float32, zero diagonal).
    """

    ids: list[str]
    vectors: np.ndarray
    log_pop: np.ndarray
    mean_rating: np.ndarray
    genres: list[list[str]]
    titles: list[str]
    genre_prior: dict[str, float]
    factors: np.ndarray
    ease: np.ndarray
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def describe(self, i: int) -> str:
        """How an item is named to the LLM judge: 'Title (year) - Genre, Genre'."""
        return f"{self.titles[i]} - {', '.join(self.genres[i])}" if self.genres[i] else self.titles[i]

    def index(self, ids) -> np.ndarray:
        """Raw ids -> row indices; an unknown id raises KeyError naming it."""
        if not self._index:
            self._index = {i: n for n, i in enumerate(self.ids)}
        try:
            return np.asarray([self._index[str(i)] for i in ids], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"item id {exc.args[0]!r} is not in the item space") from None


@dataclass
class Memory:
    """What one simulated user remembers (from train only).

    kind: 'twin' (one real user's history) or 'persona' (the persona's canon).
    liked [L] item indices remembered as liked (rating >= 4), best first; disliked [D] (rating <= 2);
    recent [R] the latest rated items (any rating; for a persona: its canon's head);
    mean_rating: the user's (or members') mean training rating; persona_share [N]: share of
    the persona's members who liked each item in train; taste [k]: the memory's point in the cf factor
    space (sum of the factors of its train-rated items; a persona: the mean of its members');
    watched [N]: 1 for each item rated in train (a persona: the share of its members who rated it).
    """

    key: str
    kind: str
    persona_id: str
    liked: np.ndarray
    disliked: np.ndarray
    recent: np.ndarray
    mean_rating: float
    persona_share: np.ndarray
    taste: np.ndarray
    watched: np.ndarray

    def titles(self, space: ItemSpace, n_liked: int = 8, n_disliked: int = 3) -> tuple[list[str], list[str]]:
        return ([space.titles[i] for i in self.liked[:n_liked]], [space.titles[i] for i in self.disliked[:n_disliked]])


def genre_profile(space: ItemSpace, items: np.ndarray) -> dict[str, float]:
    """Share of each genre in ``items`` (unit weight per item split over its genres)."""
    counts: dict[str, float] = {}
    for i in items:
        gs = space.genres[int(i)]
        for g in gs:
            counts[g] = counts.get(g, 0.0) + 1.0 / len(gs)
    total = sum(counts.values())
    return {g: c / total for g, c in counts.items()} if total else {}


def evidence_features(space: ItemSpace, memory: Memory, items: np.ndarray) -> np.ndarray:
    """The EVIDENCE features [M, 17] of item indices ``items`` [M] for ``memory``: the seven item
    features, n_rated, each item feature times n_rated, recent_pop and popularity times recent_pop
    (module docstring)."""
    items = np.asarray(items, dtype=np.int64)
    V = space.vectors
    if len(memory.liked):
        sims = V[items] @ V[memory.liked].T  # [M, L]
        k = min(KNN, sims.shape[1])
        history = np.sort(sims, axis=1)[:, -k:].mean(1)
    else:
        history = np.zeros(len(items))
    recent = (V[items] @ V[memory.recent].T).mean(1) if len(memory.recent) else np.zeros(len(items))
    persona = np.log(memory.persona_share[items] + 0.01)
    profile = genre_profile(space, memory.liked)
    genre = np.array([
        np.mean([np.log((profile.get(g, 0.0) + _GENRE_EPS) / (space.genre_prior.get(g, 0.0) + _GENRE_EPS))
                 for g in space.genres[i]]) if space.genres[i] else 0.0
        for i in items
    ])
    X = np.column_stack([history, recent, persona, genre, space.log_pop[items], cf_percentile(space, memory)[items],
                         ease_percentile(space, memory)[items]]).astype(np.float64)
    n_rated = np.log1p(float(np.sum(memory.watched)))
    recent_pop = float(space.log_pop[memory.recent].mean()) if len(memory.recent) else float(space.log_pop.mean())
    return np.column_stack([X, np.full(len(items), n_rated), X * n_rated,
                            np.full(len(items), recent_pop), space.log_pop[items] * recent_pop])


def factors(feature: str) -> tuple[str, str]:
    """An evidence feature's name as (its first factor, the one it is multiplied by, '' for none):
    'ease*n_rated' -> ('ease', 'n_rated'), 'popularity*recent_pop' -> ('popularity', 'recent_pop'),
    'ease' -> ('ease', '')."""
    base, _, times = feature.partition("*")
    return base, times


def sources(features: list[str]) -> dict[str, list[int]]:
    """Which columns of ``features`` belong to each source of evidence: an item feature's own column
    and its products; n_rated's column and every product with it; recent_pop's column and its product
    with popularity; any other feature (``llm``) alone.
    What `personasim calibrate` leaves out, one source at a time, to say what each contributes."""
    out: dict[str, list[int]] = {}
    for j, f in enumerate(features):
        base, times = factors(f)
        out.setdefault(base, []).append(j)
        if times:
            out.setdefault(times, []).append(j)
    return {k: sorted(v) for k, v in out.items()}


def cf_percentile(space: ItemSpace, memory: Memory) -> np.ndarray:
    """[N] each item's percentile in the memory's PureSVD ranking of the catalog (1 = top; ties by index)."""
    return percentile(space.factors @ memory.taste)


def ease_percentile(space: ItemSpace, memory: Memory) -> np.ndarray:
    """[N] each item's percentile in the memory's EASE ranking of the catalog (1 = top; ties by index)."""
    return percentile(memory.watched.astype(np.float32) @ space.ease)


def ease_weights(watched: np.ndarray, lam: float = EASE_LAMBDA) -> np.ndarray:
    """EASE's closed form (Steck, 2019) for a users x items 0/1 matrix: P = (X'X + lambda I)^-1,
    B = -P / diag(P) column-wise, diag(B) = 0. [N, N] float32."""
    X = np.asarray(watched, dtype=np.float64)
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B.astype(np.float32)


def percentile(scores: np.ndarray) -> np.ndarray:
    """[N] each entry's rank percentile (1 = the highest score; ties by index)."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(len(scores))
    return ranks / max(len(scores) - 1, 1)
