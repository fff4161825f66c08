"""The portable runtime: llama.cpp built for a fixed instruction set, a crash that fails a child process
instead of the test run, kernels pinned for every numeric library, and the content digest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.campaign.events import TurnEvent
from evals.campaign.runner import content_digest
from evals.campaign.runtime import PINNED_ENV, describe, kernel_report, pin_kernels
from simulator.llm import LLMConfigError
from simulator.llm.backends import llama_build
from tests.cli_fixtures import cli, one_line_error, refused
from tests.event_fixtures import event_row


@pytest.fixture(scope="module")
def gguf() -> Path:
    from personas.infra.assets import smollm2_gguf

    return Path(smollm2_gguf())


def test_a_cpu_without_avx2_is_one_line_naming_what_is_missing():
    with pytest.raises(LLMConfigError, match=r"lacks avx2 bmi2.*LLAMA_ISA=native"):
        llama_build.check_cpu({"sse4_2", "avx", "fma", "f16c"}, machine="x86_64")
    llama_build.check_cpu({"avx2", "fma", "f16c", "bmi2"}, machine="x86_64")
    llama_build.check_cpu(set(), machine="aarch64")  # other architectures keep their own baseline


def test_system_info_is_parsed_to_features():
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | AMX_INT8 = 0 | LLAMAFILE = 1 | "
    assert llama_build.parse_system_info(info) == {"SSE3": "1", "AVX": "1", "AVX2": "1", "AVX512": "0",
                                                   "AMX_INT8": "0", "LLAMAFILE": "1"}


def test_the_installed_llama_cpp_is_the_portable_build():
    """Built for AVX2 + FMA + F16C, and for nothing newer: no AVX-512, no AMX (the path that crashed)."""
    features = set(llama_build.build_features())
    assert {"AVX2", "FMA", "F16C"} <= features, features
    assert not {f for f in features if f.startswith(("AVX512", "AMX"))}, features


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_text("not a model")
    with pytest.raises(LLMConfigError, match="not a GGUF file"):
        llama_build.check_gguf(bad)


def test_a_truncated_gguf_is_refused(tmp_path, gguf):
    cut = tmp_path / "cut.gguf"
    with open(gguf, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(gguf.stat().st_size // 2))
    with pytest.raises(LLMConfigError, match="truncated|damaged"):
        llama_build.check_gguf(cut)
    llama_build.check_gguf(gguf)  # the whole file passes


def test_the_probe_runs_one_generation_and_one_logprob_read_in_a_child(gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing remembered: the child runs
    llama_build.probe.cache_clear()
    report = llama_build.probe(str(gguf), 2)
    assert report["tokens"] >= 1 and report["text"].strip()
    assert report["top_logprob"] <= 0.0
    assert "AVX2" in report["features"]
    # remembered on disk for this model, library, threads and CPU: a new process reads it back
    assert len(list((tmp_path / "personasim" / "checks").glob("probe-*.json"))) == 1
    llama_build.probe.cache_clear()
    assert llama_build.probe(str(gguf), 2) == report
    llama_build.probe.cache_clear()


def test_a_passed_check_is_remembered_per_file_and_a_failure_never(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    f = tmp_path / "model.bin"
    f.write_bytes(b"one")
    calls = []

    def check():
        calls.append(1)
        return {"ok": len(calls)}

    assert llama_build.remembered("t", llama_build.file_identity(f), check) == {"ok": 1}
    assert llama_build.remembered("t", llama_build.file_identity(f), check) == {"ok": 1} and len(calls) == 1
    f.write_bytes(b"other content")  # the file changed: a new key, the check runs again
    assert llama_build.remembered("t", llama_build.file_identity(f), check) == {"ok": 2}

    def crash():
        raise LLMConfigError("crashed")

    g = tmp_path / "other.bin"
    g.write_bytes(b"x")
    for _ in range(2):  # a failure is raised each time, never written down
        with pytest.raises(LLMConfigError):
            llama_build.remembered("t", llama_build.file_identity(g), crash)
    assert len(list((tmp_path / "cache" / "personasim" / "checks").glob("t-*.json"))) == 2


def test_a_crash_in_the_child_is_one_line_naming_library_build_and_fix(gguf):
    """A real SIGSEGV in a real child process (a null read through ctypes) becomes an exception here."""
    crash = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]
    with pytest.raises(LLMConfigError) as err:
        llama_build.run_child(crash, str(gguf))
    line = str(err.value)
    assert "\n" not in line
    assert "crashed with SIGSEGV" in line and "llama-cpp-python" in line
    assert "built for AVX" in line and "make setup" in line


def test_cli_refuses_a_model_that_is_not_gguf(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"\x00" * 64)
    refused(["llm", "generate", "--backend", "embedded", "--model", str(bad), "--prompt", "hi"],
            ["model.gguf", "not a GGUF file"], [tmp_path])


def test_pin_kernels_sets_what_is_unset_and_keeps_what_is_set():
    env = {"OMP_NUM_THREADS": "16"}
    added = pin_kernels(env)
    assert env["OMP_NUM_THREADS"] == "16" and "OMP_NUM_THREADS" not in added
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"].startswith("AVX2")
    assert set(added) == set(PINNED_ENV) - {"OMP_NUM_THREADS"}


def child_kernel_report() -> dict:
    """`kernel_report` of a new process that pins as the CLI does (this test process's torch threads are
    whatever the tests before set)."""
    code = ("from evals.campaign.runtime import pin_kernels; pin_kernels()\n"
            "import json; from evals.campaign.runtime import kernel_report; print(json.dumps(kernel_report()))")
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_pinned_process_computes_on_the_avx2_kernels_and_two_threads():
    """Pinned before torch loads: torch runs its AVX2 kernels on two threads, whatever this CPU has."""
    report = child_kernel_report()
    assert report["torch_cpu_capability"] == "AVX2"
    assert report["torch_threads"] == 2 and report["unpinned"] == {}
    assert "AVX2" in report["llama_build"]
    assert "torch AVX2 × 2 threads" in describe(report)


def _events(**changes) -> list[TurnEvent]:
    rows = [dict(user_id=u, run=r, turn=t, chosen=[f"i{u}{t}"], latency_s=0.1 * t)
            for u in ("a", "b") for r in (0, 1) for t in (0, 1)]
    for key, value in changes.items():
        rows[0][key] = value
    return [TurnEvent(**event_row(**r)) for r in rows]


def test_content_digest_ignores_wall_time_and_order_but_not_content():
    base = _events()
    assert content_digest(base) == content_digest(list(reversed(base)))
    assert content_digest(base) == content_digest(_events(latency_s=9.0))
    assert content_digest(base) != content_digest(_events(chosen=["other"]))
    assert content_digest(base) != content_digest(base[1:])


def test_cli_digest_prints_it_and_refuses_a_folder_without_events(tmp_path):
    events = _events()
    (tmp_path / "events.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in events))
    proc = cli("campaign", "digest", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:3] == [content_digest(events), str(len(events)), "turns"]
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(cli("campaign", "digest", str(empty)), "events.jsonl", "no such file")


def test_kernel_report_is_json_and_names_unpinned_switches(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    report = kernel_report()
    json.dumps(report)
    assert report["unpinned"] == {"OMP_NUM_THREADS": "7"}
    assert "NOT PINNED: OMP_NUM_THREADS=7" in describe(report)


def test_the_setup_builds_the_fixed_instruction_set_by_default():
    """The set-up's default instruction set is the fixed one; a native build is an opt-in."""
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "LLAMA_ISA ?= avx2" in makefile
    assert "LLAMA_FLAGS_avx2 := -DGGML_NATIVE=OFF" in makefile
