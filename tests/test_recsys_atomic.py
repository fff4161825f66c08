"""recsys/atomic.py: RecBole atomic folders read as a Dataset and written from one; the example scripts in
examples/atomic/; and `personasim recsys bench --dataset FOLDER` refusing a bad folder with one line."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from recsys.atomic import atomic_name, has_timestamps, load_atomic, read_atomic_file, write_atomic
from recsys.data import DataError, leave_last_out, load_movielens
from recsys.time_splits import time_split
from tests.cli_fixtures import ROOT, refused

INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "u1\ti1\t5\t1\nu1\ti2\t4\t2\nu1\ti3\t2\t3\nu2\ti1\t5\t4\nu2\ti3\t5\t5\nu3\ti2\t1\t6\nu3\ti4\t4\t7\n")
ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "i1\tThe First\t1990\tDrama Comedy\ni2\tSecond\t\tDrama\ni3\tThird  Film\t2001\t\ni4\tFourth\t2002\tSci-Fi\n")
USER = "user_id:token\tage:float\tjob:token\nu1\t24\tnurse\nu2\t\tartist\nu3\t51\t\n"


def toy(folder, name="toy", **files):
    """A small atomic folder; ``files`` maps an extension to its text (None: leave that file out)."""
    folder.mkdir(parents=True, exist_ok=True)
    for ext, text in {"inter": INTER, "item": ITEM, "user": USER, **files}.items():
        if text is not None:
            (folder / f"{name}.{ext}").write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


def _script(name: str):
    path = ROOT / "examples" / "atomic" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"atomic_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ml100k():
    from personas.infra.assets import ml100k_dir

    return ml100k_dir(), load_movielens(ml100k_dir())


def _same(a, b):
    pd.testing.assert_frame_equal(a.ratings, b.ratings)
    cols = ["item_id", "title", "year", "genres"]
    pd.testing.assert_frame_equal(a.items[cols], b.items[cols])
    pd.testing.assert_frame_equal(a.users, b.users)


# -- reading ------------------------------------------------------------------------------------------------------

def test_the_toy_folder_reads_with_every_field_where_it_belongs(tmp_path):
    ds = load_atomic(toy(tmp_path / "toy"))
    assert ds.name == "toy" and (ds.n_users, ds.n_items, len(ds.ratings)) == (3, 4, 7)
    assert ds.items["title"].tolist() == ["The First", "Second", "Third  Film", "Fourth"]  # as written
    assert ds.items["year"].tolist() == ["1990", "", "2001", "2002"]
    assert ds.items["genres"].tolist() == [["Drama", "Comedy"], ["Drama"], [], ["Sci-Fi"]]
    assert ds.users["user_id"].tolist() == ["u1", "u2", "u3"] and ds.users["job"].tolist() == ["nurse", "artist", ""]
    assert np.isnan(ds.users["age"].iloc[1]) and ds.users["age"].iloc[2] == 51.0
    assert ds.ratings["rating"].tolist() == [5, 4, 2, 5, 5, 1, 4] and has_timestamps(ds)
    split = leave_last_out(ds)
    assert ds.items["item_id"].to_numpy()[split.test_items].tolist() == ["i2", "i3"]  # u1's and u2's latest positive


def test_crlf_lines_a_byte_order_mark_and_blank_lines_are_tolerated(tmp_path):
    plain = load_atomic(toy(tmp_path / "plain"))
    windows = {ext: "\ufeff" + text.replace("\n", "\r\n\n")
               for ext, text in (("inter", INTER), ("item", ITEM), ("user", USER))}
    _same(load_atomic(toy(tmp_path / "windows", **windows)), plain)


def test_the_packaged_ml100k_folder_is_one_atomic_data_set(ml100k):
    folder, ds = ml100k
    _same(load_atomic(folder), ds)  # its .kg and .link files are not read


def test_ml100k_round_trips(ml100k, tmp_path):
    _, ds = ml100k
    paths = write_atomic(ds, tmp_path / "out", "ml-100k")
    assert [p.name for p in paths] == ["ml-100k.inter", "ml-100k.item", "ml-100k.user"]
    back = load_atomic(tmp_path / "out")
    _same(back, ds)
    assert back.genre_matrix()[1] == ds.genre_matrix()[1] and (back.genre_matrix()[0] == ds.genre_matrix()[0]).all()


def test_recboles_own_reader_reads_what_we_write(tmp_path):
    """RecBole's `_load_feat`: the header split on tabs and colons, then pandas with float fields as float64,
    token_seq cells split on a space."""
    folder = toy(tmp_path / "toy")
    write_atomic(load_atomic(folder), tmp_path / "out", "toy")
    for ext in ("inter", "item", "user"):
        path = tmp_path / "out" / f"toy.{ext}"
        head = path.read_text().split("\n")[0]
        dtype = {cell: np.float64 if cell.split(":")[1] == "float" else str for cell in head.split("\t")}
        df = pd.read_csv(path, delimiter="\t", usecols=list(dtype), dtype=dtype, engine="python")
        if ext == "inter":
            assert df["rating:float"].tolist() == [5, 4, 2, 5, 5, 1, 4]
            assert df["timestamp:float"].tolist() == list(range(1, 8))
        if ext == "item":
            genres = [str(c).split(" ") for c in df["genre:token_seq"].fillna("")]
            assert genres == [["Drama", "Comedy"], ["Drama"], [""], ["Sci-Fi"]]


def test_implicit_files_and_labels(tmp_path):
    no_rating = "user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti2\t2\n"
    ds = load_atomic(toy(tmp_path / "a", inter=no_rating, user=None))
    assert ds.ratings["rating"].tolist() == [5.0, 5.0]
    labelled = "user_id:token\titem_id:token\tlabel:float\nu1\ti1\t1\nu1\ti2\t0\nu2\ti3\t1\n"
    ds = load_atomic(toy(tmp_path / "b", inter=labelled, user=None))
    assert ds.ratings["rating"].tolist() == [5.0, 0.0, 5.0]
    both = "user_id:token\titem_id:token\trating:float\tlabel:float\nu1\ti1\t3\t1\n"
    assert load_atomic(toy(tmp_path / "c", inter=both, user=None)).ratings["rating"].tolist() == [3.0]


def test_without_timestamps_or_item_file(tmp_path):
    inter = "user_id:token\titem_id:token\trating:float\n10\t7\t5\n10\t12\t4\n9\t7\t5\n9\t12\t5\n"
    ds = load_atomic(toy(tmp_path / "x", inter=inter, item=None, user=None))
    assert ds.items["item_id"].tolist() == ["7", "12"] and ds.items["title"].tolist() == ["7", "12"]
    assert ds.users["user_id"].tolist() == ["9", "10"] and ds.ratings["timestamp"].isna().all()
    assert not has_timestamps(ds)
    with pytest.raises(DataError, match="timestamp"):
        time_split(ds)


def test_leave_last_out_refuses_a_data_set_without_timestamps(tmp_path):
    inter = "user_id:token\titem_id:token\n1\ta\n1\tb\n1\tc\n"
    with pytest.raises(DataError, match="leave-last-out needs a timestamp on every interaction; 3 have none"):
        leave_last_out(load_atomic(toy(tmp_path / "x", inter=inter, item=None, user=None)))


def test_the_name_is_the_only_inter_file_or_the_folder(tmp_path):
    one = toy(tmp_path / "folder", name="other", user=None)
    assert atomic_name(one) == "other" and load_atomic(one).name == "other"
    toy(tmp_path / "folder", name="folder", user=None)
    assert atomic_name(one) == "folder" and atomic_name(one, "other") == "other"
    toy(tmp_path / "two", name="a", user=None)
    toy(tmp_path / "two", name="b", user=None)
    with pytest.raises(DataError, match=r"2 \.inter files \(a\.inter, b\.inter\)"):
        load_atomic(tmp_path / "two")
    assert load_atomic(tmp_path / "two", "b").name == "b"


# -- bad input: one line naming the file and the field ------------------------------------------------------------

HEAD = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
BAD = {
    "no item_id": ({"inter": "user_id:token\trating:float\nu1\t5\n"}, "toy.inter", "'item_id'"),
    "unknown type": ({"inter": INTER.replace("rating:float", "rating:int")}, "toy.inter", "'rating'", "'int'"),
    "header cell without a type": ({"inter": INTER.replace("user_id:token", "user_id")}, "toy.inter", "'user_id'"),
    "header cell with two colons": ({"inter": INTER.replace("item_id:token", "item_id:token:x")}, "toy.inter",
                                    "'item_id:token:x'"),
    "field twice": ({"inter": INTER.replace("timestamp:float", "rating:float")}, "toy.inter", "'rating'", "twice"),
    "id typed float": ({"inter": INTER.replace("user_id:token", "user_id:float")}, "toy.inter", "'user_id'", "token"),
    "genre typed float": ({"item": "item_id:token\tgenre:float\ni1\t1\n"}, "toy.item", "'genre'"),
    "item ids not in .item": ({"item": "item_id:token\ni1\ni2\ni3\n"}, "toy.item", "'item_id'", "['i4']"),
    "user ids not in .user": ({"user": "user_id:token\nu1\nu3\n"}, "toy.user", "'user_id'", "['u2']"),
    "an item listed twice": ({"item": ITEM + "i2\tAgain\t\t\n"}, "toy.item:6", "'item_id'", "'i2'"),
    "empty .inter": ({"inter": ""}, "toy.inter", "empty"),
    "blank .inter": ({"inter": "\n \n"}, "toy.inter", "empty"),
    "empty .item": ({"item": ""}, "toy.item", "empty"),
    "empty .user": ({"user": b""}, "toy.user", "empty"),
    "header only": ({"inter": HEAD}, "toy.inter", "no rows"),
    "rating not a number": ({"inter": HEAD + "u1\ti1\t5\t1\nu1\ti2\tgood\t2\n"}, "toy.inter:3", "'rating'", "'good'"),
    "empty timestamp": ({"inter": HEAD + "u1\ti1\t5\t\n"}, "toy.inter:2", "'timestamp'"),
    "label not a number": ({"inter": "user_id:token\titem_id:token\tlabel:float\nu1\ti1\tyes\n"}, "toy.inter:2",
                           "'label'"),
    "a row short of a cell": ({"inter": HEAD + "u1\ti1\t5\t1\nu1\ti2\t5\n"}, "toy.inter:3", "3 cell(s)"),
    "an empty user id": ({"inter": HEAD + "\ti1\t5\t1\n"}, "toy.inter:2", "'user_id'", "empty"),
    "not UTF-8": ({"inter": HEAD.encode() + "u1\ti1\t5\t1\ncaf\u00e9\ti2\t5\t2\n".encode("latin-1")}, "toy.inter",
                  "UTF-8"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_one_line_naming_file_and_field(tmp_path, case):
    files, *needles = BAD[case]
    with pytest.raises(DataError) as err:
        load_atomic(toy(tmp_path / "f", **files))
    line = str(err.value)
    assert "\n" not in line and str(tmp_path / "f") in line
    for needle in needles:
        assert needle in line, (needle, line)


def test_a_folder_without_data(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no \.inter file"):
        load_atomic(tmp_path / "empty")
    with pytest.raises(DataError, match="not a folder"):
        load_atomic(tmp_path / "nope")
    with pytest.raises(DataError, match=r"toyy\.inter: no such file"):
        load_atomic(toy(tmp_path / "t"), "toyy")


def test_write_refuses_what_the_format_cannot_carry_and_writes_nothing(tmp_path):
    ds = load_atomic(toy(tmp_path / "toy"))
    cases = []
    spaced = load_atomic(tmp_path / "toy")
    spaced.items.at[0, "genres"] = ["Film Noir"]
    cases.append((spaced, "toy.item", "'genre'", "'Film Noir'"))
    tabbed = load_atomic(tmp_path / "toy")
    tabbed.items.at[1, "title"] = "A\tB"
    cases.append((tabbed, "toy.item", "'title'", "'i2'"))
    partial = load_atomic(tmp_path / "toy")
    partial.ratings.loc[2, "timestamp"] = np.nan
    cases.append((partial, "toy.inter", "'timestamp'"))
    for bad, *needles in cases:
        with pytest.raises(DataError) as err:
            write_atomic(bad, tmp_path / "out", "toy")
        assert all(n in str(err.value) for n in needles), str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="NAME"):
        write_atomic(ds, tmp_path / "out", "../toy")


def test_no_timestamps_write_no_timestamp_field(tmp_path):
    inter = "user_id:token\titem_id:token\trating:float\n1\ta\t4.5\n2\ta\t0.1\n"
    ds = load_atomic(toy(tmp_path / "x", inter=inter, item=None, user=None))
    write_atomic(ds, tmp_path / "out", "x")
    assert list(read_atomic_file(tmp_path / "out" / "x.inter").types) == ["user_id", "item_id", "rating"]
    assert (tmp_path / "out" / "x.inter").read_text().split("\n")[1:3] == ["1\ta\t4.5", "2\ta\t0.1"]
    _same(load_atomic(tmp_path / "out"), ds)


# -- the example scripts ---------------------------------------------------------------------------------------------

def test_the_instacart_example_writes_a_folder_leave_last_out_splits(tmp_path):
    paths = _script("write_instacart").main(["--out", str(tmp_path / "instacart")])
    assert [p.name for p in paths] == ["instacart.inter", "instacart.item", "instacart.user"]
    ds = load_atomic(tmp_path / "instacart")
    assert (ds.n_users, ds.n_items, len(ds.ratings)) == (586, 2555, 35162) and has_timestamps(ds)
    assert len({g for gs in ds.items["genres"] for g in gs}) == 20 and ds.items["genres"].map(len).eq(1).all()
    split = leave_last_out(ds)
    assert len(split.test_users) == 586 and split.train.nnz == 35162 - 586


def test_the_clothing_example_is_a_data_set_without_time(tmp_path):
    _script("write_clothing").main(["--out", str(tmp_path / "clothing")])
    ds = load_atomic(tmp_path / "clothing")
    assert (ds.n_users, ds.n_items) == (23486, 1206) and not has_timestamps(ds)
    assert set(ds.ratings["rating"]) == {1.0, 2.0, 3.0, 4.0, 5.0}


# -- the CLI -------------------------------------------------------------------------------------------------------

def test_cli_bench_refuses_a_bad_atomic_folder_with_one_line(tmp_path):
    folder = toy(tmp_path / "toy", item="item_id:token\ni1\ni2\ni3\n")
    refused(["recsys", "bench", "--dataset", str(folder), "--out", str(tmp_path / "out"), "--quiet"],
            [str(folder / "toy.item"), "'item_id'", "['i4']"], [tmp_path])


def test_cli_load_takes_a_folder_and_refuses_one_without_time_or_with_csv_options(tmp_path, capsys):
    from evals.cli import app
    from evals.commands.errors import run
    from evals.commands.recsys import _load

    _same(_load(str(toy(tmp_path / "toy")), None, False), load_atomic(tmp_path / "toy"))
    untimed = toy(tmp_path / "untimed", inter="user_id:token\titem_id:token\nu1\ti1\nu1\ti2\n")
    for args, needles in (([], [str(untimed / "toy.inter"), "'timestamp'"]),
                          (["--catalog", str(untimed / "toy.item")], ["--catalog", "atomic"]),
                          (["--implicit"], ["--implicit", "atomic"])):
        assert run(app, ["recsys", "tune", "--dataset", str(untimed), "--out", str(tmp_path / "out"), "--quiet",
                         *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and all(n in err for n in needles), err
    assert not (tmp_path / "out").exists()
