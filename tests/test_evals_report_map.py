"""The report's map section: a `personasim recsys map` record beside the campaign is drawn with its answer,
predictor and placed data sets; no map is said in place; a damaged one is named in place and warned about."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markupsafe import escape

from evals.report.render import load_map, render_report
from recsys.map import answer, predictor_accuracy
from tests.campaign_fixtures import write_campaign

ROOT = Path(__file__).resolve().parents[1]
STATS = ("component_entropy", "component_rao", "multimodality")


def _cell(tastes: int, sep: float, margin: float, entropy: float) -> dict:
    side = {"margins": {"ampcf-k4": margin}, "best": "ampcf-k4", "best_margin": margin, "plain_margin": margin,
            "calibrated_margin": margin - 0.01, "best_margin_per_seed": [margin] * 3, "winner": margin >= 0}
    return {"knobs": {"tastes": tastes, "separation": sep}, "winner": margin >= 0, "ild": side,
            "kl": {**side, "winner": margin >= 0.005},
            "stats": {"component_entropy": entropy, "component_rao": 0.3, "multimodality": 0.5}}


def map_record() -> dict:
    """A 2 x 2 map as `recsys.map.run_map` writes it, with its own predictor and answer; ML-100k placed outside."""
    cells = [_cell(1, 0.5, -0.012, 0.70), _cell(3, 0.5, -0.02, 0.80), _cell(1, 4.0, 0.015, 0.40),
             _cell(3, 4.0, 0.006, 0.45)]
    pred = predictor_accuracy(cells, STATS)
    ml = _cell(0, 0, -0.0018, 0.30)
    ml["ild"] = {**ml["ild"], "best": "ampcf-k4-mf"}  # a map run with --pretrained
    ml["predicted_winner"] = bool(pred["predict"].predict([[ml["stats"][pred["statistic"]]]])[0])
    placed = {"ml-100k": {k: v for k, v in ml.items() if k != "knobs"}}
    return {"config": {"knobs": {"tastes": [1, 3], "separation": [0.5, 4.0]}, "seeds": 3},
            "cells": cells, "predictor": {k: v for k, v in pred.items() if k not in ("predict", "stat_index")},
            "placed": placed, "answer": answer(cells, pred, placed), "wall_s": 1.0}


def _summary() -> dict:
    from tests.test_evals_report import constructed_summary

    return constructed_summary()


def test_map_beside_the_report_is_drawn_with_its_answer(tmp_path):
    record = map_record()
    assert record["predictor"]["statistic"] == "component_entropy" and record["predictor"]["winner_when"] == "below"
    (tmp_path / "map.json").write_text(json.dumps(record))
    summary = _summary()
    html_path, md_path = render_report(summary, tmp_path)
    page = html_path.read_text()
    assert "<img class='plot' id='plot-map'" in page
    assert "2 of 4 cells are" in page
    assert record["answer"].split(".")[0] in page  # the map's own answer, in place
    predictor = page[page.index('id="map-predictor"'):page.index('id="map-placed"')]
    assert "component_entropy below" in predictor and ">1.000<" in predictor and "NOT met" not in predictor
    placed = page[page.index('id="map-placed"'):]
    # ML-100k's entropy (0.30) lies below every cell's (0.40-0.80): predicted a winner by extrapolation, measured
    # a loser
    assert "ml-100k" in placed and "0.400 – 0.800 (outside: extrapolated)" in placed
    assert ">winner<" in placed and ">loser<" in placed and "-0.0018" in placed and ">ampcf-k4-mf<" in placed
    assert 'data-missing="map"' not in page and "map" not in summary.get("missing", {})
    assert record["answer"] in md_path.read_text()


def test_no_map_is_said_in_place_without_a_warning(tmp_path):
    summary = _summary()
    page = render_report(summary, tmp_path)[0].read_text()
    assert 'id="map-absent"' in page and f"there is no {tmp_path / 'map.json'}" in page
    assert "personasim recsys map --out" in page and "plot-map" not in page
    assert "map" not in summary.get("missing", {})  # a campaign without a map is whole


@pytest.mark.parametrize("content, why", [
    ("{not json", "not a readable map.json"),
    ('{"cells": []}', "not a map.json from `personasim recsys map` (no 'predictor')"),
    ("[1, 2]", "no 'cells'")])
def test_damaged_map_is_named_in_place_and_missing(tmp_path, content, why):
    (tmp_path / "map.json").write_text(content)
    summary = _summary()
    page = render_report(summary, tmp_path)[0].read_text()
    assert 'data-missing="map"' in page and str(escape(why)) in page and str(tmp_path / "map.json") in page
    assert why in summary["missing"]["map"] and "plot-map" not in page
    assert load_map(tmp_path / "map.json")["problem"] == summary["missing"]["map"]


def test_map_a_report_cannot_draw_is_named_not_a_crash(tmp_path):
    record = map_record()
    del record["cells"][0]["ild"]
    (tmp_path / "map.json").write_text(json.dumps(record))
    summary = _summary()
    page = render_report(summary, tmp_path)[0].read_text()
    assert 'data-missing="map"' in page and "a map.json this report cannot draw (KeyError" in page


def test_campaign_report_shows_the_map_and_warns_about_a_damaged_one(tmp_path):
    run_dir = write_campaign(tmp_path / "c", users_per_persona=1, runs=2, turns=2)
    (run_dir / "map.json").write_text(json.dumps(map_record()))
    cmd = [sys.executable, "-m", "evals.cli", "campaign", "report", str(run_dir)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    page = (run_dir / "report.html").read_text()
    assert "plot-map" in page and 'id="map-answer"' in page
    (run_dir / "map.json").write_text('{"cells": []}')
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == (f"warning: map: {run_dir / 'map.json'}: not a map.json from "
                                  "`personasim recsys map` (no 'predictor')")
    assert 'data-missing="map"' in (run_dir / "report.html").read_text()
    shutil.rmtree(run_dir)
