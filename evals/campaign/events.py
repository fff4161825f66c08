"""The campaign event log: one versioned record per simulated turn, append-only.

`events.jsonl` is written one line per finished turn (flushed and fsynced),
so a campaign killed at any point loses at most the turn in flight. A torn
last line (no newline) is dropped on resume; nothing else is ever rewritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializationInfo, model_serializer, model_validator

from personas.infra.old_keys import renamed
from simulator.turn import Turn, TurnCore

#: 2: a slate item's AMP-CF attribution is ``component`` (schema 1 called it ``persona``; still read).
EVENTS_SCHEMA_VERSION = 2
#: A reranker's old name and its name now: 'MODEL+personas' (an old config, a schema-1 event) is 'MODEL+mixture'.
OLD_RERANKER_NAMES = {"personas": "mixture"}


def variant_now(variant: str) -> str:
    """A recommender variant under today's names: 'ampcf-mf+personas' -> 'ampcf-mf+mixture'; others as given."""
    model, _, reranker = variant.partition("+")
    return f"{model}+{OLD_RERANKER_NAMES[reranker]}" if reranker in OLD_RERANKER_NAMES else variant


class SlateItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    genres: list[str] = Field(default_factory=list)
    component: int | None = Field(None, description="index of the user's AMP-CF mixture component whose attention "
                                  "dominated it, else None")

    @model_validator(mode="before")
    @classmethod
    def _old_persona_key(cls, data):
        # schema 1 called the component 'persona', a word now kept for the cards extracted from documents
        return renamed(data, "persona", "component")


class TurnEvent(TurnCore):
    """One turn of one session as stored: (variant, user_variant, user, run, turn) is the unique key.

    The fields of `simulator.turn.TurnCore`, the slate flattened to `SlateItem`s, and the campaign's
    own: schema version, config hash, recommender variant, simulated-user variant and run.
    """

    schema_version: int = EVENTS_SCHEMA_VERSION
    config_hash: str
    seed: int = Field(description="the session's seed (derived from the campaign seed, variant, user, run)")
    model: str = Field(description="LLM model name")
    backend: str
    variant: str = Field(description="recommender variant, e.g. 'mf', 'mf+dpp', 'ampcf', 'ampcf-mf+mixture'")
    user_variant: str = Field(description="simulated-user variant: 'layered', 'naive' or 'grounded'")
    run: int
    slate: list[SlateItem] = Field(default_factory=list)

    @classmethod
    def from_turn(cls, turn: Turn, **campaign: Any) -> "TurnEvent":
        """The stored record of a simulator `Turn`; ``campaign`` gives config_hash, variant (the
        recommender's), user_variant and run, and overrides any shared field (e.g. ``model``)."""
        slate = [SlateItem(id=it.id, title=it.title, genres=it.facets.get("genres", []),
                           component=it.meta.get("component")) for it in turn.slate]
        return cls(**{**turn.model_dump(include=set(TurnCore.model_fields)), "slate": slate, **campaign})

    @model_serializer(mode="wrap")
    def _as_written(self, handler, info: SerializationInfo):
        # as JSON an event keeps the schema it was written in, so a digest over a schema-1 file read back
        # (`evals.campaign.runner.content_digest`) is the one taken when it was written
        data = handler(self)
        if info.mode_is_json() and self.schema_version < 2 and "slate" in data:
            data["slate"] = [{("persona" if k == "component" else k): v for k, v in item.items()}
                             for item in data["slate"]]
        return data

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        return (self.variant, self.user_variant, self.user_id, self.run, self.turn)


class EventLogError(RuntimeError):
    """An events file that belongs to another campaign or cannot be read."""


class EventWriteError(RuntimeError):
    """A record that could not be appended (disk full, read-only folder): the lines before it are intact."""


Record = TypeVar("Record", bound=BaseModel)


def read_records(path: str | Path, model: type[Record], what: str) -> Iterator[Record]:
    """Yield every complete line of ``path`` as a ``model``; a torn final line (crash mid-write) is skipped.
    A line that is not a ``what`` (not UTF-8, not JSON, another schema) is an EventLogError naming file and line."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                return  # torn tail from a crash: the record is redone on resume
            try:
                yield model.model_validate_json(raw)
            except ValueError as exc:
                raise EventLogError(f"{path}:{lineno}: not a {what} ({str(exc).splitlines()[0]})") from None


def read_events(path: str | Path) -> Iterator[TurnEvent]:
    """Yield every complete event; a torn final line (crash mid-write) is skipped."""
    return read_records(path, TurnEvent, "personasim turn event")


class EventWriter:
    """Appends records (pydantic models, one JSON line each) durably. Truncates a torn tail first so lines
    never merge. Any OSError becomes EventWriteError naming the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._truncate_torn_tail()
            self._fh = open(self.path, "ab")
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> EventWriteError:
        return EventWriteError(f"cannot write {self.path} ({exc.strerror or exc})")

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)

    def write(self, record: BaseModel) -> None:
        try:
            self._fh.write(record.model_dump_json().encode("utf-8") + b"\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass  # a failed flush was already reported by write(); the lines before it are on disk

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def events_frame(path: str | Path):
    """All events as a pandas DataFrame (nested fields kept as Python objects; an old run's variants under
    today's names, as its config reads them: `variant_now`)."""
    import pandas as pd

    rows = [{**e.model_dump(), "variant": variant_now(e.variant)} for e in read_events(path)]
    if not rows:
        raise EventLogError(f"{path}: no events")
    return pd.DataFrame(rows)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
