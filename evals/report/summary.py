"""From a campaign folder (events, personas, offline table, fidelity) to the one dict the report renders.

Whatever is absent or unreadable (no events yet, a torn last line, no personas file) is named in
``summary["missing"]`` in place of the sections that need it, never a crash: a half-finished
campaign still gets a report of what it has.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from evals.campaign.config import CampaignConfig
from evals.campaign.events import EventLogError, events_frame, read_events
from evals.report.transcripts import SESSION_KEY, browser_payload, vector_labels


def _mean(values) -> float | None:
    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))], dtype=float)
    return float(arr.mean()) if arr.size else None


def by_variant_table(df: pd.DataFrame, implicit: bool = False) -> list[dict]:
    """One row per (recommender variant, user variant): what the simulated users did, and how consistent and
    faithful their lines were (``faithful``: the share of lines with a word to read whose utterance is faithful
    to its decision; ``unparseable``: the lines without one, never faithful). ``implicit``: the campaign ran on an
    implicit log, where a metric that measures nothing for a population (`evals.campaign.ab.not_measures`) is
    left empty."""
    from evals.campaign.ab import not_measures, per_user_metrics

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
        for metric in not_measures(uv, implicit):
            row[metric] = None
        scores = [c or {} for c in ok["consistency"]]
        for metric in ("prompt_to_line", "line_to_line", "qa", "faithful"):
            row[metric] = _mean(c.get(metric) for c in scores)
        # faithful is the share of parsed lines (`simulator.faithfulness`); an unparseable one is stored as None
        # (None for events scored before the check, which carry no faithful score at all)
        checked = [c for c in scores if "faithful" in c]
        row["unparseable"] = sum(c["faithful"] is None for c in checked) if checked else None
        rows.append(row)
    return rows


def attribution_examples(df: pd.DataFrame, names: dict[str, str] | None = None, limit: int = 12) -> list[dict]:
    """Accepted items that carry a mixture-component attribution (AMP-CF), a few per user. ``names``: {persona id:
    name}. mixture_component reads "2 (Drama, Romance)": the component and the genres it put on that session's
    slates."""
    ok = df[df["ok"]]
    labels = {key: vector_labels(list(part["slate"])) for key, part in ok.groupby(SESSION_KEY, sort=False)}
    rows = []
    for e in ok.to_dict("records"):
        by_id = {item["id"]: item for item in e["slate"]}
        for item_id in e["chosen"]:
            item = by_id.get(item_id)
            if item is None or item.get("component") is None:
                continue
            label = labels[tuple(e[k] for k in SESSION_KEY)][item["component"]]
            rows.append({"user_id": e["user_id"], "persona": (names or {}).get(e["persona_id"], e["persona_id"]),
                         "variant": e["variant"], "run": e["run"], "turn": e["turn"], "title": item["title"],
                         "genres": item.get("genres", []), "mixture_component": f"{item['component']} ({label})"})
    seen, picked = {}, []
    for r in rows:  # spread the examples over users
        if seen.get(r["user_id"], 0) < 2:
            seen[r["user_id"]] = seen.get(r["user_id"], 0) + 1
            picked.append(r)
    return picked[:limit]


#: Offline columns an older personasim wrote under another name: {old name: name now}.
OLD_OFFLINE_COLUMNS = {"persona_coverage@10": "taste_coverage@10"}


def offline_rows(path: Path) -> list[dict]:
    """The rows of a campaign's models/offline.json ([] when there is none), a column of an older run read under
    its name now (OLD_OFFLINE_COLUMNS)."""
    if not path.exists():
        return []
    return [{OLD_OFFLINE_COLUMNS.get(k, k): v for k, v in row.items()}
            for row in json.loads(path.read_text())["rows"]]


def personas_path(run_dir: Path, cfg: CampaignConfig) -> Path:
    from evals.campaign.world import personas_path_of

    return personas_path_of(cfg, Path(run_dir))


def validity(run_dir: Path, cfg: CampaignConfig) -> dict:
    """What says whether these simulated users can be believed: the grounded users' calibration (what
    each evidence source contributes) and, when present, a `personasim validate fidelity` result, real users'
    drift at the campaign's design (RUN/real_drift.json) and the A/B's calibration and power (RUN/ab_power.json)."""
    out: dict = {"calibration": None, "fidelity": None}
    cal = personas_path(run_dir, cfg).parent / "calibration.json"
    if cal.is_file():
        record = json.loads(cal.read_text(encoding="utf-8"))
        out["calibration"] = {"split": record.get("split"), "llm": record.get("llm"), "n_users": record.get("n_users"),
                              "rows": [{"memory": kind, "cv_auc": rep["cv_auc"],
                                        **{f"AUC lost without {k}": v for k, v in rep["auc_drop_without"].items()},
                                        **{f"weight {k}": v for k, v in rep["like_coef"].items() if "*" not in k}}
                                       for kind, rep in record.get("report", {}).items()],
                              "not_fitted": (record.get("report", {}).get("twin") or {}).get("not_fitted")}
    fid = Path(cfg.fidelity) if cfg.fidelity else run_dir / "fidelity.json"
    if fid.is_file():
        record = json.loads(fid.read_text(encoding="utf-8"))
        out["fidelity"] = {"path": str(fid), "config_hash": record.get("config_hash"), "headline": record.get("headline"),
                           "model": record.get("model"), "n_users": record.get("n_users"),
                           "source": record.get("source", "validate fidelity"), "against": fidelity_baselines(record),
                           "population": population_rows(record), "takes": take_rows(record),
                           "not_measured": record.get("not_measured")}
    if not (run_dir / "real_drift.json").is_file():
        write_real_drift(run_dir, cfg)
    for name in ("real_drift", "ab_power"):  # beside the run: real_drift.json (written above when it can be),
        path = run_dir / f"{name}.json"       # ab_power.json (benchmarks/ab_power.py), read when present
        if path.is_file():
            try:
                out[name] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                out[name] = None
    return out


def write_real_drift(run_dir: Path, cfg: CampaignConfig) -> None:
    """RUN/real_drift.json for a campaign of grounded users whose personas are its data set's users with a split
    (`evals.validity.real_drift`: the real users' own drift ratio at this design, 200 draws, about 6 s); on an
    implicit log, a record saying why it is not measurable; nothing for any other campaign."""
    from evals.validity.grounding import GroundingError
    from evals.validity.real_drift import real_drift_of
    from personas.infra.files import write_whole

    if "grounded" not in cfg.user_variants:
        return
    from evals.campaign.dataset import load_dataset
    from evals.validity.grounding import implicit_log
    from evals.validity.real_drift import IMPLICIT_UNMEASURABLE

    try:
        ds = load_dataset(cfg.recsys.dataset)
        if implicit_log(ds):
            record = {"unavailable": IMPLICIT_UNMEASURABLE}
        else:
            record = real_drift_of(personas_path(run_dir, cfg), cfg.users_for("grounded"), ds=ds, seed=cfg.seed)
    except (GroundingError, ValueError, OSError, KeyError):
        return  # personas without a split: the panel says how to measure it
    write_whole(run_dir / "real_drift.json", json.dumps(record, indent=2, default=float) + "\n")


def population_rows(record: dict) -> list[dict]:
    """Population realism (`evals.validity.population`), one row a statistic: the real users' mean and spread, and
    each population's Wasserstein distance to them 'value [CI]'; [] for a fidelity.json from before it."""
    pop = record.get("population_realism") or {}
    rows = []
    for r in pop.get("rows") or []:
        row = {"statistic": r["statistic"], "real mean (sd)": f"{r['real_mean']:.3f} ({r['real_sd']:.3f})"}
        for who in pop.get("populations") or []:
            w = r[who]["wasserstein"]
            row[f"W {who}"] = f"{w['value']:.3f} [{w['ci'][0]:.3f}, {w['ci'][1]:.3f}]"
        rows.append(row)
    return rows


def take_rows(record: dict) -> list[dict]:
    """An implicit log's population check (`evals.validity.population.take_realism`), one row: the sd over users of
    their hits on the train part's most taken items, real [CI] and simulated [2.5-97.5% of draws]; [] otherwise."""
    takes = (record.get("population_realism") or {}).get("takes")
    if not takes:
        return []

    def cell(d: dict, key: str) -> str:
        return f"{d['value']:.3f} [{d[key][0]:.3f}, {d[key][1]:.3f}]"

    return [{"list": f"the {takes['k']} items most taken in train", "users": takes["n_users"],
             "real sd of hits": cell(takes["real_sd_hits"], "ci"), "twin": cell(takes["twin_sd_hits"], "range"),
             "twin without its own level": cell(takes["twin_flat_sd_hits"], "range"),
             "mean hits real / twin": f"{takes['real_mean_hits']:.3f} / {takes['twin_mean_hits']:.3f}"}]


#: Who a fidelity figure belongs to, in the order the report lists them (the simulated users first).
FIDELITY_METHODS = ("twin", "persona", "persona_cf", "popularity", "user_als", "llm_only", "random", "user_mean",
                    "item_mean")


def fidelity_baselines(record: dict) -> list[dict]:
    """The simulated users beside the same run's baselines, one row a method: 1:1 accuracy against uniform
    negatives, AUC against popularity-matched ones and rating RMSE, each 'value [CI]' ('' where it has none)."""
    def cell(entry: dict | None) -> str:
        if not entry or entry.get("value") is None:
            return ""
        lo, hi = entry.get("ci") or (None, None)
        return f"{entry['value']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")

    taste = {(r["negatives"], r["ratio"], r["method"]): r for r in record.get("taste_alignment") or []}
    rmse = {r["method"]: r.get("rmse") for r in record.get("rating_error") or []}
    rows = []
    for m in FIDELITY_METHODS:
        acc = (taste.get(("uniform", "1:1", m)) or {}).get("accuracy")
        auc = (taste.get(("popularity_matched", "1:1", m)) or {}).get("auc")
        if acc or auc or rmse.get(m):
            rows.append({"method": m, "accuracy 1:1 uniform": cell(acc), "AUC 1:1 popularity-matched": cell(auc),
                         "rating RMSE": cell(rmse.get(m))})
    return rows


