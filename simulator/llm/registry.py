"""Backends by name. Each entry imports its SDK only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personas.infra.registry import Registry
from simulator.llm.backends.base import Backend
from simulator.llm.client import LLMClient
from simulator.llm.errors import LLMConfigError

@dataclass(frozen=True)
class BackendEntry:
    """One backend: ``target`` "module:Class" (imported only when chosen); ``local``: runs on this machine (its
    tokens cost no money); ``options(settings)``: the constructor's keywords from a campaign's LLM settings
    (an object with model, base_url, api_key_env, json_mode, n_threads and adapter: `evals.campaign.config`)."""

    name: str
    target: str
    local: bool
    options: Callable[[Any], dict]
    help: str


def _embedded_options(s) -> dict:
    lora = s.adapter and str(Path(s.adapter) / "adapter.gguf" if Path(s.adapter).is_dir() else s.adapter)
    return dict(model_path=s.model, n_threads=s.n_threads, lora_path=lora)


#: Add a provider: a `Backend` subclass in simulator/llm/backends/ and one ``BACKENDS.add`` line here;
#: `tests/test_registries.py` checks every entry.
BACKENDS: Registry[BackendEntry] = Registry("LLM backend")
BACKENDS.add("embedded", BackendEntry(
    "embedded", "simulator.llm.backends.embedded:EmbeddedBackend", True, _embedded_options,
    "SmolLM2-135M through llama.cpp, from its package (offline)"))
BACKENDS.add("openai", BackendEntry(
    "openai", "simulator.llm.backends.openai_compat:OpenAIBackend", False,
    lambda s: dict(model=s.model, base_url=s.base_url, api_key_env=s.api_key_env, json_mode=s.json_mode),
    "any OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API)"))
BACKENDS.add("transformers", BackendEntry(
    "transformers", "simulator.llm.backends.hf_transformers:TransformersBackend", True,
    lambda s: dict(model=s.model, adapter=s.adapter), "a Hugging Face model through transformers on the CPU"))


def create_backend(name: str, **options: Any) -> Backend:
    """Build the backend ``name`` with its options (None values are dropped)."""
    try:
        entry = BACKENDS[name]
    except ValueError as exc:
        raise LLMConfigError(str(exc)) from None
    module, cls = entry.target.split(":")
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
