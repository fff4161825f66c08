"""`personasim campaign report DIR [--open]` on whole and damaged campaign folders: what is missing is
said in place of its section and in a warning line (exit 0); nothing to report is one error line (exit 2)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.campaign_fixtures import write_campaign

ROOT = Path(__file__).resolve().parents[1]


def _report(run_dir: Path, *flags: str, browser: Path | None = None) -> subprocess.CompletedProcess:
    """The command in a child process, on a machine with no display (and ``browser`` as $BROWSER)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    if browser is not None:
        env["BROWSER"] = str(browser)
    return subprocess.run([sys.executable, "-m", "evals.cli", "campaign", "report", str(run_dir), *flags],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_campaign(tmp_path_factory.mktemp("pristine"), users_per_persona=1, runs=2, turns=2)


@pytest.fixture()
def campaign(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "campaign"))


def _one_error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_whole_campaign_reports_without_warnings(campaign):
    res = _report(campaign)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    out = res.stdout.strip().splitlines()
    assert out[0] == "can these simulated users be believed?" and out[-1] == f"wrote {campaign / 'report.html'}"
    assert all(ln.split()[0] in ("ok", "warn", "bad", "missing") for ln in out[1:-1]) and len(out) > 4
    page = (campaign / "report.html").read_text()
    assert "data-missing" not in page and "data-warning" not in page
    assert "data-assumption" in page and "stated, not fitted" in page  # the grounded users' context, marked
    assert (campaign / "drift.json").is_file() and (campaign / "ab.json").is_file()


def test_truncated_events_report_the_complete_turns_and_warn(campaign):
    events = campaign / "events.jsonl"
    lines = events.read_bytes().splitlines(keepends=True)
    events.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # killed mid-write
    res = _report(campaign)
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith("warning: ") and "last line is cut off" in res.stderr and str(events) in res.stderr
    page = (campaign / "report.html").read_text()
    assert f"{len(lines) - 1} turns" in page and "last line is cut off" in page and "data-warning" in page
    assert 'id="transcripts-data"' in page


def test_no_events_keeps_the_personas_and_says_what_is_missing(campaign):
    (campaign / "events.jsonl").unlink()
    res = _report(campaign)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("warning: ") == 1 and "events.jsonl: no such file" in res.stderr
    page = (campaign / "report.html").read_text()
    assert page.count('data-missing="events"') == 2  # transcripts and the per-variant table
    assert 'data-missing="drift"' in page and 'data-missing="ab"' in page
    assert 'class="card" id="persona-p0"' in page and 'id="transcripts-data"' not in page
    assert "unknown: " in page  # the validity rows that need events


def test_unreadable_event_line_is_named(campaign):
    events = campaign / "events.jsonl"
    lines = events.read_text().splitlines(keepends=True)
    events.write_text("".join(lines[:3]) + "{not json\n" + "".join(lines[3:]))
    res = _report(campaign)
    assert res.returncode == 0 and f"{events}:4: not a personasim turn event" in res.stderr, res.stderr
    assert f"{events}:4" in (campaign / "report.html").read_text()


def test_no_personas_keeps_the_transcripts(campaign):
    shutil.rmtree(campaign / "personas")
    res = _report(campaign)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("warning: ") == 1 and "personas: " in res.stderr and "no such personas file" in res.stderr
    page = (campaign / "report.html").read_text()
    assert 'data-missing="personas"' in page and 'class="card"' not in page
    assert 'id="transcripts-data"' in page and "not recorded (no persona cards" in page


def test_nothing_to_report_is_one_error_line(campaign, tmp_path):
    shutil.rmtree(campaign / "personas")
    (campaign / "events.jsonl").write_text("")
    line = _one_error_line(_report(campaign))
    assert "nothing to report" in line and "events.jsonl: no events" in line and "personas.jsonl" in line
    line = _one_error_line(_report(tmp_path / "nowhere"))
    assert "no campaign.json" in line
    (campaign / "campaign.json").write_text('{"config": {"variants": "oops"}}')
    line = _one_error_line(_report(campaign))
    assert line.startswith(f"error: {campaign / 'campaign.json'}: not a readable campaign record")


