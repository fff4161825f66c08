"""Render `report.html` and `summary.md`.

The page is self-contained: plots are inlined as PNG or SVG, the transcript browser's data as JSON
in a script tag and its code (templates/browser.js) inline; nothing is fetched. Input is the
summary dict that `evals.report.summary.summarise` builds; this module only formats. Templates live in
evals/report/templates/.
"""

from __future__ import annotations

import base64
import html
import json
from functools import partial
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from evals.report import plots
from personas.infra.files import write_whole

TEMPLATES = Path(__file__).parent / "templates"

OFFLINE_COLUMNS = ["variant", "ndcg@10", "recall@10", "ild@10", "coverage@10", "calibration_kl@10", "taste_coverage@10"]
VARIANT_COLUMNS = ["variant", "user_variant", "sessions", "acceptance_rate", "mean_rating", "diversity", "prompt_to_line",
                   "line_to_line", "qa", "faithful", "unparseable"]
AB_COLUMNS = ["metric", "control", "treatment", "diff", "ci_low", "ci_high", "p_value", "p_holm", "n_users"]
ATTRIBUTION_COLUMNS = ["user_id", "persona", "persona_id", "variant", "run", "turn", "title", "genres",
                       "mixture_component"]
SEPARABILITY_KEYS = ["k", "silhouette", "between_within_ratio", "pc1_variance_share", "max_confusion", "noise"]
#: `personasim recsys map --out RUN_DIR` writes it beside the campaign; the report shows it when it is there.
MAP_FILE = "map.json"
MAP_KEYS = ("cells", "predictor", "placed", "answer", "config")
PLACED_COLUMNS = ["data set", "statistic", "value", "cells' range", "predicted", "measured", "best mixture",
                  "margin (ILD frontier)", "margin (KL frontier)"]
#: issue 11's target for the map's predictor (held-out accuracy)
MAP_PREDICTOR_TARGET = 0.9


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def _html_table(rows: list[dict], columns: list[str]) -> Markup:
    if not rows:
        return Markup("<p class='meta'>(no rows)</p>")
    cols = [c for c in columns if any(c in r for r in rows)]
    head = "".join(f"<th class='{'l' if i == 0 else ''}'>{html.escape(c)}</th>" for i, c in enumerate(cols))
    body = "".join(
        "<tr>" + "".join(f"<td class='{'l' if i == 0 else ''}'>{html.escape(fmt(r.get(c)))}</td>" for i, c in enumerate(cols)) + "</tr>"
        for r in rows
    )
    return Markup(f"<table><tr>{head}</tr>{body}</table>")


def _md_table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(no rows)"
    cols = [c for c in columns if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)).replace("|", "/") for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def build_plots(s: dict) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if s.get("offline"):
        out["pareto"] = plots.pareto(s["offline"], "ild@10", "ndcg@10", "NDCG@10 vs intra-list diversity (offline)")
    by_variant = s.get("by_variant", [])
    if by_variant:
        labels = [f"{r['variant']}\n{r['user_variant']}" for r in by_variant]
        out["acceptance"] = plots.bars(
            labels,
            {"acceptance rate": [r.get("acceptance_rate") for r in by_variant],
             "diversity of accepted": [r.get("diversity") for r in by_variant]},
            "share", "Simulated users: acceptance and diversity per variant",
        )
    drift = s.get("drift", {}).get("by_user_variant", {})
    if drift:
        uvs = list(drift)
        series = {"observed ratio": [drift[uv].get("ratio_within_over_between") for uv in uvs],
                  "identical-persona null (mean)": [(drift[uv].get("null") or {}).get("mean") for uv in uvs]}
        out["drift"] = plots.bars(uvs, series, "within-run / across-persona variance",
                                  "Drift ratio against the ratio identical personas would give")
        curves = {}
        for uv, d in drift.items():
            for metric, points in (d.get("consistency_by_turn") or {}).items():
                curves[f"{uv}: {metric}"] = {int(k): v for k, v in points.items() if v is not None}
        if curves:
            out["consistency"] = plots.lines(curves, "turn", "score", "Consistency per turn")
    for i, ab in enumerate(s.get("ab") or []):
        ab["plot"] = f"ab{i}"
        out[f"ab{i}"] = plots.forest(ab["rows"], f"{ab['treatment']} - {ab['control']}")
    gallery = s.get("personas") or {}
    if gallery.get("map"):
        cards, alarm = gallery["cards"], bool((gallery.get("separability") or {}).get("collapse_alarm"))
        out["personas"] = plots.persona_map(gallery["map"]["xy"], [c["name"] for c in cards], [c["size"] for c in cards],
                                            gallery["map"]["share"], alarm)
    return out