def usage(df: pd.DataFrame) -> dict:
    """LLM accounting over all turns: tokens, turn time (latency_s summed) and the failed turns' errors."""
    n_sessions = df.groupby(SESSION_KEY).ngroups
    tokens_in, tokens_out = int(df["tokens_in"].sum()), int(df["tokens_out"].sum())
    return {"backend": df["backend"].iloc[0], "model": df["model"].iloc[0], "tokens_in": tokens_in,
            "tokens_out": tokens_out, "tokens_per_session": (tokens_in + tokens_out) / n_sessions,
            "llm_seconds": float(df["latency_s"].sum()),
            "errors": dict(Counter(str(e) for e in df.loc[~df["ok"], "error"]))}


def _torn_tail(path: Path) -> bool:
    """Does the file end inside a line (a campaign killed mid-write)?"""
    if not path.stat().st_size:
        return False
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"


def load_events(run_dir: Path) -> tuple[pd.DataFrame | None, list[str]]:
    """(the events frame, or None when there are none or they cannot be read; what is wrong with
    RUN_DIR/events.jsonl, one line each). A torn last line is left out, as a resumed campaign redoes it."""
    path = Path(run_dir) / "events.jsonl"
    if not path.is_file():
        return None, [f"{path}: no such file: the campaign has not finished a turn yet"]
    problems = []
    if _torn_tail(path):
        problems.append(f"{path}: the last line is cut off (the campaign stopped mid-write); it is left out, "
                        "and `personasim campaign run CONFIG --out DIR --resume` redoes that turn")
    try:
        return events_frame(path), problems
    except EventLogError as exc:
        return None, problems + [str(exc)]


