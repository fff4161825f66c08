"""The world generator's knobs, the map end to end (tiny), its predictor, and its bad-input rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from personas.infra.files import write_whole
from recsys import leave_last_out
from recsys.map import STATS, MapConfig, predictor_accuracy, read_map_config, run_map, summarise
from recsys.synthetic import KnobError, WorldConfig, generate

torch.set_num_threads(1)
SMALL = dict(n_users=80, n_items=320, n_clusters=8, per_user=16)


def _genre_share(ds) -> np.ndarray:
    """Per user, the share of their positives in their most frequent planted taste."""
    g, _ = ds.genre_matrix()
    r = ds.ratings
    out = []
    for _, grp in r.groupby("user"):
        counts = g[grp["item"].to_numpy()].sum(0)
        out.append(counts.max() / counts.sum())
    return np.array(out)


def test_world_knobs_control_the_planted_structure():
    one = generate(WorldConfig(tastes=1, separation=4.0, noise=0.0, **SMALL))
    many = generate(WorldConfig(tastes=4, separation=4.0, noise=0.0, **SMALL))
    blurred = generate(WorldConfig(tastes=1, separation=0.25, noise=0.0, **SMALL))
    noisy = generate(WorldConfig(tastes=1, separation=4.0, noise=0.8, **SMALL))
    assert _genre_share(one).mean() > 0.85  # one distinct taste: most of a user's positives sit in it
    assert _genre_share(many).mean() < _genre_share(one).mean() - 0.2  # up to four tastes: spread over several
    assert _genre_share(blurred).mean() < _genre_share(one).mean() - 0.3  # low separation: tastes blur
    assert _genre_share(noisy).mean() < _genre_share(one).mean() - 0.3
    flat = generate(WorldConfig(pop_skew=0.0, **SMALL)).ratings["item"].value_counts()
    skewed = generate(WorldConfig(pop_skew=2.0, **SMALL)).ratings["item"].value_counts()
    assert skewed.iloc[:10].sum() > 2 * flat.iloc[:10].sum()  # the top-10 items take far more of the positives
    # the same protocol as ML-100k runs on it: one random positive held out per user
    split = leave_last_out(one)
    assert len(split.test_users) == 80 and split.train.sum() == 80 * 15
    again = generate(WorldConfig(tastes=1, separation=4.0, noise=0.0, **SMALL))
    assert one.ratings.equals(again.ratings)  # seeded


def test_unknown_or_out_of_range_knobs_are_one_line_errors(tmp_path):
    with pytest.raises(KnobError, match="unknown knob 'taste'; knobs are tastes, separation"):
        WorldConfig.with_knobs(taste=2)
    with pytest.raises(KnobError, match="unknown knob 'colour'"):
        MapConfig(knobs={"tastes": [1, 2], "colour": [1]})
    with pytest.raises(KnobError, match="noise=1.5 is out of range"):
        MapConfig(knobs={"noise": [0.1, 1.5]})
    p = tmp_path / "map.yaml"
    p.write_text("knobs: {tastes: [1, 2]}\nseed: 3\n")
    with pytest.raises(KnobError, match="unknown setting 'seed'"):
        read_map_config(p)
    p.write_text(json.dumps({"knobs": {"tastes": [1, 2], "separation": [1.0, 4.0]}, "seeds": 2}))
    assert read_map_config(p).seeds == 2


def test_a_map_config_with_the_old_setting_names_reads_the_same(tmp_path):
    p = tmp_path / "old.json"
    p.write_text(json.dumps({"knobs": {"tastes": [1, 2]}, "personas": 3, "persona_cal": [0.5]}))
    cfg = read_map_config(p)
    assert (cfg.mixture_k, cfg.mixture_cal) == (3, [0.5])  # K mixture components; the mixture reranker's lambdas
    p.write_text(json.dumps({"knobs": {"tastes": [1, 2]}, "personas": 3, "mixture_k": 3}))
    with pytest.raises(KnobError, match="give mixture_k or its old name personas, not both"):
        read_map_config(p)


def test_cli_map_unknown_knob_exits_2_with_one_line(tmp_path):
    from evals.cli import app

    p = tmp_path / "map.json"
    p.write_text(json.dumps({"knobs": {"tastes": [1, 2], "sep": [1.0]}}))
    result = CliRunner().invoke(app, ["recsys", "map", "--out", str(tmp_path / "o"), "--config", str(p), "--quiet"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "unknown knob 'sep'" in result.output
    assert not (tmp_path / "o" / "map.json").exists()


def test_cli_map_places_the_instacart_sample(tmp_path):
    """`recsys map` places the packaged Instacart sample beside the cells (a tiny map, one seed, two epochs)."""
    from evals.cli import app

    p = tmp_path / "map.json"
    p.write_text(json.dumps({"knobs": {"tastes": [1], "separation": [0.5, 4.0]}, "seeds": 1, "place_seeds": 1,
                             "world": SMALL, "epochs": 2, "mmr": [0.5], "dpp": [0.5], "calibration": [0.5],
                             "mixture_cal": [0.5], "candidates": 30}))
    result = CliRunner().invoke(app, ["recsys", "map", "--out", str(tmp_path / "o"), "--config", str(p), "--quiet",
                                      "--no-ml100k", "--instacart", "--workers", "1"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "o" / "map.json").read_text())
    assert list(saved["placed"]) == ["instacart"]
    cell = saved["placed"]["instacart"]
    assert set(cell["stats"]) == set(STATS) and isinstance(cell["predicted_winner"], bool)
    assert "instacart: " in saved["answer"] and "instacart: " in result.output


def _cell(stat: float, winner: bool) -> dict:
    flat = {s: 0.5 for s in STATS}  # statistics that say nothing
    return {"stats": {**flat, "component_entropy": stat, "multimodality": -stat}, "winner": winner}


def test_predictor_scores_held_out_cells():
    cells = [_cell(s, s > 0.5) for s in np.linspace(0.0, 1.0, 12)]
    pred = predictor_accuracy(cells)
    assert pred["held_out_accuracy"] == 1.0 and pred["n_winner_cells"] == 6
    assert pred["statistic"] in ("component_entropy", "multimodality") and 0.4 < abs(pred["threshold"]) < 0.6
    assert pred["winner_when"] == ("above" if pred["statistic"] == "component_entropy" else "below")
    flipped = predictor_accuracy([_cell(s, s < 0.5) for s in np.linspace(0.0, 1.0, 12)])
    assert flipped["winner_when"] == ("below" if flipped["statistic"] == "component_entropy" else "above")
    rng = np.random.default_rng(0)
    noise = [_cell(float(s), bool(w)) for s, w in zip(rng.random(12), rng.random(12) > 0.5)]
    assert predictor_accuracy(noise)["held_out_accuracy"] < 0.9  # labels unrelated to the statistic
    # settled cells: the accuracy over them alone is reported beside the accuracy over all
    half = [{**c, "settled": i % 2 == 0} for i, c in enumerate(cells)]
    pred = predictor_accuracy(half)
    assert pred["n_settled_cells"] == 6 and pred["held_out_accuracy_settled"] == 1.0
    assert np.isnan(predictor_accuracy(cells)["held_out_accuracy_settled"])


def test_map_end_to_end_writes_json_and_heat_map(tmp_path):
    mc = MapConfig(knobs={"tastes": [1, 3], "separation": [0.5, 4.0]}, seeds=2, world=SMALL, dim=8, epochs=8,
                   mmr=[0.5], dpp=[0.5], calibration=[0.5], mixture_cal=[0.5], candidates=30)
    record = run_map(mc, tmp_path / "m", show_progress=False, workers=2, write=write_whole)
    saved = json.loads((tmp_path / "m" / "map.json").read_text())
    assert len(saved["cells"]) == 4 and saved["cells"][0]["knobs"] == {"tastes": 1, "separation": 0.5}
    cell = saved["cells"][3]
    assert set(cell["ild"]["margins"]) == {"ampcf-k4", "ampcf-k4+mixture@0.5"}
    assert cell["winner"] == (cell["ild"]["best_margin"] >= 0) and "kl" in cell
    lo, hi = cell["ild"]["ci95"]
    assert lo <= cell["ild"]["best_margin"] <= hi and cell["settled"] == (lo > 0 or hi < 0)
    assert set(cell["stats"]) == set(STATS)
    assert all(0.0 <= c["stats"][s] <= 1.0 for c in saved["cells"] for s in ("component_entropy", "attention_entropy"))
    # one distinct taste per user leaves the components' weights more concentrated than three tastes do
    by = {(c["knobs"]["tastes"], c["knobs"]["separation"]): c for c in saved["cells"]}
    assert by[(1, 4.0)]["stats"]["component_entropy"] < by[(3, 4.0)]["stats"]["component_entropy"]
    # far-apart planted tastes make the catalog's MF item vectors cluster more (item_silhouette; 0.21 -> 0.52 at 300
    # users and 480 items, a weaker 0.27 -> 0.33 in this tiny world)
    for t in (1, 3):
        assert by[(t, 4.0)]["stats"]["item_silhouette"] > by[(t, 0.5)]["stats"]["item_silhouette"]
    assert saved["predictor"]["n_cells"] == 4 and "held-out accuracy" in saved["answer"]
    assert (tmp_path / "m" / "map.png").stat().st_size > 5000
    assert record["wall_s"] > 0 and record["cpu_s"] > 0 and record["workers"] == 2
    # the worker processes change nothing: one process gives the same cells, seed by seed
    inline = run_map(mc, tmp_path / "one", show_progress=False, workers=1, write=write_whole)
    assert inline["cells"] == saved["cells"] and json.dumps(inline["predictor"]) == json.dumps(saved["predictor"])


def test_answer_calls_an_unsettled_placement_a_tie():
    """A data set placed with one seed has no interval: its verdict is reported as a tie, not as a loss."""
    from recsys.map import answer

    def placed(margins):
        return {"stats": {"component_entropy": 0.4}, "predicted_winner": True,
                **summarise([{"stats": {s: 0.4 for s in STATS},
                              "margins": {a: {"ampcf-k4": m, "ampcf-k4+mixture@0.5": m - 0.01} for a in ("ild", "kl")},
                              "mixture_calibrated": ["ampcf-k4+mixture@0.5"]}
                             for m in margins])}

    pred = {"statistic": "component_entropy", "winner_when": "below", "threshold": 0.5, "held_out_accuracy": 1.0,
            "n_cells": 2}
    one = answer([], pred, {"ml-100k": placed([-0.002])})
    assert "measured loser (margin -0.0020; a tie: 1 seed(s) do not settle it)" in one
    three = answer([], pred, {"ml-100k": placed([-0.03, -0.031, -0.029])})
    assert "measured loser (margin -0.0300)." in three
    assert "extrapolates" not in three  # no cells: no range to be outside of


def test_answer_says_when_a_placed_data_set_lies_outside_the_cells_range():
    from recsys.map import answer

    pred = {"statistic": "attention_entropy", "winner_when": "below", "threshold": 0.024, "held_out_accuracy": 1.0,
            "n_cells": 2}
    cells = [{"knobs": {"tastes": 1}, "winner": True, "stats": {"attention_entropy": 0.017}},
             {"knobs": {"tastes": 2}, "winner": False, "stats": {"attention_entropy": 0.050}}]

    def placed(v):
        return {"stats": {"attention_entropy": v}, "predicted_winner": True, "winner": False, "settled": True,
                "ild": {"best_margin": -0.01, "best_margin_per_seed": [-0.01] * 5}}

    assert "attention_entropy = 0.010 (outside the cells' 0.017 - 0.050: the rule extrapolates), predicted winner" \
        in answer(cells, pred, {"ml-100k": placed(0.010)})
    assert "attention_entropy = 0.020, predicted winner" in answer(cells, pred, {"ml-100k": placed(0.020)})


def test_map_can_score_ampcf_started_from_mf_beside_the_from_scratch_probe(tmp_path):
    """`pretrained`: AMP-CF started from the cell's MF is one more mixture variant (plain and mixture-calibrated);
    the probe statistics and every other row stay those of the map without it."""
    base = dict(knobs={"tastes": [2], "separation": [1.0, 4.0]}, seeds=2, world=SMALL, dim=8, epochs=4, mmr=[0.5],
                dpp=[0.5], calibration=[0.5], mixture_cal=[0.5], candidates=30)
    plain = run_map(MapConfig(**base), tmp_path / "a", show_progress=False, workers=1, write=write_whole)["cells"][1]
    both = run_map(MapConfig(**base, pretrained=True), tmp_path / "b", show_progress=False, workers=1,
                   write=write_whole)["cells"][1]
    margins = both["ild"]["margins"]
    assert set(margins) == {"ampcf-k4", "ampcf-k4+mixture@0.5", "ampcf-k4-mf", "ampcf-k4-mf+mixture@0.5"}
    assert {v: margins[v] for v in plain["ild"]["margins"]} == plain["ild"]["margins"]
    assert both["stats"] == plain["stats"]
    assert both["ild"]["plain_margin"] == max(margins["ampcf-k4"], margins["ampcf-k4-mf"])
    assert both["ild"]["best_margin"] == max(margins.values()) >= plain["ild"]["best_margin"]
    with pytest.raises(KnobError, match="pretrained must be true or false, got 'yes'"):
        MapConfig(pretrained="yes")
    with pytest.raises(KnobError, match="at least two cells"):
        MapConfig(knobs={"tastes": [2], "separation": [4.0]})


def test_summarise_tells_the_calibrated_variant_by_its_field_not_its_label():
    """The mixture-calibrated variant is the one the rows' reranker field names: a label without '+' is not
    taken for a plain variant, and a plain one with '+' in it is not taken for calibrated."""
    seed = {"stats": {s: 0.4 for s in STATS},
            "margins": {a: {"mine+v2": 0.03, "calibrated": 0.01} for a in ("ild", "kl")},
            "mixture_calibrated": ["calibrated"]}
    out = summarise([seed, seed])
    assert out["ild"]["plain_margin"] == 0.03 and out["ild"]["calibrated_margin"] == 0.01