def test_open_without_a_display_prints_the_path(campaign):
    res = _report(campaign, "--open")
    assert res.returncode == 0, res.stderr
    assert f"no browser to open it here: open {(campaign / 'report.html').as_uri()}" in res.stdout


def test_open_uses_the_default_browser(campaign, tmp_path):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    res = _report(campaign, "--open", browser=browser)
    assert res.returncode == 0, res.stderr
    assert opened.read_text().strip() == (campaign / "report.html").as_uri()
    assert "no browser" not in res.stdout


def test_the_report_names_the_config_its_events_were_written_under(campaign, edit_prompts):
    """The config hash covers the prompt templates: after they change, a report of an older run still names
    the hash its events carry, not the one its config would get today."""
    import json

    from evals.campaign.driver import load_campaign
    from evals.report.summary import _header, load_events

    cfg = load_campaign(campaign)
    df, _ = load_events(campaign)
    written = json.loads((campaign / "campaign.json").read_text())["config_hash"]
    assert _header(cfg, df)["config_hash"] == written == cfg.config_hash()
    edit_prompts("turn", "The app shows you:", "You see:")
    assert cfg.config_hash() != written and _header(cfg, df)["config_hash"] == written


def test_the_report_says_which_code_wrote_which_turns(campaign, monkeypatch):
    """campaign.json's 'code' gets an entry each time other code resumes the folder; the report names the code
    in its header and warns, with the turn ranges, when more than one wrote the events."""
    import json

    from evals.campaign import driver as camp

    n = len((campaign / "events.jsonl").read_text().splitlines())
    res = _report(campaign)
    assert res.returncode == 0 and "code not recorded" in (campaign / "report.html").read_text()  # an old folder
    assert camp.record_code(campaign, 0) is None  # this code wrote all the turns
    assert camp.record_code(campaign, 0) is None  # the same code again: no second entry
    ours = camp.code_version()["sources"]
    assert json.loads((campaign / "campaign.json").read_text())["code"] == [
        {**camp.code_version(), "runtime": camp.kernel_report(), "from_turn": 0}]
    res = _report(campaign)
    assert res.returncode == 0 and "written by" not in res.stderr, res.stderr
    assert f"code {ours}" in (campaign / "report.html").read_text()

    monkeypatch.setattr(camp, "code_version", lambda: {"version": "9.9", "sources": "0123456789ab"})
    assert camp.record_code(campaign, 5) == ours  # other code resumed the folder after 5 turns
    assert camp.code_ranges(json.loads((campaign / "campaign.json").read_text())["code"], n) == [
        {"sources": ours, "version": importlib.metadata.version("personasim"), "turns": [0, 5]},
        {"sources": "0123456789ab", "version": "9.9", "turns": [5, n]}]
    res = _report(campaign)  # a child process: its own code_version, the entries on disk
    assert res.returncode == 0
    warning = f"written by 2 versions of the code (turns 1-5: {ours}; turns 6-{n}: 0123456789ab"
    assert warning in res.stderr and "code 2 versions" in (campaign / "report.html").read_text()
    assert warning in (campaign / "report.html").read_text()

    # the same code resumed on other kernels: recorded, one range, and both runtimes in the header
    other = {**camp.kernel_report(), "cpu": "Other CPU", "torch_cpu_capability": "AVX512"}
    monkeypatch.setattr(camp, "kernel_report", lambda: other)
    assert camp.record_code(campaign, 7) is None
    assert len(camp.code_ranges(json.loads((campaign / "campaign.json").read_text())["code"], n)) == 2
    res = _report(campaign)
    page = (campaign / "report.html").read_text()
    assert warning in res.stderr and "code 2 versions" in page
    assert "then llama.cpp built for" in page and "torch AVX512" in page and "Other CPU" in page


def test_code_ranges_drop_codes_that_wrote_nothing():
    from evals.campaign.driver import code_ranges

    assert code_ranges(None, 10) == []
    code = [{"sources": "a", "version": "1", "from_turn": 4}, {"sources": "b", "version": "1", "from_turn": 10},
            {"sources": "c", "version": "1", "from_turn": 10}]
    assert code_ranges(code, 10) == [{"sources": None, "version": None, "turns": [0, 4]},
                                     {"sources": "a", "version": "1", "turns": [4, 10]}]
