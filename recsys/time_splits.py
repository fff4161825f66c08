"""Time splits, what fidelity and calibration are measured on: each user's latest ratings held out
(`time_split`, per-user), or one cut time for everyone (`global_split`, leave-future-out, the default);
`make_split` builds either by name, and a split's ``recipe`` rebuilds it. Development reads a split's
validation part (`TimeSplit.inner`), carved before its cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data import DataError, Dataset, _csr


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
    timestamp on each (not all equal) and a positive (rating >= 4) to hold out; DataError of one line naming the data
    set. An implicit log (every interaction 5) is one: its test part is what its users went on to take."""
    r = ds.ratings
    if r.empty:
        raise DataError(f"{ds.name}: no interactions")
    if r["timestamp"].isna().any() or r["timestamp"].nunique() < 2:
        raise DataError(f"{ds.name}: a time split needs a timestamp on every interaction")
    if not (r["rating"] >= 4).any():
        raise DataError(f"{ds.name}: no interaction is a positive (rating >= 4); a fidelity test holds positives out")
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
