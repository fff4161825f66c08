"""LLMClient.option_probs: a judgement read as probabilities of fixed answers from
the first answer token's top-k log-probabilities, on every backend."""

from __future__ import annotations

import math

import pytest

from simulator.llm import LLMClient, create_client

LOVER = [
    {"role": "system", "content": "You are Sam. You love horror films more than anything and watch one every night."},
    {"role": "user", "content": "Do you want to watch a horror film? Answer yes or no."},
]
HATER = [
    {"role": "system", "content": "You are Sam. You hate horror films and never watch them."},
    LOVER[1],
]
YES_NO = ["yes", "no"]


async def test_embedded_yes_no_is_a_reproducible_distribution(embedded_backend):
    client = LLMClient(embedded_backend)  # no cache: every call reaches the model
    a = await client.option_probs(LOVER, YES_NO)
    # Another prompt in between fills the KV cache with other tokens; the answer must not change.
    await client.generate([{"role": "user", "content": "Name a colour."}], max_tokens=5)
    b = await client.option_probs(LOVER, YES_NO)
    assert a.ok, a.error
    assert set(a.probs) == set(YES_NO) and math.isclose(sum(a.probs.values()), 1.0)
    assert all(0.0 < p < 1.0 for p in a.probs.values())
    assert all(lp is not None and lp < 0.0 for lp in a.logprobs.values())  # both in the top-20 here
    assert (a.probs, a.logprobs) == (b.probs, b.logprobs) and not b.cached
    assert a.tokens_in > 20 and a.backend == "embedded" and a.model.startswith("SmolLM2")
    assert client.usage.requests == 3 and client.usage.failures == 0


async def test_embedded_persona_moves_the_probability(embedded_backend):
    # SmolLM2-135M leans "No" to this question whoever asks (P(yes) ~0.13 for the lover),
    # but the persona still moves it the right way: the signal a judge reads.
    client = LLMClient(embedded_backend)
    lover, hater = [await client.option_probs(m, YES_NO) for m in (LOVER, HATER)]
    assert lover.ok and hater.ok
    assert lover.probs["yes"] > 1.5 * hater.probs["yes"]


async def test_embedded_scores_the_prompt_that_generate_answers(embedded_backend):
    # The scoring path builds its prompt through the model's own chat handler: its most
    # likely first token is the one a greedy one-token completion returns.
    top = await embedded_backend.first_token_logprobs(LOVER, seed=0, top_logprobs=5)
    greedy = await LLMClient(embedded_backend).generate(LOVER, temperature=0.0, max_tokens=1)
    assert len(top) <= 5 and all(lp <= 0.0 for lp in top.values())
    assert max(top, key=top.get).strip() == greedy.text.strip()
    assert top.tokens_in == greedy.tokens_in


async def test_nonsense_options_are_a_recorded_failure(embedded_backend):
    client = LLMClient(embedded_backend)
    r = await client.option_probs(LOVER, ["zebra", "quux"])
    assert not r.ok and r.probs == {}
    assert r.error.startswith("no option of ['zebra', 'quux'] among the 20 most likely first tokens: 'I' ")
    assert r.logprobs == {"zebra": None, "quux": None}
    assert client.usage.failures == 1


async def test_prompt_longer_than_the_context_is_a_recorded_failure(embedded_backend):
    r = await LLMClient(embedded_backend).option_probs([{"role": "user", "content": "horror " * 3000}], YES_NO)
    assert not r.ok and "does not fit the context of 2048" in r.error


async def test_bad_options_are_refused_before_any_call(embedded_backend):
    client = LLMClient(embedded_backend)
    for options in ([], ["Yes", "yes"], ["no", " NO "], ["yes", ""]):
        with pytest.raises(ValueError, match="options must"):
            await client.option_probs(LOVER, options)
    assert client.usage.requests == 0


async def test_repeat_is_served_from_cache_and_never_collides_with_generate(embedded_backend, tmp_path):
    first = LLMClient(embedded_backend, cache_dir=tmp_path)
    a = await first.option_probs(LOVER, YES_NO)
    second = LLMClient(embedded_backend, cache_dir=tmp_path)  # a new process would see the same file
    b = await second.option_probs(LOVER, YES_NO)
    assert not a.cached and b.cached and b.probs == a.probs
    assert second.usage.cache_hits == 1 and second.usage.tokens_in == 0
    # Same messages and seed, other options or a plain generate: new keys, model calls.
    c = await second.option_probs(LOVER, ["no", "yes"])
    g = await second.generate(LOVER, temperature=0.0, max_tokens=1)
    assert not c.cached and not g.cached and g.text
    assert c.probs == pytest.approx({"no": a.probs["no"], "yes": a.probs["yes"]}, abs=1e-12)


async def test_openai_backend_matches_embedded_over_http(llama_server, embedded_backend):
    # llama-cpp-python's server is built with logits_all=True and returns top_logprobs
    # for chat completions; it runs the same GGUF and chat template as `embedded`.
    local = await LLMClient(embedded_backend).option_probs(LOVER, YES_NO)
    client = create_client("openai", base_url=llama_server, model="smollm2")
    remote = await client.option_probs(LOVER, YES_NO)
    await client.aclose()
    assert remote.ok, remote.error
    assert remote.backend == "openai" and remote.tokens_in == local.tokens_in
    assert math.isclose(sum(remote.probs.values()), 1.0)
    # Same weights, prompt tokens and llama.cpp kernels: the numbers were identical in every
    # run here. The tolerance allows for the server reusing a cached prompt prefix from
    # an earlier request, which evaluates the prompt in other chunks.
    for option in YES_NO:
        assert remote.logprobs[option] == pytest.approx(local.logprobs[option], abs=1e-3)
        assert remote.probs[option] == pytest.approx(local.probs[option], abs=1e-3)


async def test_server_without_logprobs_is_a_clear_permanent_failure(fault_server):
    url = fault_server(fault_rate=0.0)  # answers, but never with logprobs
    client = create_client("openai", base_url=url, model="fault-echo", backoff_s=0.01)
    r = await client.option_probs(LOVER, YES_NO)
    await client.aclose()
    assert not r.ok and r.probs == {}
    assert "model 'fault-echo' returned no top_logprobs" in r.error and url in r.error
    assert client.usage.retries == 0 and client.usage.failures == 1  # permanent: not retried


async def test_transient_faults_are_retried_for_option_probs(fault_server):
    url = fault_server(fault_rate=0.45, hang=3, seed=7)
    client = create_client("openai", base_url=url, model="fault-echo", timeout_s=0.5, max_retries=3, backoff_s=0.01)
    texts = [f"question {i}: yes or no?" for i in range(12)]
    results = [await client.option_probs([{"role": "user", "content": t}], YES_NO) for t in texts]
    await client.aclose()
    # A request ends at the server's real limit (no logprobs), reached through retries,
    # or gives up after its retries: a recorded failure either way, never a default.
    reached = sum("no top_logprobs" in r.error for r in results)
    gave_up = sum(r.error.startswith("gave up after 4 attempts") for r in results)
    assert reached + gave_up == len(texts) and reached > len(texts) // 2
    assert all(not r.ok and r.probs == {} for r in results)
    assert client.usage.retries > 0 and client.usage.failures == len(texts)


@pytest.mark.slow
async def test_transformers_backend_reads_option_probs():
    client = create_client("transformers")
    a = await client.option_probs(LOVER, YES_NO)
    b = await client.option_probs(LOVER, YES_NO)
    assert a.ok, a.error
    assert math.isclose(sum(a.probs.values()), 1.0) and a.probs == b.probs
    assert a.tokens_in > 20 and a.backend == "transformers"
