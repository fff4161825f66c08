"""The persona card: the one record personas/ produces and simulator/ consumes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Bumped whenever a field changes meaning; readers refuse other versions.
SCHEMA_VERSION = 1


class BigFive(BaseModel):
    """Big Five trait estimates, each in [0, 1] (0.5 = population middle)."""

    model_config = ConfigDict(extra="forbid")

    openness: float = Field(0.5, ge=0.0, le=1.0)
    conscientiousness: float = Field(0.5, ge=0.0, le=1.0)
    extraversion: float = Field(0.5, ge=0.0, le=1.0)
    agreeableness: float = Field(0.5, ge=0.0, le=1.0)
    neuroticism: float = Field(0.5, ge=0.0, le=1.0)


class Passage(BaseModel):
    """A source passage that justifies a card; ``doc_id`` names the input document."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str
    text: str
    score: float = Field(0.0, description="cosine similarity to the cluster centroid")


class Fact(BaseModel):
    """A stated fact usable for multiple-choice Q&A (graded by exact match).

    ``value`` is one of ``choices``; ``evidence`` lists the source doc ids.
    """

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="what the fact is about, e.g. 'age group'")
    question: str = Field(description="the question put to the simulated user")
    value: str
    choices: list[str] = Field(min_length=2)
    evidence: list[str] = Field(default_factory=list)


class PersonaCard(BaseModel):
    """One grounded persona: every claim traces to ``passages`` / ``evidence``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: str
    name: str
    summary: str
    traits: BigFive = Field(default_factory=BigFive)
    likes: list[str] = Field(default_factory=list, description="subtopics this persona seeks")
    dislikes: list[str] = Field(default_factory=list, description="subtopics this persona avoids")
    facts: list[Fact] = Field(default_factory=list)
    passages: list[Passage] = Field(default_factory=list, description="most representative, best first")
    size: int = Field(0, ge=0, description="documents (or chunks) in the cluster")
    centroid: list[float] = Field(default_factory=list)
    source: str = Field("", description="corpus the persona was extracted from")
    writer: str = Field("extractive", description="'extractive' or the LLM backend/model name")
    config_hash: str = Field("", description="hash of the extraction config that produced this card")
    embedding_model: str = Field("", description="sentence-transformers model used for clustering")
    seed: int | None = Field(None, description="seed of the extraction run")


class PersonaFileError(ValueError):
    """A personas.jsonl that cannot be used; the message names file and line."""


def file_bytes(path, error: type[Exception], what: str) -> bytes:
    """The bytes of a file; ``error`` naming it when it is missing. ``what`` names the file's kind."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what} file")
    return path.read_bytes()


def jsonl_rows(path, error: type[Exception], what: str, data: bytes | None = None):
    """(line number, parsed value) of each non-blank line of a JSONL file; ``error`` naming the file
    (and the line) when it is missing, not UTF-8 or a line is not JSON. ``what`` names the file's kind.
    ``data``: the file's bytes, when the caller has read them already (to hash the very bytes it parsed)."""
    import json
    from pathlib import Path

    path = Path(path)
    if data is None:
        data = file_bytes(path, error, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{lineno}: not JSON ({exc.msg})") from None


def read_personas(path) -> list[PersonaCard]:
    """Read ``personas.jsonl``; refuse empty files and other schema versions."""
    cards: list[PersonaCard] = []
    for lineno, raw in jsonl_rows(path, PersonaFileError, "personas"):
        version = raw.get("schema_version") if isinstance(raw, dict) else None
        if version != SCHEMA_VERSION:
            raise PersonaFileError(
                f"{path}:{lineno}: persona schema_version {version!r}, this personasim reads "
                f"{SCHEMA_VERSION}; re-run `personasim personas extract`"
            )
        try:
            cards.append(PersonaCard.model_validate(raw))
        except Exception as exc:  # pydantic.ValidationError: keep first error only
            first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
            field = ".".join(str(p) for p in first["loc"])
            raise PersonaFileError(f"{path}:{lineno}: field {field!r}: {first['msg']}") from None
    if not cards:
        raise PersonaFileError(f"{path}: contains no personas")
    return cards


def write_personas(cards: list[PersonaCard], path) -> None:
    """Write cards one JSON line each, whole or not at all (`personas.infra.files.write_whole`)."""
    from personas.infra.files import write_whole

    write_whole(path, "".join(card.model_dump_json() + "\n" for card in cards))
