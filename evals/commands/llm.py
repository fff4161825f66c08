"""`personasim llm generate`: one completion from any backend, from the shell."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def generate(
    prompt: str = typer.Option(..., "--prompt", help="User message."),
    system: Optional[str] = typer.Option(None, "--system", help="System message."),
    backend: str = typer.Option("embedded", "--backend", help="embedded | openai | transformers"),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (openai) or path (transformers, embedded)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1"),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key."),
    json_schema: Optional[Path] = typer.Option(None, "--json-schema", help="JSON Schema file; the answer must match it."),
    json_mode: str = typer.Option("json_schema", "--json-mode", help="openai only: json_schema | json_object | prompt"),
    seed: int = typer.Option(0, "--seed"),
    temperature: float = typer.Option(0.7, "--temperature"),
    max_tokens: int = typer.Option(256, "--max-tokens"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="On-disk response cache (off by default here)."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="A tuned simulator (`personasim train consistency` "
                                          "output), or a GGUF LoRA file (embedded) / PEFT folder (transformers)."),
) -> None:
    """Print one completion (the JSON object when --json-schema is given)."""
    from pydantic import ValidationError

    from evals.commands.errors import check_backend, fail, option_error
    from evals.campaign.config import LLMSettings
    from simulator.llm import create_client

    try:
        settings = LLMSettings(backend=backend, model=model, base_url=base_url, api_key_env=api_key_env,
                               json_mode=json_mode, adapter=adapter)
    except ValidationError as exc:
        fail(option_error(exc))
    schema = None if json_schema is None else read_schema(json_schema)  # the cheap checks first
    check_backend(settings)
    options = settings.backend_options()  # as a campaign builds them
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]

    async def run():
        client = create_client(backend, cache_dir=cache_dir, **options)
        try:
            return await client.generate(
                messages, temperature=temperature, max_tokens=max_tokens, seed=seed, json_schema=schema
            )
        finally:
            await client.aclose()

    completion = asyncio.run(run())
    if not completion.ok:
        fail(f"{completion.backend}/{completion.model}: {completion.error}")
    typer.echo(json.dumps(completion.parsed, ensure_ascii=False) if schema is not None else completion.text)
    typer.echo(
        f"[{completion.backend}/{completion.model} seed={seed} tokens={completion.tokens_in}+{completion.tokens_out} "
        f"{completion.latency_s:.2f}s{' cached' if completion.cached else ''}]",
        err=True,
    )


def read_schema(path: Path) -> dict:
    """A JSON Schema file (a JSON object, at most 1 MB); InputError naming the file otherwise. The schema's
    own validity is checked by the client before any call."""
    from evals.campaign.inputs import SMALL_FILE_BYTES, InputError, read_text

    text = read_text(path, "JSON schema", SMALL_FILE_BYTES)
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--json-schema {path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(schema, dict):
        raise InputError(f"--json-schema {path}: a JSON schema is an object, not {type(schema).__name__}")
    return schema
