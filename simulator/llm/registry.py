"""Backends by name. Each entry imports its SDK only when chosen."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from simulator.llm.backends.base import Backend
from simulator.llm.client import LLMClient
from simulator.llm.errors import LLMConfigError

#: name -> "module:Class"; add a provider by adding a line.
BACKENDS: dict[str, str] = {
    "embedded": "simulator.llm.backends.embedded:EmbeddedBackend",
    "openai": "simulator.llm.backends.openai_compat:OpenAIBackend",
    "transformers": "simulator.llm.backends.hf_transformers:TransformersBackend",
}


def create_backend(name: str, **options: Any) -> Backend:
    """Build the backend ``name`` with its options (None values are dropped)."""
    if name not in BACKENDS:
        raise LLMConfigError(f"unknown LLM backend {name!r}; choose one of: {', '.join(sorted(BACKENDS))}")
    module, cls = BACKENDS[name].split(":")
    options = {k: v for k, v in options.items() if v is not None}
    return getattr(importlib.import_module(module), cls)(**options)


def create_client(
    backend: str = "embedded",
    *,
    concurrency: int = 4,
    max_retries: int = 4,
    backoff_s: float = 0.5,
    cache_dir: str | Path | None = None,
    **backend_options: Any,
) -> LLMClient:
    """A ready LLMClient. ``backend_options`` go to the backend, e.g.
    ``model``/``base_url``/``api_key_env``/``timeout_s``/``json_mode`` for `openai`,
    ``model_path``/``n_threads`` for `embedded`, ``model`` for `transformers`.
    """
    return LLMClient(
        create_backend(backend, **backend_options),
        concurrency=concurrency,
        max_retries=max_retries,
        backoff_s=backoff_s,
        cache_dir=cache_dir,
    )
