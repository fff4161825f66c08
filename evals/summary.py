"""From events (and the offline table) to the one dict the report renders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from evals.config import CampaignConfig


def _mean(values) -> float | None:
    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))], dtype=float)
    return float(arr.mean()) if arr.size else None


def by_variant_table(df: pd.DataFrame) -> list[dict]:
    """One row per (recommender variant, user variant): what the simulated users did."""
    from evals.ab import per_user_metrics

    rows = []
    for (variant, uv), part in df.groupby(["variant", "user_variant"], sort=False):
        users = per_user_metrics(part, variant)
        ok = part[part["ok"]]
        row = {
            "variant": variant,
            "user_variant": uv,
            "sessions": int(part.groupby(["user_id", "run"]).ngroups),
            "failed_turns": int((~part["ok"]).sum()),
            "acceptance_rate": _mean(users["acceptance_rate"]),
            "mean_rating": _mean(users["mean_rating"]),
            "diversity": _mean(users["diversity"]),
        }
        for metric in ("prompt_to_line", "line_to_line", "qa"):
            row[metric] = _mean(c.get(metric) for c in ok["consistency"])
        rows.append(row)
    return rows


def attribution_examples(df: pd.DataFrame, limit: int = 12) -> list[dict]:
    """Accepted items that carry a persona attribution (AMP-CF), a few per user."""
    rows = []
    for _, e in df[df["ok"]].iterrows():
        by_id = {item["id"]: item for item in e["slate"]}
        for item_id in e["chosen"]:
            item = by_id.get(item_id)
            if item is None or item.get("persona") is None:
                continue
            rows.append({"user_id": e["user_id"], "persona_id": e["persona_id"], "variant": e["variant"], "turn": e["turn"],
                         "title": item["title"], "genres": item.get("genres", []), "persona_vector": item["persona"]})
    seen, picked = {}, []
    for r in rows:  # spread the examples over users
        if seen.get(r["user_id"], 0) < 2:
            seen[r["user_id"]] = seen.get(r["user_id"], 0) + 1
            picked.append(r)
    return picked[:limit]


def validity(run_dir: Path, cfg: CampaignConfig) -> dict:
    """What says whether these simulated users can be believed: the grounded users' calibration (what
    each evidence source contributes) and, when present, a `personasim validate fidelity` result."""
    out: dict = {"calibration": None, "fidelity": None}
    personas = Path(cfg.personas.path) if cfg.personas.path else run_dir / "personas" / "personas.jsonl"
    cal = personas.parent / "calibration.json"
    if cal.is_file():
        record = json.loads(cal.read_text(encoding="utf-8"))
        out["calibration"] = {"split": record.get("split"), "llm": record.get("llm"), "n_users": record.get("n_users"),
                              "rows": [{"memory": kind, "cv_auc": rep["cv_auc"],
                                        **{f"AUC lost without {k}": v for k, v in rep["auc_drop_without"].items()},
                                        **{f"weight {k}": v for k, v in rep["like_coef"].items()}}
                                       for kind, rep in record.get("report", {}).items()]}
    fid = Path(cfg.fidelity) if cfg.fidelity else run_dir / "fidelity.json"
    if fid.is_file():
        record = json.loads(fid.read_text(encoding="utf-8"))
        out["fidelity"] = {"path": str(fid), "config_hash": record.get("config_hash"), "headline": record.get("headline"),
                           "model": record.get("model"), "n_users": record.get("n_users")}
    return out


def summarise(run_dir: Path, cfg: CampaignConfig, df: pd.DataFrame, embed=None) -> dict:
    from evals.ab import aa_false_positive_rate, ab_table
    from evals.drift import drift_report

    offline_path = run_dir / "models" / "offline.json"
    offline = json.loads(offline_path.read_text())["rows"] if offline_path.exists() else []
    control = cfg.variants[0]
    abs_ = []
    for treatment in cfg.variants[1:]:
        abs_.append({"control": control, "treatment": treatment, "seed": cfg.seed,
                     "rows": ab_table(df, control, treatment, seed=cfg.seed)})
    first = df.iloc[0]
    header = {
        "name": cfg.name, "config_hash": cfg.config_hash(), "seed": cfg.seed,
        "backend": first["backend"], "model": first["model"],
        "n_events": int(len(df)), "n_failed": int((~df["ok"]).sum()),
        "n_sessions": int(df.groupby(["variant", "user_variant", "user_id", "run"]).ngroups),
        "tokens_in": int(df["tokens_in"].sum()), "tokens_out": int(df["tokens_out"].sum()),
        "personas_k": cfg.recsys.personas_k,
    }
    return {
        "header": header,
        "offline": offline,
        "by_variant": by_variant_table(df),
        "drift": drift_report(df, embed=embed, seed=cfg.seed),
        "ab": abs_,
        "aa": aa_false_positive_rate(df, control, seed=cfg.seed),
        "attribution": attribution_examples(df),
        "validity": validity(run_dir, cfg),
    }
