"""Load documents from a folder, a table file, a Hugging Face dataset, or a packaged corpus.

Bad input, as documented:

* a folder: every ``.txt``/``.md`` file (recursive, sorted) is one document, id =
  path relative to the folder. A binary file (NUL byte in its first 8 KiB) or one
  that is not UTF-8 is **skipped**, named in ``Corpus.skipped`` with the reason
  (and later in ``assignments.jsonl``); so is an empty file.
* a table (``.jsonl``, ``.csv``, ``.parquet``) or a saved HF dataset: a missing text
  column raises :class:`PersonaError` listing the columns; rows whose text is empty
  or not a string are skipped with a reason; a JSONL line that is not a JSON object
  is skipped with its line number. A table file that is not UTF-8 is an error.
* nothing usable at all: :class:`PersonaError` ("no usable documents").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from personas.documents import MAX_FACT_CHOICES, Corpus, Document, FactField, SkippedInput
from personas.errors import PersonaError

log = logging.getLogger(__name__)

PACKAGED = ("clothing-reviews", "ml-100k-users")
TEXT_SUFFIXES = (".txt", ".md")
TABLE_SUFFIXES = (".jsonl", ".csv", ".parquet")
DEFAULT_TEXT_COLUMNS = ("text", "review", "content", "body", "document")


def load_documents(source: str, text_column: str | None = None, id_column: str | None = None) -> Corpus:
    """Load ``source`` (a path, or 'clothing-reviews' / 'ml-100k-users') into a :class:`Corpus`."""
    if source in PACKAGED:
        from personas import corpora

        corpus = corpora.clothing_reviews() if source == "clothing-reviews" else corpora.ml100k_users()
    else:
        path = Path(source)
        if not path.exists():
            raise PersonaError(
                f"{source}: no such file or folder (packaged corpora: {', '.join(PACKAGED)})"
            )
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "state.json").exists()
                              or (path / "dataset_dict.json").exists()):
            corpus = _from_frame(_hf_frame(path), str(path), text_column, id_column)
        elif path.is_dir():
            corpus = _from_folder(path)
        elif path.suffix.lower() in TEXT_SUFFIXES:
            corpus = _from_text_files(path.parent, [path])
        elif path.suffix.lower() in TABLE_SUFFIXES:
            corpus = _from_frame(_table_frame(path), str(path), text_column, id_column)
        else:
            raise PersonaError(
                f"{source}: unsupported file type {path.suffix!r} (use a folder of .txt/.md, "
                f"{', '.join(TABLE_SUFFIXES)}, or a saved Hugging Face dataset folder)"
            )
    if not corpus.documents:
        extra = f" ({len(corpus.skipped)} inputs skipped, e.g. {corpus.skipped[0].id}: " \
                f"{corpus.skipped[0].reason})" if corpus.skipped else ""
        raise PersonaError(f"{source}: no usable documents{extra}")
    log.info("loaded %d documents from %s (%d skipped)", len(corpus.documents), source, len(corpus.skipped))
    return corpus


# -- folders of text files ---------------------------------------------------------------------

def _from_folder(folder: Path) -> Corpus:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    return _from_text_files(folder, files, name=str(folder))


def _from_text_files(root: Path, files: list[Path], name: str | None = None) -> Corpus:
    docs: list[Document] = []
    skipped: list[SkippedInput] = []
    for path in files:
        doc_id = str(path.relative_to(root))
        raw = path.read_bytes()
        if b"\x00" in raw[:8192]:
            skipped.append(SkippedInput(id=doc_id, reason="binary file (NUL byte)"))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            skipped.append(SkippedInput(id=doc_id, reason=f"not UTF-8 (byte {exc.start})"))
            continue
        if not text.strip():
            skipped.append(SkippedInput(id=doc_id, reason="empty text"))
            continue
        docs.append(Document(id=doc_id, text=text, metadata={"path": doc_id, "bytes": len(raw)}))
    if skipped:
        log.warning("%s: skipped %d files (binary, not UTF-8 or empty)", root, len(skipped))
    return Corpus(name=name or str(files[0] if len(files) == 1 else root), documents=docs, skipped=skipped)


# -- tables ------------------------------------------------------------------------------------

def _table_frame(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, encoding="utf-8")
        return _jsonl_frame(path)
    except PersonaError:
        raise
    except UnicodeDecodeError as exc:
        raise PersonaError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except Exception as exc:  # pyarrow / pandas parser errors: one line naming the file
        raise PersonaError(f"{path}: cannot read {suffix[1:]} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _jsonl_frame(path: Path):
    import pandas as pd

    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                bad.append(lineno)
                continue
            obj["__line__"] = lineno
            rows.append(obj)
    frame = pd.DataFrame(rows)
    frame.attrs["bad_lines"] = bad
    return frame


def _hf_frame(path: Path):
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise PersonaError(f"{path}: cannot load Hugging Face dataset ({type(exc).__name__})") from None
    if isinstance(ds, datasets.DatasetDict):
        split = "train" if "train" in ds else sorted(ds)[0]
        log.info("%s: using split %r", path, split)
        ds = ds[split]
    return ds.to_pandas()


def _from_frame(frame, name: str, text_column: str | None, id_column: str | None) -> Corpus:
    bad_lines = frame.attrs.get("bad_lines", [])
    line_col = frame.pop("__line__") if "__line__" in frame.columns else None
    columns = [str(c) for c in frame.columns]
    if frame.empty and not bad_lines:
        raise PersonaError(f"{name}: empty source (no rows)")
    if text_column is None:
        text_column = next((c for c in DEFAULT_TEXT_COLUMNS if c in columns), None)
        if text_column is None:
            raise PersonaError(f"{name}: no text column given and none of {list(DEFAULT_TEXT_COLUMNS)} "
                               f"found; pass --text-column (available columns: {', '.join(columns)})")
    if text_column not in columns:
        raise PersonaError(f"{name}: text column {text_column!r} not found "
                           f"(available columns: {', '.join(columns)})")
    if id_column is not None and id_column not in columns:
        raise PersonaError(f"{name}: id column {id_column!r} not found "
                           f"(available columns: {', '.join(columns)})")
    meta_cols = [c for c in columns if c not in (text_column, id_column)]
    docs: list[Document] = []
    skipped = [SkippedInput(id=f"line {n}", reason="not a JSON object") for n in bad_lines]
    seen: set[str] = set()
    records = frame.to_dict("records")
    for row_no, row in enumerate(records):
        doc_id = str(row[id_column]) if id_column else str(row_no if line_col is None else line_col.iloc[row_no])
        if id_column and doc_id in seen:
            raise PersonaError(f"{name}: duplicate id {doc_id!r} in column {id_column!r} (row {row_no})")
        seen.add(doc_id)
        text = row[text_column]
        if not isinstance(text, str) or not text.strip():
            skipped.append(SkippedInput(id=doc_id, reason=f"empty or non-text {text_column!r}"))
            continue
        meta = {c: _plain(row[c]) for c in meta_cols}
        docs.append(Document(id=doc_id, text=text, metadata=meta))
    return Corpus(name=name, documents=docs, skipped=skipped, fact_fields=_generic_fact_fields(docs, meta_cols),
                  **_rating_field(docs, meta_cols))


def _plain(value: Any) -> Any:
    """JSON-safe scalar (numpy types and NaN become Python values / None)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _generic_fact_fields(docs: list[Document], cols: list[str]) -> dict[str, FactField]:
    """Columns with 2..MAX_FACT_CHOICES distinct string values become facts."""
    fields: dict[str, FactField] = {}
    for col in cols:
        values = {d.metadata.get(col) for d in docs}
        values.discard(None)
        if 2 <= len(values) <= MAX_FACT_CHOICES and all(isinstance(v, (str, bool)) for v in values):
            fields[col] = FactField(question=f"What is your {col}?", choices=sorted(str(v) for v in values))
    return fields


def _rating_field(docs: list[Document], cols: list[str]) -> dict[str, Any]:
    """A numeric column named like a rating: low = <= 2 on a 5-point scale, <= 4 on 10-point."""
    for col in cols:
        if col.lower() in ("rating", "stars", "score", "overall"):
            vals = [d.metadata.get(col) for d in docs if isinstance(d.metadata.get(col), (int, float))]
            if vals:
                top = max(vals)
                if top <= 5:
                    return {"rating_field": col, "low_rating_max": 2.0}
                if top <= 10:
                    return {"rating_field": col, "low_rating_max": 4.0}
    return {}
