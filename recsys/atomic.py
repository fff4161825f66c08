"""Any data set in RecBole's atomic-file format, read as a `Dataset`; and a `Dataset` written out as one.

The format, as RecBole 1.2 reads it (`recbole.data.dataset.Dataset._load_feat`, default config): a folder holds
``NAME.inter`` and optionally ``NAME.item`` and ``NAME.user`` (``.kg``, ``.link``, ``.net`` are not read here).
Each is UTF-8 text, one record a line, cells separated by a tab; the first line is the header, one ``name:type``
cell per field, the type one of token, token_seq, float, float_seq. A token_seq (or float_seq) cell is its tokens
joined by a single space, so no token holds a space. Cells are read as they stand, without quoting (as
`recsys.data._read_atomic` reads them); empty lines are skipped, a trailing ``\\r`` (CRLF files) and a leading
byte-order mark are dropped.

Fields used (others are ignored, so RecBole's own data sets load as they are):

- ``NAME.inter`` (required): user_id:token and item_id:token; rating:float, timestamp:float and label:float are
  optional.
- ``NAME.item``: item_id:token; title from ``title`` or ``movie_title``; year from ``year`` or ``release_year``;
  genres from the first of ``genre``, ``genres``, ``class``, ``categories`` (a token_seq: one genre per token; a
  token: one genre); ``text`` (an item description) if present. Each of these is a token or token_seq field; a
  title or text is the cell as written (a token_seq title is not re-spaced).
- ``NAME.user``: user_id:token and every other field as a demographic (float fields as numbers, the rest as text).

Decisions, made once here:

- Without a rating field the file is implicit: every row is a positive (rating 5) unless a ``label`` field says
  which rows are: label > 0 is a positive (rating 5), any other label is a shown-but-not-chosen item (rating 0,
  never a positive, and, like every rated item, never recommended back). With a rating field, label is ignored.
- Without a timestamp field every timestamp is NaN. `recsys.time_splits.time_split` refuses such a data set;
  `leave_last_out` and `validation_split` do not (yet): they would hold out each user's positive with the highest
  item index. Check `has_timestamps` before either. Rating, timestamp and label cells must all be finite numbers.
- Ids are not joined: an item id of ``.inter`` missing from ``.item`` (or a user id missing from ``.user``) is an
  error, not a dropped row; an id listed twice in ``.item`` or ``.user`` is an error too. Catalog items without
  interactions stay in the catalog. Without ``.item`` the catalog is the interacted items, titled by their id.
- User and item indices are as `recsys.data` gives them: users by id (shorter ids first, then alphabetical),
  items in ``.item`` order (or in that id order without ``.item``).

Every error is a `recsys.data.DataError` whose one line names the file, and the field or line where there is one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data import DataError, Dataset, _index

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
TEXT_TYPES = ("token", "token_seq")
TITLE_FIELDS = ("title", "movie_title")
YEAR_FIELDS = ("year", "release_year")
GENRE_FIELDS = ("genre", "genres", "class", "categories")
POSITIVE_RATING = 5.0  # an implicit positive, >= the house threshold of 4
NEGATIVE_RATING = 0.0  # a label-0 row: rated, never a positive


def _id_order(ids) -> list[str]:
    return sorted(set(ids), key=lambda s: (len(s), s))


@dataclass
class AtomicFile:
    """One atomic file: ``types`` maps each field to its type (header order); ``columns`` each field to its
    cells; ``lines`` gives each row's 1-based line number in the file."""

    path: Path
    types: dict[str, str]
    columns: dict[str, list[str]]
    lines: list[int]

    def require(self, field: str, types: tuple[str, ...], what: str) -> list[str]:
        """The cells of a field that must be there with one of ``types``."""
        if field not in self.types:
            raise DataError(f"{self.path}: no field {field!r} (fields are {list(self.types)}); {what}")
        return self.typed(field, types)

    def typed(self, field: str, types: tuple[str, ...]) -> list[str]:
        if self.types[field] not in types:
            raise DataError(f"{self.path}: field {field!r} is {self.types[field]}; it must be {' or '.join(types)}")
        return self.columns[field]

    def ids(self, field: str, what: str) -> list[str]:
        cells = self.require(field, ("token",), what)
        for i, c in enumerate(cells):
            if not c:
                raise DataError(f"{self.path}:{self.lines[i]}: field {field!r} is empty")
        return cells

    def unique(self, field: str) -> None:
        first: dict[str, int] = {}
        for i, c in enumerate(self.columns[field]):
            if c in first:
                raise DataError(f"{self.path}:{self.lines[i]}: field {field!r} {c!r} again (first on line "
                                f"{self.lines[first[c]]}); each id is listed once")
            first[c] = i

    def floats(self, field: str, allow_empty: bool = False) -> np.ndarray:
        """A float field's values; a cell that is not a finite number is an error (empty -> NaN if allowed)."""
        cells = self.typed(field, ("float",))
        values = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if allow_empty:
            bad &= np.asarray([c.strip() != "" for c in cells])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{self.path}:{self.lines[i]}: field {field!r} is {cells[i]!r}, not a finite number")
        return values

    def first_of(self, fields: tuple[str, ...]) -> str | None:
        return next((f for f in fields if f in self.types), None)


