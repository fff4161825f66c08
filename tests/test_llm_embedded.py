"""The embedded SmolLM2 backend through LLMClient, and the `llm generate` CLI."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import jsonschema
import pytest

from simulator.llm import LLMClient, LLMConfigError, create_backend, create_client

PERSONA_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "mood": {"enum": ["happy", "sad", "tired", "curious"]},
        "rating": {"enum": [1, 2, 3, 4, 5]},
    },
    "required": ["name", "mood", "rating"],
}
MESSAGES = [
    {"role": "system", "content": "You are Ana, a tired night-shift nurse who loves old comedies."},
    {"role": "user", "content": "Introduce yourself and rate your week from 1 to 5."},
]


@contextlib.contextmanager
def counted_evals(llm):
    """Counts the tokens llama.cpp evaluates (the real `eval`, wrapped) while the block runs."""
    evaluated: list[int] = []
    real_eval = llm.eval

    def counting_eval(tokens):
        evaluated.append(len(tokens))
        return real_eval(tokens)

    llm.eval = counting_eval
    try:
        yield evaluated
    finally:
        llm.eval = real_eval


async def test_schema_answer_is_valid_json(embedded_backend):
    client = LLMClient(embedded_backend)
    c = await client.generate(MESSAGES, max_tokens=80, seed=3, json_schema=PERSONA_SCHEMA)
    assert c.ok, c.error
    assert set(c.parsed) >= {"name", "mood", "rating"}
    assert c.parsed["mood"] in PERSONA_SCHEMA["properties"]["mood"]["enum"]
    assert c.parsed["rating"] in range(1, 6)
    assert c.tokens_in > 0 and c.tokens_out > 0 and c.model.startswith("SmolLM2")


async def test_seed_reaches_the_model(embedded_backend):
    client = LLMClient(embedded_backend)  # no cache: both calls hit the model
    a = await client.generate(MESSAGES, temperature=1.0, max_tokens=40, seed=11)
    b = await client.generate(MESSAGES, temperature=1.0, max_tokens=40, seed=11)
    others = {(await client.generate(MESSAGES, temperature=1.0, max_tokens=40, seed=s)).text for s in (12, 13, 14)}
    assert a.text == b.text and not b.cached
    assert len(others | {a.text}) > 1  # different seeds sample differently


async def test_an_answer_does_not_depend_on_what_ran_before_and_a_shared_prompt_is_evaluated_once(embedded_backend):
    """Generation reuses the prompt blocks the previous call left in the KV cache (a user's system
    prompt, the same every turn), and still answers exactly as from an empty cache."""
    llm = embedded_backend._llm
    turn = [MESSAGES[0], {"role": "user", "content": "The app shows Toy Story, Scream and Fargo. Pick one."}]
    other = [{"role": "system", "content": "You are Bo, a retired sailor."}, MESSAGES[1]]
    kw = dict(temperature=1.0, max_tokens=24, seed=7, json_schema=None)
    llm.reset()
    embedded_backend._scored = None
    fresh = (await embedded_backend.complete(turn, **kw)).text
    with counted_evals(llm) as evaluated:
        await embedded_backend.complete(other, **kw)  # another prompt in between
        evaluated.clear()
        after_other = (await embedded_backend.complete(turn, **kw)).text
        cold_cost = sum(evaluated)
        await embedded_backend.first_token_logprobs(other, seed=0, top_logprobs=5)  # scoring in between
        after_scoring = (await embedded_backend.complete(turn, **kw)).text
        evaluated.clear()
        again = (await embedded_backend.complete(turn, **kw)).text  # right after itself: the prompt's blocks reused
        warm_cost = sum(evaluated)
    assert fresh == after_other == after_scoring == again
    assert warm_cost < cold_cost


async def test_alternating_long_prompts_get_their_blocks_back_with_the_same_answers(embedded_backend):
    """A grounded user alternates item judgements (its persona's prompt) and utterances (its own):
    each would evict the other's blocks; the set-aside KV cache brings them back, answers unchanged."""
    llm = embedded_backend._llm
    judge = [{"role": "system", "content": "You are Ana, a night-shift nurse. Films you loved: " +
              "; ".join(f"Comedy number {i} (199{i % 10})" for i in range(20)) + ". Answer only yes or no."},
             {"role": "user", "content": "Would you enjoy watching Fargo (1996)?"}]
    voice = [{"role": "system", "content": "You are Ana. Right now: tired, alone, on a phone, one hour free. " * 6},
             {"role": "user", "content": "The app shows Toy Story, Scream and Fargo. Say what you think."}]
    kw = dict(temperature=1.0, max_tokens=16, seed=7, json_schema=None)
    llm.reset()
    embedded_backend._scored, embedded_backend._saved = None, []
    fresh_judge = await embedded_backend.first_token_logprobs(judge, seed=0, top_logprobs=5)
    llm.reset()
    embedded_backend._scored, embedded_backend._saved = None, []
    fresh_voice = (await embedded_backend.complete(voice, **kw)).text
    with counted_evals(llm) as evaluated:
        cold = await embedded_backend.first_token_logprobs(judge, seed=0, top_logprobs=5)  # the voice set aside
        cold_cost = sum(evaluated)
        evaluated.clear()
        voice_back = (await embedded_backend.complete(voice, **kw)).text
        voice_cost = sum(evaluated)
        evaluated.clear()
        judge_back = await embedded_backend.first_token_logprobs(judge, seed=0, top_logprobs=5)
        judge_cost = sum(evaluated)
    assert dict(judge_back) == dict(cold) == dict(fresh_judge)  # the same log-probs, to the bit
    assert voice_back == fresh_voice
    assert judge_cost <= 16 < cold_cost  # only the last block evaluated again
    assert voice_cost < cold_cost and len(embedded_backend._saved) <= 2


async def test_repeat_is_served_from_disk_cache(embedded_backend, tmp_path):
    first = LLMClient(embedded_backend, cache_dir=tmp_path)
    c1 = await first.generate(MESSAGES, max_tokens=30, seed=5)
    second = LLMClient(embedded_backend, cache_dir=tmp_path)  # a new process would see the same file
    c2 = await second.generate(MESSAGES, max_tokens=30, seed=5)
    assert not c1.cached and c2.cached and c1.text == c2.text
    assert second.usage.cache_hits == 1 and second.usage.tokens_out == 0


def test_bad_configuration_is_one_clear_line(tmp_path):
    with pytest.raises(LLMConfigError, match="unknown LLM backend 'gpt5'.*embedded, openai, transformers"):
        create_backend("gpt5")
    with pytest.raises(LLMConfigError, match="does not exist"):
        create_backend("embedded", model_path=tmp_path / "missing.gguf")
    with pytest.raises(LLMConfigError, match="needs a model name"):
        create_backend("openai", base_url="http://127.0.0.1:1/v1")


async def test_invalid_schema_is_refused_before_any_call(embedded_backend):
    client = LLMClient(embedded_backend)
    with pytest.raises(LLMConfigError, match="invalid JSON schema"):
        await client.generate(MESSAGES, json_schema={"type": "objekt"})
    assert client.usage.requests == 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evals.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_generate_with_schema(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(PERSONA_SCHEMA))
    out = _cli("llm", "generate", "--prompt", "Who are you?", "--system", "You are Ana.", "--json-schema", str(schema), "--seed", "2")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["mood"] in PERSONA_SCHEMA["properties"]["mood"]["enum"]


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for args, expected in [
        (["--backend", "nope"], "unknown LLM backend 'nope'"),
        (["--json-schema", str(bad)], "--json-schema"),
        (["--backend", "embedded", "--model", str(tmp_path / "x.gguf")], "does not exist"),
    ]:
        out = _cli("llm", "generate", "--prompt", "hi", *args)
        assert out.returncode == 2
        assert expected in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
async def test_transformers_backend_loads_the_same_gguf():
    client = create_client("transformers")
    c = await client.generate(MESSAGES, temperature=0.0, max_tokens=8, seed=0)
    assert c.ok and c.tokens_out > 0 and c.text.strip()


@pytest.mark.slow
async def test_transformers_backend_enforces_the_turn_schema():
    """Without the enforcer SmolLM2 through transformers failed every turn's JSON; with it each answer
    parses and matches the slate's schema (ids from the slate, ratings 1-5, the utterance's pattern)
    on the first try, no repair call."""
    from simulator.catalog import Item
    from simulator.turn import answer_schema, turn_schema

    client = create_client("transformers")
    slate = [Item(id="242", title="Airplane!", facets={"genres": ["Comedy"]}),
             Item(id="1003", title="Scream", facets={"genres": ["Horror"]})]
    messages = [{"role": "system", "content": "You are Maya, a nurse who loves comedies and avoids horror."},
                {"role": "user", "content": "Rate 242 Airplane! (Comedy) and 1003 Scream (Horror); choose what to watch."}]
    for schema in (turn_schema(slate, 1, 40), answer_schema(["yes", "no"])):
        c = await client.generate(messages, temperature=0.0, max_tokens=160, seed=0, json_schema=schema)
        assert c.ok, c.error
        jsonschema.validate(c.parsed, dict(schema))
        assert c.text.rstrip().endswith("}") and c.text == c.text.rstrip()  # stops at the closing brace
    assert client.usage.requests == 2  # no repair was needed
