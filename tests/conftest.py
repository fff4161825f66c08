"""Shared fixtures: real local servers and the embedded model, started once."""

from __future__ import annotations

import contextlib
import os
import tempfile

import pytest

from evals.campaign.runtime import pin_kernels  # noqa: E402

pin_kernels()  # the kernels the CLI computes with, before numpy or torch loads
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# reads of the test part are counted in a ledger of this run's own, never in the repository's docs/results/
os.environ["PERSONASIM_TEST_READS"] = os.path.join(tempfile.mkdtemp(prefix="test-reads-"), "test_reads.jsonl")

from tests.servers.process import free_port, serve  # noqa: E402


@pytest.fixture(scope="session")
def embedded_backend():
    """One in-process SmolLM2 for the whole run (loading is cheap; memory is not)."""
    from simulator.llm import create_backend

    return create_backend("embedded")


@pytest.fixture(scope="session")
def fidelity_run(tmp_path_factory):
    """A small fidelity run without the LLM feature: (its folder, its record). Its personas/ and calibration serve
    every test that needs calibrated twins."""
    from evals.validity.fidelity import FidelityConfig, run_fidelity

    out = tmp_path_factory.mktemp("fidelity")
    cfg = FidelityConfig(n_personas=3, users=12, positives=2, rated=3, calibration_users=40, use_llm=False,
                         ab_users=6, ab_turns=2, n_boot=200, seed=0)
    return out, run_fidelity(cfg, out, None, show_progress=False)


@pytest.fixture(scope="session")
def llama_server():
    """llama-cpp-python's own OpenAI-compatible server with the packaged SmolLM2."""
    from personas.infra.assets import smollm2_gguf

    port = free_port()
    args = ["-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "smollm2"]
    with serve(args, port, timeout_s=120) as url:
        yield url


@pytest.fixture()
def fault_server():
    """Factory: fault_server(fault_rate=..., delay=..., hang=..., api_key_env=...) -> base URL."""
    with contextlib.ExitStack() as stack:

        def start(**opts):
            port = free_port()
            args = ["-m", "tests.servers.fault_openai", "--port", str(port)]
            for k, v in opts.items():
                flag = f"--{k.replace('_', '-')}"
                args += [flag] if v is True else [flag, str(v)]
            return stack.enter_context(serve(args, port))

        yield start


@pytest.fixture()
def edit_prompts(tmp_path, monkeypatch):
    """edit_prompts(name, old, new): from the first call on, the templates are read from a copy (the real
    files untouched) in which ``name``.j2 (or ``name`` itself when it has a suffix: a prompt data file) has ``old``
    replaced by ``new``. Afterwards the real folder and its digest are back (checked)."""
    import shutil

    from simulator import prompts

    real = prompts.templates_digest()
    copy = tmp_path / "prompts"

    def edit(name: str, old: str, new: str) -> None:
        if not copy.exists():
            shutil.copytree(prompts.PROMPT_DIR, copy)
            monkeypatch.setattr(prompts, "PROMPT_DIR", copy)
        path = copy / (name if "." in name else f"{name}.j2")
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
        prompts.templates_digest.cache_clear()
        prompts.prompt_data.cache_clear()

    yield edit
    monkeypatch.undo()
    prompts.templates_digest.cache_clear()
    prompts.prompt_data.cache_clear()
    assert prompts.templates_digest() == real
