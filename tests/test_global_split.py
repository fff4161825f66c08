"""Leave-future-out (issue 36): one cut time for everyone, a validation cut before it, and nothing fitted reads a
rating at or after the cut."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys import DataError, load_movielens
from recsys.data import Dataset
from recsys.time_splits import MIN_GLOBAL_TEST_USERS, global_split, make_split


@pytest.fixture(scope="module")
def ds():
    from personas.infra.assets import ml100k_dir

    return load_movielens(ml100k_dir())


def test_one_cut_for_everyone_and_test_users_with_history_before_and_a_positive_after(ds):
    split = global_split(ds, 0.2)
    assert split.train["timestamp"].max() < split.cut <= min(split.test["timestamp"].min(),
                                                             split.dropped["timestamp"].min())
    assert len(split.train) + len(split.test) + len(split.dropped) == len(ds.ratings)
    assert abs(len(ds.ratings[ds.ratings["timestamp"] >= split.cut]) / len(ds.ratings) - 0.2) < 0.001
    before = split.train.groupby("user").size()
    for u, g in split.test.groupby("user"):
        assert before.get(u, 0) >= 5 and (g["rating"] >= 4).any()
    assert not set(split.dropped["user"]) & set(split.test["user"])
    assert split.test["user"].nunique() >= MIN_GLOBAL_TEST_USERS
    assert split.key.startswith("ml-100k:global-cut-1998-")


@pytest.mark.parametrize("kind", ["global", "per-user"])
def test_the_validation_split_is_carved_from_train_and_both_rebuild_from_their_recipe(ds, kind):
    split = make_split(ds, kind, 0.2)
    val = split.inner()
    assert make_split(ds, **split.recipe).key == split.key and make_split(ds, **val.recipe).key == val.key
    assert val.key != split.key and val.recipe["validation"]
    pairs = lambda frame: set(zip(frame["user"], frame["item"]))  # noqa: E731
    assert pairs(val.train) | pairs(val.test) <= pairs(split.train)  # validation never sees the test part
    deeper = val.inner()  # the split a calibration of validation personas fits on
    assert make_split(ds, **deeper.recipe).key == deeper.key and deeper.recipe["validation"] == 2
    if kind == "global":
        assert deeper.cut < val.cut < split.cut and val.train["timestamp"].max() < val.cut


def test_a_cut_outside_the_data_or_too_late_is_refused_in_one_line(ds):
    with pytest.raises(DataError, match="outside the data"):
        global_split(ds, cut=float(ds.ratings["timestamp"].max()) + 1)
    late = float(np.quantile(ds.ratings["timestamp"], 0.9995))
    with pytest.raises(DataError, match=r"leaves \d+ test users .* at least 50 are needed: choose an earlier cut"):
        global_split(ds, cut=late)
    undated = Dataset(ds.ratings.assign(timestamp=np.nan), ds.items, ds.users, "undated")
    with pytest.raises(DataError, match="needs a timestamp on every interaction"):
        global_split(undated)


def _rewrite_the_future(ds, cut: float) -> Dataset:
    """``ds`` with every rating at or after ``cut`` changed: other items, flipped ratings, same times."""
    r = ds.ratings.copy()
    future = r["timestamp"] >= cut
    r.loc[future, "rating"] = 6.0 - r.loc[future, "rating"]
    r.loc[future, "item"] = (r.loc[future, "item"] + 7) % ds.n_items
    r = r.sort_values("timestamp", kind="stable").drop_duplicates(["user", "item"], keep="first")  # the past stays
    r = r.sort_index().reset_index(drop=True)
    return Dataset(r, ds.items, ds.users, ds.name)


def test_nothing_fitted_reads_a_rating_after_the_cut(ds, fidelity_run):
    """Rewrite every rating at or after the cut: the train part, the item statistics and factors and the memories
    come out identical, and persona documents leave out every such rating (and,
    for a validation split, everything from its own cut on)."""
    from evals.validity.grounding import heldout_pairs, item_space, memories, outside, read_assignments, split_for

    ppath = fidelity_run[0] / "personas" / "personas.jsonl"
    split = split_for(ds, ppath)
    assert split.kind == "global" and split.recipe["validation"]  # development reads validation
    changed = _rewrite_the_future(ds, split.of["cut"])
    again = split_for(changed, ppath)
    pd.testing.assert_frame_equal(split.train, again.train)
    a, b = item_space(ds, split.train), item_space(changed, again.train)
    for field in ("vectors", "log_pop", "mean_rating", "factors", "ease"):  # item statistics and factors
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.genre_prior == b.genre_prior
    persona_of = read_assignments(ppath.parent)
    assert memories(ds, split.train, persona_of, a).keys() == memories(changed, again.train, persona_of, b).keys()
    # the calibration rows: tests/test_evals_fidelity.py::test_calibration_never_reads_the_test_part
    uid, iid = ds.users["user_id"].astype(str).to_numpy(), ds.items["item_id"].astype(str).to_numpy()
    left_out = heldout_pairs(ds, outside(ds, split))
    after = ds.ratings[ds.ratings["timestamp"] >= split.cut]
    assert {(uid[u], iid[i]) for u, i in zip(after["user"], after["item"])} <= left_out
    assert len(left_out) == len(ds.ratings) - len(split.train)


def test_development_reads_validation_and_a_final_read_of_test_is_counted(fidelity_run, tmp_path):
    from evals.validity.read_ledger import counted_reads, record_test_read

    out, record = fidelity_run
    assert record["read"] == "validation" and record["split"].startswith("ml-100k:train:global-cut-")
    reads = tmp_path / "docs" / "results" / "test_reads.jsonl"
    assert counted_reads(reads) == []
    first = record_test_read(reads, {**record, "split": "ml-100k:global-cut-x"}, out)
    second = record_test_read(reads, {**record, "split": "ml-100k:global-cut-x"}, out)
    assert counted_reads(reads) == [first, second]  # append-only: a second read is kept and counted
    assert first["code"] and first["config_hash"] == record["config_hash"] and first["headline"] == record["headline"]


def test_a_campaigns_read_of_test_is_counted_where_the_ledger_lives(tmp_path, monkeypatch):
    """A campaign's fidelity check on personas of the outer split reads test: counted in the ledger when its folder
    exists (a checkout of this repository), nowhere else; a check on a validation split is not a test read."""
    from evals.validity.read_ledger import count_campaign_read, counted_reads, part_read
    from tests.test_grounding import small_dataset

    ds = small_dataset(n_users=60, n_items=30, per_user=12)
    outer = make_split(ds, "per-user", 0.2, None)
    assert part_read(outer) == "test" and part_read(outer.inner()) == "validation"
    record = {"source": "campaign", "read": "test", "config_hash": "abc", "split": outer.key, "headline": {}}
    elsewhere = tmp_path / "elsewhere" / "docs" / "results" / "test_reads.jsonl"
    monkeypatch.setenv("PERSONASIM_TEST_READS", str(elsewhere))
    assert count_campaign_read(record, tmp_path / "run") is None and not elsewhere.parent.exists()
    ledger = tmp_path / "test_reads.jsonl"
    monkeypatch.setenv("PERSONASIM_TEST_READS", str(ledger))
    assert count_campaign_read({**record, "read": "validation"}, tmp_path / "run") is None
    row = count_campaign_read(record, tmp_path / "run")
    assert counted_reads(ledger) == [row] and row["source"] == "campaign" and row["split"] == outer.key