def _guarded(missing: dict, section: str, compute):
    """compute(), or None with the reason under missing[section] when the data cannot give it (ValueError)."""
    try:
        return compute()
    except ValueError as exc:
        missing[section] = str(exc)
        return None


def _header(cfg: CampaignConfig, df: pd.DataFrame | None) -> dict:
    """The run's identity. Its config hash is the one its events were written under (the config's own hash
    now may differ: it covers the prompt templates, and those may have changed since)."""
    header = {"name": cfg.name, "config_hash": cfg.config_hash(), "seed": cfg.seed, "backend": cfg.llm.backend,
              "model": cfg.llm.model or "default", "n_events": 0, "n_failed": 0, "n_sessions": 0, "tokens_in": 0,
              "tokens_out": 0, "mixture_k": cfg.recsys.mixture_k}
    if df is not None:
        header.update(config_hash=str(df["config_hash"].iloc[0]), backend=df["backend"].iloc[0],
                      model=df["model"].iloc[0], n_events=int(len(df)),
                      n_failed=int((~df["ok"]).sum()), n_sessions=int(df.groupby(SESSION_KEY).ngroups),
                      tokens_in=int(df["tokens_in"].sum()), tokens_out=int(df["tokens_out"].sum()))
    return header


def _from_events(df: pd.DataFrame, cfg: CampaignConfig, cards: list, missing: dict, embed,
                 implicit: bool = False) -> dict:
    """The sections that need events: per variant, drift, A/B, A/A, attribution, usage, transcripts. ``implicit``:
    the campaign ran on an implicit log (`evals.campaign.ab.not_measures`)."""
    from evals.campaign.ab import aa_false_positive_rate, ab_table, not_measures
    from evals.validity.drift import drift_report

    control, abs_, aas = cfg.variants[0], [], []
    for uv in sorted(df["user_variant"].unique()):  # one table per population, never pooled (evals.campaign.ab)
        skip = not_measures(uv, implicit)
        for treatment in cfg.variants[1:]:
            rows = _guarded(missing, "ab", partial(ab_table, df, control, treatment, seed=cfg.seed, user_variant=uv,
                                                   skip=skip))
            if rows is not None:
                abs_.append({"user_variant": uv, "control": control, "treatment": treatment, "seed": cfg.seed,
                             "rows": rows})
        aa = _guarded(missing, "aa", partial(aa_false_positive_rate, df, control, seed=cfg.seed, user_variant=uv,
                                             skip=skip))
        if aa is not None:
            aas.append(aa)
    return {
        "by_variant": by_variant_table(df, implicit),
        "drift": _guarded(missing, "drift", partial(drift_report, df, embed=embed, seed=cfg.seed)),
        "ab": abs_,
        "aa": aas,
        "attribution": attribution_examples(df, {c.id: c.name for c in cards}),
        "usage": usage(df),
        "transcripts": browser_payload(df, {c.id: c for c in cards}),
    }


