"""The openai backend against a real local server that injects faults.

Every request must end either with its own answer (after retries) or with a
recorded failure; none is answered twice, lost, or given another's answer.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from simulator.llm import create_client

ECHO = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}


async def test_faults_end_in_success_or_recorded_failure(fault_server):
    url = fault_server(fault_rate=0.45, hang=3, seed=7)
    client = create_client(
        "openai", base_url=url, model="fault-echo", timeout_s=0.5, max_retries=3, backoff_s=0.01, concurrency=16
    )
    texts = [f"request number {i}" for i in range(80)]
    results = await asyncio.gather(
        *(client.generate([{"role": "user", "content": t}], seed=i, json_schema=ECHO) for i, t in enumerate(texts))
    )
    await client.aclose()
    stats = httpx.get(url.removesuffix("/v1") + "/stats").json()

    assert len(results) == len(texts)
    ok = [t for t, r in zip(texts, results) if r.ok]
    failed = [t for t, r in zip(texts, results) if not r.ok]
    for text, result in zip(texts, results):
        if result.ok:
            assert result.parsed == {"echo": text}  # its own answer, not a neighbour's
            assert stats["served"].get(text) == 1  # answered exactly once
        else:
            assert result.error and "gave up after 4 attempts" in result.error
            assert result.parsed is None
            assert text not in stats["served"]  # a failure is never a served answer
    # every fault kind really happened, and retries rescued most requests
    assert set(stats["injected"]) == {"429", "500", "hang", "truncated", "nonjson"}
    print(f"ok={len(ok)} failed={len(failed)} injected={stats['injected']} retries={client.usage.retries}")
    assert len(ok) > len(failed)
    assert client.usage.requests == len(texts)
    assert client.usage.failures == len(failed)
    assert client.usage.retries == sum(r.attempts - 1 for r in results)
    assert client.usage.retries >= sum(stats["injected"].values()) - len(failed)


async def test_unreachable_server_is_a_recorded_failure():
    from tests.servers.process import free_port

    client = create_client("openai", base_url=f"http://127.0.0.1:{free_port()}/v1", model="x", max_retries=1, backoff_s=0.01)
    c = await client.generate([{"role": "user", "content": "hi"}])
    assert not c.ok and "cannot connect" in c.error and c.attempts == 2


async def test_schema_mismatch_gets_one_repair_then_recorded_failure(fault_server):
    url = fault_server(fault_rate=0.0)
    client = create_client("openai", base_url=url, model="fault-echo", cache_dir=None)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    c = await client.generate([{"role": "user", "content": "hello"}], json_schema=schema)
    assert not c.ok
    assert c.error.startswith("invalid JSON after one repair")
    assert c.attempts == 2 and client.usage.repairs == 1 and client.usage.failures == 1
    assert c.parsed is None


async def test_api_key_is_never_shown(fault_server, monkeypatch, caplog):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("SERVER_KEY", "right-key-abcdef")
    url = fault_server(api_key_env="SERVER_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    client = create_client("openai", base_url=url, model="fault-echo")
    with caplog.at_level("DEBUG"):
        c = await client.generate([{"role": "user", "content": "hello"}])
    assert not c.ok and "401" in c.error and "OPENAI_API_KEY" in c.error
    assert c.attempts == 1  # a bad key is not retried
    assert secret not in c.error and secret not in caplog.text and secret not in c.model_dump_json()


def test_missing_key_for_default_endpoint_is_one_clear_line(monkeypatch):
    from simulator.llm import LLMConfigError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="set OPENAI_API_KEY"):
        create_client("openai", model="gpt-4o-mini")


async def test_cache_makes_a_repeat_free_and_accounting_sums(fault_server, tmp_path):
    url = fault_server(fault_rate=0.0)
    client = create_client("openai", base_url=url, model="fault-echo", cache_dir=tmp_path)
    msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]
    first = [await client.generate(m, seed=1, json_schema=ECHO) for m in msgs]
    second = [await client.generate(m, seed=1, json_schema=ECHO) for m in msgs]
    other_seed = await client.generate(msgs[0], seed=2, json_schema=ECHO)
    stats = httpx.get(url.removesuffix("/v1") + "/stats").json()
    assert all(not c.cached for c in first) and all(c.cached for c in second)
    assert [c.parsed for c in first] == [c.parsed for c in second]
    assert not other_seed.cached  # the seed is part of the key
    assert Counter(stats["served"]) == Counter({"q0": 2, "q1": 1, "q2": 1, "q3": 1, "q4": 1})
    u = client.usage
    assert (u.requests, u.cache_hits) == (11, 5)
    assert u.tokens_out == sum(c.tokens_out for c in first) + other_seed.tokens_out
