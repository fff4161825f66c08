"""Real campaigns: on the embedded model (artifacts, drift, A/B, report, bad input),
and against a local OpenAI-compatible server (kill -9 and resume, Ray).

The second group uses tests/servers/fault_openai.py, whose answers are valid
for the schema and a pure function of the request (seed included), so runs are
fast and every difference between two runs would be ours: one uninterrupted
run is the reference, a second is killed with SIGKILL mid-campaign and
resumed, a third runs on local Ray; all three must hold exactly the same turns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "name": "test-campaign",
    "seed": 3,
    "personas": {"path": str(ROOT / "tests" / "data" / "personas_movies.jsonl"), "max_personas": 2},
    "users_per_persona": 1,
    "user_variants": ["layered", "naive"],
    "best_of": 1,
    "variants": ["mf", "ampcf"],
    "turns": 2,
    "slate_size": 4,
    "runs_per_user": 2,
    "llm": {"backend": "embedded", "n_threads": 1},
    "recsys": {"dim": 16, "mixture_k": 2, "epochs": 2, "onboarding_pool": 6},
    "sessions_in_flight": 2,
}


def _cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evals.cli", *args], capture_output=True, text=True, cwd=ROOT, **kw)


def _run(config: Path, out: Path, *flags: str, timeout: int | None = None) -> subprocess.CompletedProcess:
    """`personasim campaign run CONFIG --out OUT --quiet FLAGS...` in a child process."""
    return _cli("campaign", "run", str(config), "--out", str(out), "--quiet", *flags, timeout=timeout)


def _ran(config: Path, out: Path, *flags: str, timeout: int = 900) -> Path:
    """`_run` that must succeed; returns OUT."""
    res = _run(config, out, *flags, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def _write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _turns(out: Path) -> list[tuple]:
    from evals.campaign.events import read_events

    return sorted((e.key, tuple(s.id for s in e.slate), tuple(e.chosen), tuple(sorted(e.ratings.items())),
                   e.utterance, e.ok) for e in read_events(out / "events.jsonl"))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    return _write_config(CONFIG, tmp_path_factory.mktemp("cfg") / "campaign.yaml")


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory) -> Path:
    return _ran(config_file, tmp_path_factory.mktemp("reference"))


def test_reference_run_writes_every_artifact(reference):
    turns = _turns(reference)
    sessions = {k[:4] for k, *_ in turns}
    assert len(sessions) == 2 * 2 * 2 * 2  # variants x user variants x users x runs
    for name in ("campaign.json", "events.jsonl", "drift.json", "ab.json", "report.html", "summary.md", "models/offline.json"):
        assert (reference / name).exists(), name
    from personas.infra.files import file_sha256  # the content the campaign is pinned to (checked on --resume)

    meta = json.loads((reference / "campaign.json").read_text())
    assert meta["inputs"] == {
        "personas": file_sha256(CONFIG["personas"]["path"]),
        **{f"model {m}": file_sha256(reference / "models" / f"{m}.pt") for m in ("mf", "ampcf")}}
    from evals.campaign.driver import code_version  # and the code that wrote every turn, and the kernels it ran on
    from tests.test_portable_runtime import child_kernel_report

    assert meta["code"] == [{**code_version(), "runtime": child_kernel_report(), "from_turn": 0}]
    assert len(code_version()["sources"]) == 12
    first = json.loads((reference / "events.jsonl").read_text().splitlines()[0])
    assert first["config_hash"] and first["model"].startswith("SmolLM2") and first["seed"] > 0
    drift = json.loads((reference / "drift.json").read_text())
    assert {"ratio_within_over_between", "icc", "per_persona"} <= set(drift)
    ab = json.loads((reference / "ab.json").read_text())
    assert {t["user_variant"] for t in ab["tables"]} == {"layered", "naive"}  # one table per user variant
    assert {"metric", "control", "treatment", "diff", "ci_low", "ci_high", "p_value", "p_holm"} <= set(
        ab["tables"][0]["rows"][0])
    # AMP-CF slates carry mixture-component attributions, MF slates do not
    events = [json.loads(line) for line in (reference / "events.jsonl").read_text().splitlines()]
    amp = [s for e in events if e["variant"] == "ampcf" and e["ok"] for s in e["slate"]]
    assert amp and all(s["component"] in (0, 1) for s in amp)
    assert all(s["component"] is None for e in events if e["variant"] == "mf" for s in e["slate"])


@pytest.fixture(scope="module")
def server_config(tmp_path_factory):
    from tests.servers.process import free_port, serve

    port = free_port()
    with serve(["-m", "tests.servers.fault_openai", "--port", str(port), "--delay", "0.1", "--answer-schema"], port) as url:
        cfg = {**CONFIG, "name": "server-campaign", "best_of": 2, "users_per_persona": 2,
               "llm": {"backend": "openai", "base_url": url, "model": "fault-echo", "concurrency": 4}}
        yield _write_config(cfg, tmp_path_factory.mktemp("server") / "campaign.yaml")


@pytest.fixture(scope="module")
def server_reference(server_config, tmp_path_factory) -> Path:
    return _ran(server_config, tmp_path_factory.mktemp("server-reference"), "--no-report", timeout=600)


def test_kill_9_then_resume_gives_exactly_the_uninterrupted_turns(server_config, server_reference, tmp_path):
    config_file, reference = server_config, server_reference
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "evals.cli", "campaign", "run", str(config_file), "--out", str(out),
                             "--quiet", "--no-report"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = out / "events.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if events.exists() and events.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the campaign finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = events.read_bytes().count(b"\n")
    assert 10 <= written < len(_turns(reference))

    again = _run(config_file, out)
    assert again.returncode == 2 and "--resume" in again.stderr  # never silently appends
    assert _turns(_ran(config_file, out, "--resume")) == _turns(reference)


def test_a_resumed_turn_that_differs_from_disk_stops_the_run_and_names_it(server_config, server_reference, tmp_path):
    """What a resume against a server that ignores the seed (or with the cache off) would meet: the turn on
    disk and the replayed one differ. Here the disk is edited instead, so the replay is the honest one."""
    import shutil

    out = tmp_path / "edited"
    shutil.copytree(server_reference, out)
    lines = (out / "events.jsonl").read_text().splitlines(keepends=True)
    first = next(i for i, ln in enumerate(lines) if json.loads(ln)["turn"] == 0 and not json.loads(ln)["stop"])
    e = json.loads(lines[first])
    last = next(i for i, ln in enumerate(lines) if all(json.loads(ln)[k] == e[k] for k in
                                                        ("variant", "user_variant", "user_id", "run"))
                and json.loads(ln)["turn"] == 1)
    lines[first] = json.dumps({**e, "utterance": e["utterance"] + " (edited)"}) + "\n"
    del lines[last]  # the session is unfinished, so a resume replays it from turn 0
    (out / "events.jsonl").write_text("".join(lines))
    before = (out / "events.jsonl").read_bytes()
    res = _run(server_config, out, "--resume", "--no-report", timeout=600)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"variant {e['variant']}, user variant {e['user_variant']}, {e['user_id']}, run {e['run']}" in line
    assert "replayed turn 0 differently" in line and "utterance" in line
    assert (out / "events.jsonl").read_bytes() == before


def test_ray_executor_matches_local(server_config, server_reference, tmp_path):
    out = _ran(server_config, tmp_path / "ray", "--no-report", "--executor", "ray", timeout=600)
    assert len(_turns(out)) == len(_turns(server_reference)) > 0
    assert _turns(out) == _turns(server_reference)


def test_drift_and_ab_commands_on_a_run(reference):
    res = _cli("campaign", "drift", str(reference))
    assert res.returncode == 0, res.stderr
    assert "layered" in res.stdout and "naive" in res.stdout
    report_ab = (reference / "ab.json").read_bytes()
    res = _cli("campaign", "ab", str(reference), "--control", "mf", "--treatment", "ampcf")
    assert res.returncode == 0, res.stderr
    tables = json.loads((reference / "ab_ampcf_vs_mf.json").read_text())["tables"]
    assert [t["user_variant"] for t in tables] == ["layered", "naive"] and "naive users:" in res.stdout
    assert {r["metric"] for r in tables[0]["rows"]} >= {"like_rate", "acceptance_rate", "mean_rating"}
    assert (reference / "ab.json").read_bytes() == report_ab  # `campaign ab` and the report keep their own files
    bad = _cli("campaign", "ab", str(reference), "--control", "mf", "--treatment", "mf+dpp")
    assert bad.returncode == 2 and "mf+dpp" in bad.stderr and "Traceback" not in bad.stderr


def test_a_folder_of_another_campaign_is_refused(config_file, reference, tmp_path):
    other = _write_config({**CONFIG, "seed": 4}, tmp_path / "other.yaml")
    res = _run(other, reference)
    assert res.returncode == 2 and "choose another --out" in res.stderr


def test_disk_full_is_a_clear_error_and_keeps_what_was_written(config_file, reference, tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "events.jsonl").symlink_to("/dev/full")  # every write fails with ENOSPC
    res = _run(config_file, out, "--no-report", timeout=600)
    assert res.returncode == 2
    assert "cannot write" in res.stderr and "--resume" in res.stderr and "Traceback" not in res.stderr


def test_resuming_under_other_code_is_recorded_and_warned(config_file, reference, tmp_path, monkeypatch, caplog):
    """Other code may finish a campaign (most changes do not touch a turn); campaign.json records from which turn
    it wrote, and the run warns that the log now holds two codes' turns."""
    import logging
    import shutil

    from evals.campaign import driver as camp
    from evals.campaign.config import load_config

    out = Path(shutil.copytree(reference, tmp_path / "run"))
    lines = (out / "events.jsonl").read_text().splitlines(keepends=True)
    kept = len(lines) // 2
    (out / "events.jsonl").write_text("".join(lines[:kept]))
    ours = camp.code_version()["sources"]
    monkeypatch.setattr(camp, "code_version", lambda: {"version": "9.9", "sources": "0123456789ab"})
    with caplog.at_level(logging.WARNING, logger="evals.campaign.driver"):
        result = camp.run_campaign(load_config(config_file), out, resume=True, show_progress=False)
    assert result.new_turns == len(lines) - kept
    code = json.loads((out / "campaign.json").read_text())["code"]
    assert [(c["sources"], c["from_turn"]) for c in code] == [(ours, 0), ("0123456789ab", kept)]
    assert f"its first {kept} turns were written by other code (sources {ours}, now 0123456789ab)" in caplog.text
    assert _turns(out) == _turns(reference)  # the turns themselves are the same: only the record differs