def read_atomic_file(path: str | Path) -> AtomicFile:
    """Parse one atomic file (header and cells; no meaning given to any field)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder, not an atomic file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DataError(f"{path}: empty file; an atomic file starts with a header of name:type cells")
    lines = text.split("\n")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    types: dict[str, str] = {}
    for k, cell in enumerate(lines[0].split("\t"), start=1):
        parts = cell.split(":")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise DataError(f"{path}: header cell {k} {cell!r} is not name:type (types: {', '.join(FIELD_TYPES)})")
        name, kind = parts
        if kind not in FIELD_TYPES:
            raise DataError(f"{path}: field {name!r} has type {kind!r}; RecBole's types are {', '.join(FIELD_TYPES)}")
        if name in types:
            raise DataError(f"{path}: field {name!r} appears twice in the header")
        types[name] = kind
    width = len(types)
    rows, numbers = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != width:
            raise DataError(f"{path}:{n}: {len(cells)} cell(s), the header has {width} field(s)")
        rows.append(cells)
        numbers.append(n)
    if not rows:
        raise DataError(f"{path}: a header and no rows")
    columns = {name: list(col) for name, col in zip(types, zip(*rows))}
    return AtomicFile(path, types, columns, numbers)


def atomic_name(folder: str | Path, name: str | None = None) -> str:
    """The data set's NAME in ``folder``: ``name`` if given; else the stem of the folder's only ``.inter`` file;
    else the folder's name when ``FOLDER/FOLDERNAME.inter`` is one of several."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of atomic files")
    if name is not None:
        return name
    inters = sorted(p.name for p in folder.glob("*.inter") if p.is_file())
    if len(inters) == 1:
        return inters[0][: -len(".inter")]
    if f"{folder.name}.inter" in inters:
        return folder.name
    if not inters:
        raise DataError(f"{folder}: no .inter file; a RecBole data set needs NAME.inter (user_id, item_id)")
    raise DataError(f"{folder}: {len(inters)} .inter files ({', '.join(inters)}) and none named after the folder; "
                    f"say which data set to load")


def _missing(listed: AtomicFile, field: str, used: list[str], inter: AtomicFile) -> None:
    missing = _id_order(set(used) - set(listed.columns[field]))
    if missing:
        raise DataError(f"{listed.path}: field {field!r} lacks {len(missing)} id(s) that {inter.path.name} uses, "
                        f"e.g. {missing[:5]}; ids are not joined: list them in {listed.path.name} or drop those "
                        f"interactions")


def _items(f: AtomicFile) -> pd.DataFrame:
    ids = f.ids("item_id", "an .item file lists item_id and the item's features")
    f.unique("item_id")
    title, year, genre = f.first_of(TITLE_FIELDS), f.first_of(YEAR_FIELDS), f.first_of(GENRE_FIELDS)
    items = pd.DataFrame({
        "item_id": ids,
        "title": f.typed(title, TEXT_TYPES) if title else ids,
        "year": f.typed(year, TEXT_TYPES) if year else "",
    })
    if genre is None:
        items["genres"] = [[] for _ in ids]
    elif f.types[genre] == "token":  # one genre an item
        items["genres"] = [[c] if c else [] for c in f.typed(genre, TEXT_TYPES)]
    else:
        items["genres"] = [[t for t in c.split(" ") if t] for c in f.typed(genre, TEXT_TYPES)]
    if "text" in f.types:
        items["text"] = f.typed("text", TEXT_TYPES)
    return items


