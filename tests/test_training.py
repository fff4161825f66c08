"""DPO training of the simulated user (simulator/training.py), the adapter in both backends, bad input.

The real SmolLM2-135M is trained for one step on a tiny pair set (no mocks): the adapter must
be saved with its record, load back through the transformers backend, change the logits in the
direction DPO pushes (chosen over rejected), and convert to a GGUF adapter that llama.cpp applies
with the same effect. The GGUF base is dequantised once per module into a model folder, since
loading a GGUF through transformers takes 20-50 s on the shared cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evals.cli import run
from evals.cli import app as cli_app
from personas.infra.assets import smollm2_gguf
from simulator.llm.backends.hf_transformers import TransformersBackend
from simulator.llm.backends.hf_weights import ADAPTER_META, load_causal_lm
from simulator.llm.errors import LLMConfigError
from simulator.training import PairSetError, TrainSettings, read_pair_set, split_personas, train_dpo

PERSONAS = Path(__file__).parent / "data" / "personas_movies.jsonl"
SYSTEM = "You are Maya. You love comedies and hate horror films. Answer in JSON."
USER = "Rate these films: h1 Scream (Horror), c1 Airplane (Comedy)."
CHOSEN = '{"utterance": "I love a good laugh", "ratings": {"h1": 1, "c1": 5}, "chosen": ["c1"], "stop": false}'
REJECTED = '{"utterance": "Scary films are great", "ratings": {"h1": 5, "c1": 2}, "chosen": ["h1"], "stop": false}'


def _row(chosen=CHOSEN, rejected=REJECTED, rc=1.0, rr=0.0) -> dict:
    return {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "reward_chosen": rc, "reward_rejected": rr}


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cli(*args: str, capsys) -> tuple[int, str]:
    capsys.readouterr()  # only what the command prints (not a fixture's loading bars)
    code = run(cli_app, list(args))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("smollm2")
    tok, lm = load_causal_lm(smollm2_gguf())
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def trained(base_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    pairs = _write(tmp / "pairs.jsonl", [_row(), _row(rc=0.5, rr=0.5)])  # the tie is dropped
    settings = TrainSettings(base_model=str(base_dir), max_steps=1, batch_size=1, learning_rate=2e-3, save_steps=1,
                             max_length=256, seed=3)
    result = train_dpo(pairs, tmp / "out", settings, extra={"split": {"held_out_personas": ["x"]}}, show_progress=False)
    return result, settings


@pytest.fixture(scope="module")
def backends(trained, base_dir) -> tuple[TransformersBackend, TransformersBackend]:
    """(base, base + the trained adapter) through the transformers backend."""
    result, _ = trained
    return TransformersBackend(base_dir), TransformersBackend(base_dir, adapter=result.out)  # the output folder suffices


def _logprob(backend: TransformersBackend, completion: str) -> float:
    """Sum of log-probabilities of ``completion`` as the assistant's answer to the test prompt."""
    tok, lm = backend._tok, backend._lm
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    head = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    full = head + tok(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([full])
    with torch.no_grad():
        logp = torch.log_softmax(lm(input_ids=ids).logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    return float(logp[torch.arange(len(head) - 1, len(full) - 1), targets[len(head) - 1:]].sum())


def test_training_saves_adapter_record_and_pairs(trained):
    result, settings = trained
    out = result.out
    assert result.steps == 1 and result.pairs == 1
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_size > 10_000
    assert (out / "adapter" / ADAPTER_META).is_file()
    record = json.loads((out / "training.json").read_text())
    assert record["seed"] == 3 and record["settings"]["learning_rate"] == settings.learning_rate
    assert record["n_pairs"] == 1 and record["n_dropped_one_sided"] == 1
    assert record["split"] == {"held_out_personas": ["x"]}
    assert record["base_fingerprint"]["hidden_size"] == 576 and record["result"]["steps"] == 1
    assert read_pair_set(out / "pairs.jsonl")[0][0]["chosen"][0]["content"] == CHOSEN
    assert (out / "checkpoints" / "checkpoint-1").is_dir()


def test_adapter_loads_in_transformers_and_moves_logits_toward_chosen(trained, backends):
    base, tuned = backends
    from simulator.llm.cache import content_tag

    # the adapter's folder and content name the model: another adapter in an "out" folder is another model
    weights = trained[0].adapter / "adapter_model.safetensors"
    assert tuned.model == f"{base.model}+out@{content_tag(weights)}"
    margin_base = _logprob(base, CHOSEN) - _logprob(base, REJECTED)
    margin_tuned = _logprob(tuned, CHOSEN) - _logprob(tuned, REJECTED)
    assert margin_tuned > margin_base + 0.05, (margin_base, margin_tuned)


def test_rerun_resumes_from_checkpoint_and_other_settings_are_refused(trained, base_dir):
    result, settings = trained
    again = train_dpo(result.out / "pairs.jsonl", result.out, settings, show_progress=False)
    assert again.resumed_from is not None and again.resumed_from.endswith("checkpoint-1") and again.steps == 1
    with pytest.raises(ValueError, match="other settings or pairs"):
        train_dpo(result.out / "pairs.jsonl", result.out, settings.model_copy(update={"beta": 0.5}), show_progress=False)


def test_gguf_adapter_in_llama_cpp_matches_transformers(trained, backends, tmp_path, capsys):
    """The converted adapter changes llama.cpp's next-token distribution the way PEFT changes
    transformers' (q/k row permutation included); a wrong layout would decorrelate the changes."""
    import llama_cpp
    from llama_cpp import Llama

    result, _ = trained
    code, err = _cli("train", "export-gguf", "--adapter", str(result.out), "--out", str(tmp_path / "a.gguf"), capsys=capsys)
    assert code == 0, err
    base, tuned = backends
    text = base._tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
                                         add_generation_prompt=True, tokenize=False) + CHOSEN[:20]
    ids = base._tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        hf_b, hf_t = (torch.log_softmax(b._lm(**ids).logits[0, -1].float(), -1).numpy() for b in (base, tuned))

    def cpp(**kw):
        llm = Llama(model_path=str(smollm2_gguf()), n_ctx=512, n_threads=2, seed=0, verbose=False, **kw)
        llm.eval(ids["input_ids"][0].tolist())
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()
        return Llama.logits_to_logprobs(logits)

    cpp_b, cpp_t = cpp(), cpp(lora_path=str(tmp_path / "a.gguf"))
    from simulator.llm.backends.embedded import EmbeddedBackend
    from simulator.llm.cache import content_tag

    twin = tmp_path / "other" / "a.gguf"  # the same file name elsewhere, other bytes: another model for the cache
    twin.parent.mkdir()
    twin.write_bytes((tmp_path / "a.gguf").read_bytes() + b"\0")
    names = [EmbeddedBackend(lora_path=p, n_ctx=256).model for p in (tmp_path / "a.gguf", twin)]
    assert names[0] == f"{smollm2_gguf().stem}+a@{content_tag(tmp_path / 'a.gguf')}" and names[0] != names[1]
    top = np.argsort(-hf_b)[:100]
    d_hf, d_cpp = (hf_t - hf_b)[top], (cpp_t - cpp_b)[top]
    assert np.abs(d_cpp).max() > 1e-3  # the adapter is applied
    assert np.corrcoef(d_hf, d_cpp)[0, 1] > 0.8
    # `llm generate --adapter` serves it; a missing adapter is one line
    code, err = _cli("llm", "generate", "--prompt", "Hi", "--max-tokens", "4", "--adapter", str(tmp_path / "a.gguf"),
                     capsys=capsys)
    assert code == 0, err
    code, err = _cli("llm", "generate", "--prompt", "Hi", "--adapter", str(tmp_path / "none.gguf"), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "none.gguf" in err and "Traceback" not in err


def test_adapter_for_another_base_model_is_one_line(base_dir, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    small = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=49152))
    get_peft_model(small, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "other")
    with pytest.raises(LLMConfigError, match="another base model"):
        TransformersBackend(base_dir, adapter=tmp_path / "other")
    code, err = _cli("train", "export-gguf", "--adapter", str(tmp_path / "other"), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "another base model" in err and "Traceback" not in err
    assert not (tmp_path / "other" / "adapter.gguf").exists()


def test_adapter_trained_on_another_base_is_refused_by_fingerprint(trained, base_dir, tmp_path):
    """Same shapes, other weights (a fine-tune of another model): the recorded fingerprint catches it."""
    import shutil

    result, _ = trained
    shutil.copytree(result.adapter, tmp_path / "ad")
    meta = json.loads((tmp_path / "ad" / ADAPTER_META).read_text())
    meta["base_fingerprint"]["embedding_checksum"] += 1.0
    (tmp_path / "ad" / ADAPTER_META).write_text(json.dumps(meta))
    with pytest.raises(LLMConfigError, match="another base model.*embedding_checksum"):
        TransformersBackend(base_dir, adapter=tmp_path / "ad")


# ---- bad input of `personasim train consistency`: one line, exit 2, nothing written ---------------


@pytest.mark.parametrize("rows, expected", [
    ([], "pair set is empty"),
    ([_row(rc=0.5, rr=0.5), _row(rejected=CHOSEN)], "only one-sided pairs (2 rows"),
])
def test_bad_pair_sets(tmp_path, capsys, rows, expected):
    pairs = _write(tmp_path / "p.jsonl", rows)
    code, err = _cli("train", "consistency", "--personas", str(PERSONAS), "--out", str(tmp_path / "o"),
                     "--pairs", str(pairs), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err and str(pairs) in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(PairSetError):
        read_pair_set(pairs)


@pytest.mark.parametrize("content, expected", [(None, "no such pair file"),
                                               ('{"prompt": "caf\u00e9"}\n'.encode("latin-1"), "not a UTF-8 text file")])
def test_missing_or_undecodable_pair_file(tmp_path, capsys, content, expected):
    pairs = tmp_path / "p.jsonl"
    if content is not None:
        pairs.write_bytes(content)
    code, err = _cli("train", "consistency", "--personas", str(PERSONAS), "--out", str(tmp_path / "o"),
                     "--pairs", str(pairs), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and f"{pairs}: {expected}" in err
    assert not (tmp_path / "o").exists()


def test_malformed_pair_names_line(tmp_path, capsys):
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps(_row()) + "\n" + json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    code, err = _cli("train", "consistency", "--personas", str(PERSONAS), "--out", str(tmp_path / "o"),
                     "--pairs", str(pairs), capsys=capsys)
    assert code == 2 and f"{pairs}:2: field 'rejected'" in err


@pytest.mark.parametrize("args, expected", [
    (["--held-out", "3"], "leaves no training persona"),
    (["--held-out", "0"], "at least one persona"),
    (["--held-out-ids", "comedy-nurse,scifi-engineer,family-dad"], "no training persona"),
    (["--held-out-ids", "nobody"], "'nobody' is not in the persona file"),
])
def test_split_without_held_out_or_training_persona(tmp_path, capsys, args, expected):
    code, err = _cli("train", "consistency", "--personas", str(PERSONAS), "--out", str(tmp_path / "o"), *args,
                     capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err and str(PERSONAS) in err
    assert not (tmp_path / "o").exists()


def test_split_is_seeded_and_disjoint():
    from personas.card import read_personas

    cards = read_personas(PERSONAS)
    train, held = split_personas(cards, held_out=1, seed=5)
    assert len(held) == 1 and {c.id for c in train} | {c.id for c in held} == {c.id for c in cards}
    assert split_personas(cards, held_out=1, seed=5)[1][0].id == held[0].id


def test_unknown_reward_and_a_pair_set_collected_otherwise_are_one_line(tmp_path, capsys):
    code, err = _cli("train", "consistency", "--personas", str(PERSONAS), "--out", str(tmp_path / "o"),
                     "--reward", "judge", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "--reward 'judge'" in err and "structured, ranking" in err
    assert not (tmp_path / "o").exists()
    # a folder whose pairs were ranked by the structured reward is not reused for the ranking reward
    out = tmp_path / "run"
    out.mkdir()
    collection = {"users_per_persona": 2, "turns": 3, "best_of": 4, "catalog": "ml-100k", "seed": 0,
                  "reward": "structured", "reshow_from": 1}
    (out / "training.json").write_text(json.dumps({"collection": collection}))
    (out / "pairs.jsonl").write_text(json.dumps(_row()) + "\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, err = _cli("train", "consistency", "--personas", str(PERSONAS), "--out", str(out), "--reward", "ranking",
                     capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "training.json" in err and "(reward)" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "training.json").write_text("[1, 2")
    code, err = _cli("train", "consistency", "--personas", str(PERSONAS), "--out", str(out), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "training.json: not a training record" in err
    (out / "training.json").write_text(json.dumps({"collection": ["structured"]}))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, err = _cli("train", "consistency", "--personas", str(PERSONAS), "--out", str(out), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "training.json: field 'collection' is not an object" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