def load_map(path: str | Path) -> dict:
    """The report's map section from a `personasim recsys map` record: {"path", "record"} when it is there and
    readable, {"path", "absent": True} when there is no file, {"path", "problem": why} when it is damaged."""
    path = Path(path)
    if not path.is_file():
        return {"path": str(path), "absent": True}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {"path": str(path), "problem": f"{path}: not a readable map.json ({str(exc).splitlines()[0]})"}
    lacks = [k for k in MAP_KEYS if not isinstance(record, dict) or k not in record]
    if lacks:
        return {"path": str(path), "problem": f"{path}: not a map.json from `personasim recsys map` (no {lacks[0]!r})"}
    return {"path": str(path), "record": record}


def map_tables(record: dict) -> dict:
    """What the map section prints beside its plot: the predictor and each real data set placed on the map."""
    pred = record["predictor"]
    stat = pred["statistic"]
    cells = record["cells"]
    lo, hi = min(c["stats"][stat] for c in cells), max(c["stats"][stat] for c in cells)

    def inside(v: float) -> str:  # outside the cells' range the rule extrapolates
        return f"{lo:.3f} – {hi:.3f}" + ("" if lo <= v <= hi else " (outside: extrapolated)")

    placed = [{"data set": name, "statistic": stat, "value": cell["stats"][stat],
               "cells' range": inside(cell["stats"][stat]),
               "predicted": "winner" if cell["predicted_winner"] else "loser",
               "measured": "winner" if cell["winner"] else "loser",
               "best mixture": cell["ild"].get("best", ""),  # e.g. an AMP-CF started from MF (`--pretrained`)
               # four decimals: margins of a few thousandths decide the verdict
               "margin (ILD frontier)": f"{cell['ild']['best_margin']:+.4f}",
               "margin (KL frontier)": f"{cell['kl']['best_margin']:+.4f}"}
              for name, cell in record["placed"].items()]
    acc = pred["held_out_accuracy"]
    rule = [{"predictor": f"{stat} {pred['winner_when']} {pred['threshold']:.3f} marks a winner",
             "held-out accuracy": acc, "cells": pred["n_cells"], "winner cells": pred["n_winner_cells"],
             "accuracy on settled cells": pred.get("held_out_accuracy_settled"),
             "settled cells": pred.get("n_settled_cells"),
             f"target >= {MAP_PREDICTOR_TARGET}": "met" if acc >= MAP_PREDICTOR_TARGET else "NOT met"}]
    return {"placed": placed, "rule": rule, "n_cells": len(cells), "n_winners": sum(bool(c["winner"]) for c in cells),
            "knobs": record["config"]["knobs"], "seeds": record["config"]["seeds"]}