def _users(f: AtomicFile) -> pd.DataFrame:
    f.ids("user_id", "a .user file lists user_id and the user's features")
    f.unique("user_id")
    return pd.DataFrame({name: f.floats(name, allow_empty=True) if kind == "float" else f.columns[name]
                         for name, kind in f.types.items()})


def load_atomic(folder: str | Path, name: str | None = None) -> Dataset:
    """The RecBole data set NAME in ``folder`` (NAME: see `atomic_name`) as a `Dataset` named NAME.

    ``ratings``: user, item (indices), rating (float32; 5 for an implicit positive), timestamp (float64, NaN when
    ``NAME.inter`` has no timestamp field). ``items``: item_id, title, year, genres (list[str]) and text when the
    ``.item`` file has it. ``users``: user_id and the ``.user`` fields. Raises DataError (see the module).
    """
    folder = Path(folder)
    name = atomic_name(folder, name)
    inter = read_atomic_file(folder / f"{name}.inter")
    need = "an .inter file needs user_id:token and item_id:token"
    user_ids, item_ids = inter.ids("user_id", need), inter.ids("item_id", need)
    n = len(user_ids)
    if "rating" in inter.types:
        rating = inter.floats("rating")
    elif "label" in inter.types:
        rating = np.where(inter.floats("label") > 0, POSITIVE_RATING, NEGATIVE_RATING)
    else:
        rating = np.full(n, POSITIVE_RATING)
    timestamp = inter.floats("timestamp") if "timestamp" in inter.types else np.full(n, np.nan)
    ratings = pd.DataFrame({"user_id": user_ids, "item_id": item_ids, "rating": rating, "timestamp": timestamp})

    item_path, user_path = folder / f"{name}.item", folder / f"{name}.user"
    if item_path.exists():
        item_file = read_atomic_file(item_path)
        items = _items(item_file)
        _missing(item_file, "item_id", item_ids, inter)
    else:
        ids = _id_order(item_ids)
        items = pd.DataFrame({"item_id": ids, "title": ids, "year": "", "genres": [[] for _ in ids]})
    users = None
    if user_path.exists():
        user_file = read_atomic_file(user_path)
        users = _users(user_file)
        _missing(user_file, "user_id", user_ids, inter)
    return _index(ratings, items, users, name)


def has_timestamps(ds: Dataset) -> bool:
    """Whether every interaction has a finite timestamp, which `leave_last_out`, `validation_split` and
    `time_split` order each user's history by. False for `load_atomic` of a ``.inter`` without a timestamp field:
    check it before a leave-last-out split, which does not refuse NaN timestamps itself."""
    ts = ds.ratings["timestamp"].to_numpy(np.float64)
    return len(ts) > 0 and bool(np.isfinite(ts).all())


# -- writing ----------------------------------------------------------------------------------------------------

def _float_cells(values) -> list[str]:
    """Shortest text that reads back to the same value (in the array's own precision)."""
    v = np.asarray(values)
    if (v == np.round(v)).all() and (np.abs(v) < 2 ** 53).all():
        return v.astype(np.int64).astype(str).tolist()
    return [np.format_float_positional(x, trim="-") for x in v]


def _check_cells(path: Path, field: str, cells: list[str], owners, owner: str) -> None:
    """No cell breaks the file: no tab or line break; no leading double quote (RecBole's pandas would unquote it)."""
    for c, who in zip(cells, owners):
        if not c and field.endswith("_id"):
            raise DataError(f"{path}: field {field!r} of {owner} {who!r} is empty")
        if "\t" in c or "\n" in c or "\r" in c or c.startswith('"'):
            why = "begins with a double quote" if c.startswith('"') else "holds a tab or line break"
            raise DataError(f"{path}: field {field!r} of {owner} {who!r} {why}; an atomic file cannot carry it as is")


def _text_cells(frame: pd.DataFrame, col: str) -> list[str]:
    """A column as cells ("" for a missing value or a missing column)."""
    if col not in frame:
        return [""] * len(frame)
    return ["" if pd.isna(v) else str(v) for v in frame[col]]