def _code(run_dir: Path, n_turns: int) -> tuple[str, list[str]]:
    """The header's ``code`` (the sources digest of the code that wrote the events, `evals.campaign.driver.code_version`)
    and, when more than one code wrote them, a warning line saying which turns each wrote."""
    from evals.campaign.driver import code_ranges

    try:
        recorded = json.loads((run_dir / "campaign.json").read_text()).get("code")
    except (OSError, ValueError, AttributeError):
        recorded = None
    ranges = code_ranges(recorded, n_turns)
    if not ranges:
        return "not recorded", []
    names = [r["sources"] or "not recorded" for r in ranges]
    if len(ranges) == 1:
        return names[0], []
    spans = "; ".join(f"turns {r['turns'][0] + 1}-{r['turns'][1]}: {n}" for r, n in zip(ranges, names))
    return (f"{len(ranges)} versions", [f"events.jsonl: written by {len(ranges)} versions of the code ({spans}; "
                                        "campaign.json 'code'): a figure over all turns mixes them"])


def _dataset_warnings(run_dir: Path) -> list[str]:
    """One line per feature the campaign's data set switched off for want of a column (RUN/dataset.json,
    `evals.campaign.dataset.DataProfile.switched_off`); none for a folder without the record."""
    try:
        record = json.loads((run_dir / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [f"data set {record.get('name')}: {line}" for line in record.get("switched_off") or []]


def dataset_label(cfg: CampaignConfig, run_dir: Path) -> str:
    """The data set as the report names it: MovieLens-100k, or NAME (FOLDER) of a folder of atomic files (NAME
    from RUN/dataset.json, else the config's)."""
    dataset = cfg.recsys.dataset
    if dataset == "ml-100k":
        return "MovieLens-100k"
    try:
        name = json.loads((run_dir / "dataset.json").read_text(encoding="utf-8"))["name"]
    except (OSError, ValueError, KeyError, TypeError):
        name = dataset.name or Path(dataset.path).name
    return f"{name} ({dataset.path})"


def _decision_warning(cfg: CampaignConfig) -> list[str]:
    """A campaign whose grounded users decide deterministically says so at the top of its report."""
    if "grounded" in cfg.user_variants and cfg.grounding.decision == "deterministic":
        return ["grounded users decide deterministically (grounding.decision: deterministic), a debugging mode: "
                "their run-to-run variation is built out, so their drift and A/B figures measure the design"]
    return []


def layer_assumptions(cfg: CampaignConfig) -> list[str]:
    """What the grounded users' layers rest on, for the report's header: the subtopic's focus shift is fitted on
    training sittings; the context's shifts are stated, not fitted (training logs carry no context), so they are
    marked as an assumption. [] without grounded users."""
    if "grounded" not in cfg.user_variants:
        return []
    layers = cfg.grounding.layers
    if not layers:
        return ["grounded users play no layer (grounding.layers: []): the bare twins of their real users"]
    out = []
    if "subtopic" in layers:
        out.append("grounded users' subtopic: a fitted focus shift (training rating sittings; simulator.choice)")
    if "context" in layers:
        out.append("assumption: the grounded users' context shifts are stated, not fitted (training logs carry no "
                   "context; simulator.choice.CONTEXT_SHIFTS); with both layers fidelity falls by 0.041 AUC on uniform "
                   "negatives (docs/results/fidelity.md)")
    return out


def _runtime(run_dir: Path) -> dict:
    """The header's content digest (`evals.campaign.runner.content_digest`) and the kernels the last recorded code ran
    on (campaign.json's ``code``: `evals.campaign.runtime.kernel_report`), each 'not recorded' when missing."""
    from evals.campaign.runner import content_digest
    from evals.campaign.runtime import describe

    try:
        events = list(read_events(run_dir / "events.jsonl"))
    except (EventLogError, OSError):
        events = []
    try:
        recorded = json.loads((run_dir / "campaign.json").read_text()).get("code") or []
    except (OSError, ValueError, AttributeError):
        recorded = []
    runtimes = [describe(c.get("runtime")) for c in recorded if c.get("runtime")]
    return {"content_digest": content_digest(events) if events else "no turns",
            "runtime": " / then ".join(dict.fromkeys(runtimes)) or "not recorded"}


def summarise(run_dir: Path, cfg: CampaignConfig, df: pd.DataFrame | None, embed=None,
              problems: list[str] | None = None) -> dict:
    """The report's dict. ``df``: the events, None when there are none or they cannot be read;
    ``problems``: what is wrong with the events file (load_events), one line each. What a section
    lacks is named under ``missing`` ({section: why}); problems that leave events usable under ``warnings``."""
    from evals.report.gallery import load_cards, persona_gallery
    from evals.validity.verdicts import panel

    run_dir = Path(run_dir)
    missing: dict[str, str] = {} if df is not None else {"events": "; ".join(problems or ["no events"])}
    path = personas_path(run_dir, cfg)
    cards, why = load_cards(path)
    if why:
        missing["personas"] = why
    users = {} if df is None else (df.drop_duplicates(["persona_id", "user_variant", "user_id"])
                                   .groupby("persona_id").size().to_dict())
    code, mixed = _code(run_dir, 0 if df is None else len(df))
    header = {**_header(cfg, df), "code": code, **_runtime(run_dir), "dataset": dataset_label(cfg, run_dir)}
    summary = {"header": header,
               "offline": offline_rows(run_dir / "models" / "offline.json"),
               "personas": persona_gallery(cards, path, users), "validity": validity(run_dir, cfg),
               "missing": missing, "warnings": ([] if df is None else list(problems or [])) + mixed + _decision_warning(cfg)
               + _dataset_warnings(run_dir), "assumptions": layer_assumptions(cfg)}
    if df is not None:
        from evals.campaign.dataset import recorded_implicit

        summary.update(_from_events(df, cfg, cards, missing, embed, recorded_implicit(run_dir)))
    summary["validity"]["panel"] = panel(summary)
    return summary


def write_campaign_report(run_dir: str | Path) -> tuple[Path, list[str], list[dict]]:
    """Render RUN_DIR/report.html and summary.md from whatever the folder holds; return the report's
    path, one warning line per missing or damaged input and the validity panel's rows (`evals.validity.verdicts`).
    It also rewrites drift.json and ab.json (the config's first variant against each of the others, one table per
    user variant) when there are events (`campaign run` ends here too).
    CampaignError when there is nothing to report: no campaign.json, or neither events nor personas."""
    from evals.campaign.driver import CampaignError, _write_json, load_campaign
    from evals.report.render import render_report

    run_dir = Path(run_dir)
    try:
        cfg = load_campaign(run_dir)
    except ValueError as exc:  # not JSON, or a config this personasim cannot read
        raise CampaignError(f"{run_dir / 'campaign.json'}: not a readable campaign record "
                            f"({str(exc).splitlines()[0]})") from None
    df, problems = load_events(run_dir)
    summary = summarise(run_dir, cfg, df, problems=problems)
    if df is None and "personas" in summary["missing"]:
        raise CampaignError(f"nothing to report: {summary['missing']['events']}; {summary['missing']['personas']}")
    if summary.get("drift"):
        _write_json(run_dir / "drift.json", summary["drift"])
    if summary.get("ab"):
        _write_json(run_dir / "ab.json", {"seed": cfg.seed, "tables": summary["ab"]})
    html_path, _ = render_report(summary, run_dir)
    return (html_path, summary["warnings"] + [f"{section}: {why}" for section, why in summary["missing"].items()],
            summary["validity"]["panel"])
