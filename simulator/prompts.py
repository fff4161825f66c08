"""Prompt templates (Jinja2 files in simulator/prompts/), rendered strictly.

A missing variable is an error, not an empty string, so a template and the
code that fills it cannot drift apart silently.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from personas.infra.files import files_digest

PROMPT_DIR = Path(__file__).parent / "prompts"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPT_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
        auto_reload=False,  # a running campaign keeps the templates it started with
    )


@lru_cache(maxsize=None)
def prompt_data(name: str):
    """The JSON file ``simulator/prompts/<name>`` (worked examples a prompt is built from), read once."""
    import json

    return json.loads((PROMPT_DIR / name).read_text(encoding="utf-8"))


def render(name: str, **values) -> str:
    """Render ``simulator/prompts/<name>.j2`` with ``values``; surrounding whitespace stripped."""
    return _env().get_template(f"{name}.j2").render(**values).strip()


@lru_cache(maxsize=1)
def templates_digest() -> str:
    """12 hex chars over every template's and prompt data file's (*.j2, *.json) name and text. Part of a campaign's config hash
    (`evals.campaign.config.CampaignConfig.config_hash`): the same config asked with other prompts is
    another campaign, and its events are not resumed into one written under these."""
    return files_digest(sorted([*PROMPT_DIR.glob("*.j2"), *PROMPT_DIR.glob("*.json")]), PROMPT_DIR)[:12]
