"""Turn model text into schema-valid JSON, or say precisely why not.

Small models wrap JSON in code fences or prose, and a reply cut by
``max_tokens`` is broken JSON. We strip the wrapping (a lossless repair);
anything else goes back to the model once with the validation error.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import jsonschema

from simulator.llm.errors import LLMConfigError
from simulator.llm.types import Message

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class TemplateSchema(dict):
    """A schema that code builds from a fixed template, filling in only names and enum values
    (`simulator/turn.py` builds one per slate from its item ids). The metaschema constrains neither, so
    a template is checked once, at its first schema; any other schema is checked once per distinct
    schema. Checking costs ~2.4 ms (idle; ~9 ms on a loaded machine); with a fresh schema every turn
    it was a third of a campaign's CPU per session against a fast server."""

    def __init__(self, template: str, schema: dict):
        super().__init__(schema)
        self.template = template


_CHECKED_TEMPLATES: set[str] = set()


def check_schema(schema: dict) -> None:
    """Raise LLMConfigError when ``schema`` is not a valid JSON Schema (checked once; see `TemplateSchema`)."""
    if not isinstance(schema, dict):
        raise LLMConfigError(f"json_schema must be a JSON object, got {type(schema).__name__}")
    if isinstance(schema, TemplateSchema):
        if schema.template not in _CHECKED_TEMPLATES:
            _check(schema)
            _CHECKED_TEMPLATES.add(schema.template)
        return
    _validator(json.dumps(schema, sort_keys=True))


def _check(schema: dict) -> None:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path) or "(root)"
        raise LLMConfigError(f"invalid JSON schema at {path}: {exc.message}") from None


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    """The checked validator of one schema (by its canonical JSON); LLMConfigError when it is invalid
    (not cached: an exception is raised again on every call)."""
    schema = json.loads(schema_json)
    _check(schema)
    return jsonschema.Draft202012Validator(schema)


def _extract(text: str) -> str:
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        return fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start > 0 and end > start:  # prose around one object
        return text[start : end + 1]
    return text


def parse_and_validate(text: str, schema: dict) -> tuple[Any | None, str | None]:
    """Return (value, None) when ``text`` holds schema-valid JSON, else (None, reason)."""
    try:
        value = json.loads(_extract(text))
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at char {exc.pos})"
    # a TemplateSchema differs every slate (no cache would hit) and its template is checked already
    validator = (jsonschema.Draft202012Validator(schema) if isinstance(schema, TemplateSchema)
                 else _validator(json.dumps(schema, sort_keys=True)))
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return None, f"JSON does not match the schema at {where}: {error.message}"
    return value, None


def repair_messages(messages: list[Message], bad_text: str, reason: str, schema: dict) -> list[Message]:
    """The conversation for the one repair retry: show the model its answer and the error."""
    return [
        *messages,
        {"role": "assistant", "content": bad_text[:2000]},
        {
            "role": "user",
            "content": (
                f"That answer was rejected: {reason}. Reply again with only one JSON object "
                f"that matches this JSON schema, nothing else:\n{json.dumps(schema)}"
            ),
        },
    ]