def _map_section(summary: dict, out_dir: Path, images: dict[str, bytes]) -> dict:
    """The map section (summary["recsys_map"], else OUT_DIR/map.json) with its plot rendered into ``images``; a
    damaged map is also named under summary["missing"]["map"], so the caller warns about it like any other input."""
    section = dict(summary.get("recsys_map") or load_map(out_dir / MAP_FILE))
    if "record" in section:
        try:
            images["map"] = plots.recsys_map(section["record"])
            section["tables"] = map_tables(section["record"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            section = {"path": section["path"], "problem": f"{section['path']}: a map.json this report cannot draw "
                                                           f"({type(exc).__name__}: {exc})"}
    if "problem" in section:
        summary.setdefault("missing", {})["map"] = section["problem"]
    return section


def transcripts_json(payload: dict | None) -> Markup:
    """The transcript browser's data, safe inside <script type="application/json"> (<, >, & escaped)."""
    compact = partial(json.dumps, separators=(",", ":"), allow_nan=False)
    return htmlsafe_json_dumps(payload or {"sessions": []}, dumps=compact)


def render_report(summary: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write report.html and summary.md into ``out_dir``; return their paths.

    The map of where a mixture model replaces a reranker comes from ``summary["recsys_map"]`` (a `load_map`
    result) or else from OUT_DIR/map.json (`personasim recsys map --out OUT_DIR`); none is said in place, a
    damaged one is also added to ``summary["missing"]``."""
    out_dir = Path(out_dir)
    images = build_plots(summary)
    recsys_map = _map_section(summary, out_dir, images)

    def plot(name: str) -> Markup:
        if name not in images:
            return Markup("<p class='meta'>(no data for this plot)</p>")
        b64 = base64.b64encode(images[name]).decode("ascii")
        return Markup(f"<p><img class='plot' id='plot-{name}' alt='{name}' src='data:image/png;base64,{b64}'></p>")

    gallery = summary.get("personas") or {"cards": [], "notes": []}
    separability = gallery.get("separability")

    def minimap(i: int) -> Markup:
        return Markup(plots.mini_map_svg(gallery["map"]["xy"], i)) if gallery.get("map") else Markup("")

    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=True)
    drift = (summary.get("drift") or {}).get("by_user_variant", {})
    validity = summary.get("validity") or {}
    if "panel" not in validity:
        from evals.validity.verdicts import panel

        validity = {**validity, "panel": panel(summary)}
    context = dict(
        summary["header"],
        offline=summary.get("offline", []),
        by_variant=summary.get("by_variant", []),
        drift_variants=[(uv, _Obj(d)) for uv, d in drift.items()],
        abs=summary.get("ab") or [],
        aas=[summary["aa"]] if isinstance(summary.get("aa"), dict) else summary.get("aa") or [],
        attribution=summary.get("attribution", []),
        validity=_Obj(validity),
        gallery=_Obj({**gallery, "separability": _Obj(separability) if separability else None}),
        missing=_Obj(summary.get("missing") or {}),
        recsys_map=_Obj(recsys_map),
        placed_columns=PLACED_COLUMNS,
        warnings=summary.get("warnings") or [],
        assumptions=summary.get("assumptions") or [],
        has_transcripts=bool(summary.get("transcripts")),
        transcripts=transcripts_json(summary.get("transcripts")),
        reasons_source=(summary.get("transcripts") or {}).get("reasons", ""),
        browser_js=Markup((TEMPLATES / "browser.js").read_text(encoding="utf-8")),
        offline_columns=OFFLINE_COLUMNS,
        variant_columns=VARIANT_COLUMNS,
        ab_columns=AB_COLUMNS,
        attribution_columns=ATTRIBUTION_COLUMNS,
        separability_keys=SEPARABILITY_KEYS,
        fmt=fmt,
        plot=plot,
        minimap=minimap,
        table=_html_table,
        md_table=_md_table,
    )
    html_path, md_path = out_dir / "report.html", out_dir / "summary.md"
    write_whole(html_path, env.get_template("report.html.j2").render(**context))
    md_env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=False)
    write_whole(md_path, md_env.get_template("summary.md.j2").render(**context))
    return html_path, md_path


class _Obj(dict):
    """Attribute access for template code (d.icc) with None for what is missing."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)
