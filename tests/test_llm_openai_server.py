"""The openai backend and CLI against llama-cpp-python's real OpenAI-compatible server."""

from __future__ import annotations

import json
import subprocess
import sys

from simulator.llm import create_client
from tests.test_llm_embedded import MESSAGES, PERSONA_SCHEMA


async def test_openai_backend_gets_schema_valid_json(llama_server):
    client = create_client("openai", base_url=llama_server, model="smollm2", json_mode="json_object")
    results = [await client.generate(MESSAGES, max_tokens=80, seed=s, json_schema=PERSONA_SCHEMA) for s in (1, 2)]
    await client.aclose()
    for c in results:
        assert c.ok, c.error
        assert c.parsed["rating"] in range(1, 6) and c.tokens_out > 0
    assert client.usage.requests == 2 and client.usage.tokens_out == sum(c.tokens_out for c in results)


async def test_same_seed_same_answer_over_http(llama_server):
    client = create_client("openai", base_url=llama_server, model="smollm2")
    a = await client.generate(MESSAGES, temperature=1.0, max_tokens=30, seed=9)
    b = await client.generate(MESSAGES, temperature=1.0, max_tokens=30, seed=9)
    await client.aclose()
    assert a.ok and a.text == b.text


def test_cli_against_server(llama_server):
    out = subprocess.run(
        [sys.executable, "-m", "evals.cli", "llm", "generate", "--backend", "openai", "--base-url", llama_server,
         "--model", "smollm2", "--prompt", "Say hello.", "--max-tokens", "20"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert "openai/smollm2" in out.stderr
