"""The HTML report renders in a real headless Chromium with every plot visible."""

from __future__ import annotations

import json
import re

from evals.report.render import render_report
from tests.chromium import dump_dom, screenshot


def constructed_summary() -> dict:
    personas = ["p0", "p1", "p2"]
    drift = {
        uv: {
            "ratio_within_over_between": r, "icc": 1 - r / 2,
            "per_persona": [{"persona_id": p, "ratio": r * (i + 1) / 2} for i, p in enumerate(personas)],
            "consistency_by_turn": {"prompt_to_line": {"0": 0.9, "1": 0.8, "2": 0.7}},
        }
        for uv, r in (("layered", 0.3), ("naive", 1.2))
    }
    ab_rows = [{"metric": m, "control": 0.4, "treatment": 0.5, "diff": d, "ci_low": d - 0.05, "ci_high": d + 0.05,
                "p_value": 0.01, "p_holm": 0.03, "n_users": 8}
               for m, d in (("acceptance_rate", 0.1), ("diversity", 0.02), ("prompt_to_line", -0.01))]
    return {
        "header": {"name": "t", "config_hash": "abc123", "code": "c0de", "seed": 0, "backend": "embedded",
                   "content_digest": "d1g35t0123456789", "runtime": "llama.cpp built for AVX AVX2 · torch AVX2 × 2 threads",
                   "model": "m", "n_events": 10, "n_failed": 1, "n_sessions": 4, "tokens_in": 100, "tokens_out": 50,
                   "mixture_k": 4},
        "offline": [{"variant": v, "ndcg@10": n, "ild@10": d} for v, n, d in
                    (("mf", 0.07, 0.7), ("mf+dpp", 0.06, 0.8), ("ampcf", 0.072, 0.75))],
        "by_variant": [{"variant": "mf", "user_variant": "layered", "sessions": 4, "acceptance_rate": 0.4, "diversity": 0.6},
                       {"variant": "ampcf", "user_variant": "layered", "sessions": 4, "acceptance_rate": 0.5, "diversity": 0.7}],
        "drift": {"by_user_variant": drift},
        "ab": [{"control": "mf", "treatment": "ampcf", "rows": ab_rows}],
        "aa": {"variant": "mf", "n_metrics": 5, "n_significant": 0, "false_positive_rate": 0.0},
        "attribution": [{"user_id": "user-0000", "persona_id": "p0", "turn": 1, "title": "Heat <1995>",
                         "genres": ["Action"], "mixture_component": 2}],
    }


def test_report_renders_with_every_plot_visible(tmp_path):
    from tests.test_evals_report_map import map_record

    (tmp_path / "map.json").write_text(json.dumps(map_record()))  # `personasim recsys map` output beside it
    html_path, md_path = render_report(constructed_summary(), tmp_path)
    page = html_path.read_text()
    assert "Heat &lt;1995&gt;" in page  # escaped, not injected
    assert "content digest d1g35t0123456789 · llama.cpp built for AVX AVX2" in page  # the header names the build
    assert "src='http" not in page and 'src="http' not in page  # self-contained
    md = md_path.read_text()
    assert "| acceptance_rate |" in md and "ampcf vs mf" in md
    assert "content digest `d1g35t0123456789`" in md
    # the validity panel judges what the summary holds and says what it lacks
    assert '<tr data-status="missing" data-check="stability across runs, layered users">' in page  # no null
    assert '<tr data-status="warn" data-check="power of the A/B, ampcf vs mf">' in page  # power not recorded
    assert "unknown: not in this summary" in page and 'data-missing="personas"' in page

    profile = tmp_path / "profile"
    dom = dump_dom(html_path.as_uri(), profile)
    n_plots = len(re.findall(r"<img class=.plot.", page))
    assert n_plots == 6  # pareto, acceptance, drift, consistency, one A/B forest, the map
    assert "no data for this plot" not in page
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-plots="{n_plots}"' in body
    assert f'data-plots-visible="{n_plots}"' in body

    shot = screenshot(html_path.as_uri(), profile, tmp_path / "report.png")
    assert shot.exists() and shot.stat().st_size > 20_000