PLUGIN = "examples.plugins.genre_pop:make_ranker"


def test_a_plugin_a_service_and_a_library_model_join_a_campaign_as_built_ins_do(server_config, tmp_path):
    """One line of config each: the plug-in, a real recommender service on 127.0.0.1 and implicit's ALS are
    trained (or asked), pinned, met by the users, scored offline, A/B-tested and reported exactly as MF is."""
    from recsys.registry import file_stem, model_file
    from tests.servers.process import free_port, serve

    port = free_port()
    with serve(["examples/service/serve.py", "--port", str(port)], port, ready_path="/health") as url:
        service = url.removesuffix("/v1")
        cfg = {**yaml.safe_load(server_config.read_text()), "variants": ["mf", PLUGIN, "als", service],
               "user_variants": ["layered"], "users_per_persona": 1, "runs_per_user": 1, "best_of": 1}
        out = _ran(_write_config(cfg, tmp_path / "byo.yaml"), tmp_path / "run", timeout=600)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert {e["variant"] for e in events if e["ok"]} == set(cfg["variants"])
    shapes = {v: sorted((e["turn"], len(e["slate"])) for e in events if e["variant"] == v) for v in cfg["variants"]}
    assert shapes[PLUGIN] == shapes["als"] == shapes[service] == shapes["mf"]
    assert {n for _, n in shapes["mf"]} == {4, 5}  # 4, and a re-shown item from turn 1 on
    inputs = json.loads((out / "campaign.json").read_text())["inputs"]
    assert {k for k in inputs if k.startswith("model ")} == {f"model {v}" for v in cfg["variants"]}
    assert model_file(out / "models", PLUGIN).suffix == ".pkl" and model_file(out / "models", service).is_file()
    offline = json.loads((out / "models" / "offline.json").read_text())["rows"]
    assert [r["variant"] for r in offline] == cfg["variants"] and all(r["ndcg@10"] > 0 for r in offline)
    ab = json.loads((out / "ab.json").read_text())["tables"]
    assert {t["treatment"] for t in ab} == {PLUGIN, "als", service} and all(t["control"] == "mf" for t in ab)
    report = (out / "report.html").read_text()
    assert PLUGIN in report and service in report
    res = _cli("campaign", "ab", str(out), "--control", "mf", "--treatment", PLUGIN)
    assert res.returncode == 0, res.stderr
    assert (out / f"ab_{file_stem(PLUGIN)}_vs_mf.json").is_file()


