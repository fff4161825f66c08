"""Render `report.html` (self-contained: plots inlined as PNG) and `summary.md`.

Input is the campaign summary dict that `evals.campaign.summarise` builds; this
module only formats. Templates live in evals/templates/.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from evals import plots

TEMPLATES = Path(__file__).parent / "templates"

OFFLINE_COLUMNS = ["variant", "ndcg@10", "recall@10", "ild@10", "coverage@10", "calibration_kl@10", "persona_coverage@10"]
VARIANT_COLUMNS = ["variant", "user_variant", "sessions", "acceptance_rate", "mean_rating", "diversity", "prompt_to_line", "line_to_line", "qa"]
AB_COLUMNS = ["metric", "control", "treatment", "diff", "ci_low", "ci_high", "p_value", "p_holm", "n_users"]
ATTRIBUTION_COLUMNS = ["user_id", "persona_id", "turn", "title", "genres", "persona_vector"]


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
    for i, ab in enumerate(s.get("ab", [])):
        ab["plot"] = f"ab{i}"
        out[f"ab{i}"] = plots.forest(ab["rows"], f"{ab['treatment']} - {ab['control']}")
    return out


def render_report(summary: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write report.html and summary.md into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    images = build_plots(summary)

    def plot(name: str) -> Markup:
        if name not in images:
            return Markup("<p class='meta'>(no data for this plot)</p>")
        b64 = base64.b64encode(images[name]).decode("ascii")
        return Markup(f"<p><img class='plot' id='plot-{name}' alt='{name}' src='data:image/png;base64,{b64}'></p>")

    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=True)
    drift = summary.get("drift", {}).get("by_user_variant", {})
    context = dict(
        summary["header"],
        offline=summary.get("offline", []),
        by_variant=summary.get("by_variant", []),
        drift_variants=[(uv, _Obj(d)) for uv, d in drift.items()],
        abs=summary.get("ab", []),
        aa=summary.get("aa"),
        attribution=summary.get("attribution", []),
        validity=_Obj(summary.get("validity") or {}),
        offline_columns=OFFLINE_COLUMNS,
        variant_columns=VARIANT_COLUMNS,
        ab_columns=AB_COLUMNS,
        attribution_columns=ATTRIBUTION_COLUMNS,
        fmt=fmt,
        plot=plot,
        table=_html_table,
        md_table=_md_table,
    )
    html_path, md_path = out_dir / "report.html", out_dir / "summary.md"
    html_path.write_text(env.get_template("report.html.j2").render(**context), encoding="utf-8")
    md_env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=False)
    md_path.write_text(md_env.get_template("summary.md.j2").render(**context), encoding="utf-8")
    return html_path, md_path


class _Obj(dict):
    """Attribute access for template code (d.icc) with None for what is missing."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)