def _genre_cells(path: Path, items: pd.DataFrame) -> list[str]:
    out = []
    for who, gs in zip(items["item_id"], items["genres"]):
        for g in gs:
            if not g or any(ch.isspace() for ch in g):
                raise DataError(f"{path}: field 'genre' of item {who!r}: genre {g!r} is empty or holds white space, "
                                f"which token_seq splits on; rename it (e.g. spaces to '_') before writing")
        out.append(" ".join(gs))
    return out


def _write(path: Path, columns: dict[str, list[str]]) -> None:
    """Write whole or not at all: a temporary file beside ``path``, then a rename."""
    rows = zip(*columns.values())
    text = "\t".join(columns) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_atomic(ds: Dataset, folder: str | Path, name: str) -> list[Path]:
    """Write ``ds`` as ``FOLDER/NAME.inter``, ``.item`` and ``.user``; `load_atomic` reads back the same ratings,
    items (item_id, title, year, genres, text) and users, for users who have an interaction.

    ``.inter``: user_id:token, item_id:token, rating:float, and timestamp:float unless every timestamp is NaN.
    ``.item``: item_id:token, title:token_seq, year:token, genre:token_seq (and text:token_seq when ``ds.items``
    has a text column). ``.user``: user_id:token, then each other column, float if its dtype is floating, else
    token. Raises DataError, before writing anything, for what the format cannot carry: some timestamps but not
    all, a rating that is not finite, a genre holding white space, an empty id, a cell holding a tab or line break
    or beginning with a double quote (RecBole's pandas reader would unquote it). Each file is written whole (a
    temporary file, then a rename). Returns the three paths.
    """
    if not name or name != name.strip() or "/" in name or os.sep in name or name.startswith("."):
        raise DataError(f"write_atomic: NAME {name!r} must be a plain file name stem")
    folder = Path(folder)
    paths = [folder / f"{name}.{ext}" for ext in ("inter", "item", "user")]
    r = ds.ratings
    user_ids = ds.users["user_id"].astype(str).to_numpy()
    item_ids = ds.items["item_id"].astype(str).to_numpy()

    rating = r["rating"].to_numpy()
    if not np.isfinite(rating).all():
        raise DataError(f"{paths[0]}: field 'rating': {int((~np.isfinite(rating)).sum())} rating(s) are not finite")
    inter = {"user_id:token": user_ids[r["user"].to_numpy()].tolist(),
             "item_id:token": item_ids[r["item"].to_numpy()].tolist(),
             "rating:float": _float_cells(rating)}
    ts = r["timestamp"].to_numpy(np.float64)
    finite = np.isfinite(ts)
    if finite.any() and not finite.all():
        raise DataError(f"{paths[0]}: field 'timestamp': {int((~finite).sum())} of {len(ts)} interactions have none; "
                        f"the field is on every row or on none")
    if finite.all() and len(ts):
        inter["timestamp:float"] = _float_cells(ts)

    items = ds.items
    item = {"item_id:token": item_ids.tolist(), "title:token_seq": _text_cells(items, "title"),
            "year:token": _text_cells(items, "year"), "genre:token_seq": _genre_cells(paths[1], items)}
    if "text" in items:
        item["text:token_seq"] = _text_cells(items, "text")

    user = {"user_id:token": user_ids.tolist()}
    for col in ds.users.columns.drop("user_id"):
        values = ds.users[col]
        if pd.api.types.is_float_dtype(values):
            user[f"{col}:float"] = ["" if pd.isna(v) else c for v, c in zip(values, _float_cells(values.fillna(0)))]
        else:
            user[f"{col}:token"] = _text_cells(ds.users, col)

    for path, columns, owners, owner in ((paths[0], inter, inter["item_id:token"], "interaction with item"),
                                         (paths[1], item, item_ids, "item"), (paths[2], user, user_ids, "user")):
        for header, cells in columns.items():
            _check_cells(path, header.split(":")[0], cells, owners, owner)
    folder.mkdir(parents=True, exist_ok=True)
    for path, columns in zip(paths, (inter, item, user)):
        _write(path, columns)
    return paths