def test_a_failing_plugin_or_a_service_that_is_down_is_refused_before_the_folder_is_claimed(tmp_path):
    from tests.servers.process import free_port

    (tmp_path / "failing_plugin.py").write_text("def make():\n    raise RuntimeError('no weights in ./weights')\n")
    down = f"http://127.0.0.1:{free_port()}"
    no_token = {down: {"auth_env": "PERSONASIM_NO_SUCH_TOKEN", "retries": 0}}  # options reach the service
    for variant, services, line in (
        ("failing_plugin:make", {}, "error: field 'variants': recommender 'failing_plugin:make': its factory raised "
                                    "RuntimeError: no weights in ./weights"),
        (down, {}, f"error: field 'variants': recommender service {down}/health is not reachable (ConnectError"),
        (down, no_token, f"error: field 'variants': recommender service {down}: set PERSONASIM_NO_SUCH_TOKEN "
                         "(its auth token)"),
    ):
        cfg = _write_config({**CONFIG, "variants": ["mf", variant], "recsys": {**CONFIG["recsys"], "services": services}},
                            tmp_path / "c.yaml")
        res = subprocess.run([sys.executable, "-m", "evals.cli", "campaign", "run", str(cfg), "--out",
                              str(tmp_path / "run"), "--quiet"], capture_output=True, text=True, cwd=tmp_path,
                             timeout=300)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith(line), res.stderr
        assert not (tmp_path / "run").exists()
