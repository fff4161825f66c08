"""The report's validity panel: one row per check, each with its figure and a one-line verdict.

A row is {check, figure, verdict, status}; status is one of STATUSES and colours the row:
ok (the check passes), warn (read with care), bad (this number should not be believed), missing
(not measured, and why). Every function reads the summary dict that `evals.report.summary.summarise` builds.
"""

from __future__ import annotations

from evals.stats import ALPHA

STATUSES = ("ok", "warn", "bad", "missing")
FAILED_SHARE_WARN = 0.05
LOCAL_BACKENDS = ("embedded", "transformers")


def _row(check: str, figure: str, verdict: str, status: str) -> dict:
    assert status in STATUSES, status
    return {"check": check, "figure": figure, "verdict": verdict, "status": status}


def _g(v, spec: str = ".2g") -> str:
    return "n/a" if v is None else format(v, spec)


def fidelity_row(fidelity: dict | None) -> dict:
    if not fidelity:
        return _row("fidelity to held-out real behaviour", "not measured",
                    "unknown: a campaign with grounded users measures it (grounding.fidelity_users); otherwise run "
                    "`personasim validate fidelity` and set `fidelity:` in the campaign config",
                    "missing")
    h = fidelity.get("headline") or {}
    targets = h.get("targets") or {}
    where = "this campaign's grounded users" if fidelity.get("source") == "campaign" else fidelity.get("path", "?")
    figure = (f"{where}, {fidelity.get('n_users', '?')} held-out users: "
              f"twin accuracy {_g(h.get('twin_accuracy_1to1_uniform'), '.3f')} (1:1, uniform negatives), "
              f"AUC {_g(h.get('twin_auc_1to1_matched'), '.3f')} (popularity-matched), RMSE "
              f"{_g(h.get('twin_rmse'), '.3f')} vs user mean {_g(h.get('user_mean_rmse'), '.3f')}")
    if h.get("twin_rating_tv") is not None:  # fidelity.json from before the rating rules had no histogram distance
        figure += (f"; its ratings' histogram {_g(h['twin_rating_tv'], '.2f')} from the real one (total variation), "
                   f"{_g(h.get('twin_matched_rating_tv'), '.2f')} under the 'matched' rating rule at RMSE "
                   f"{_g(h.get('twin_matched_rmse'), '.3f')}")
    met = [k for k, ok in targets.items() if ok]
    unmet = [k for k, ok in targets.items() if not ok]
    if not targets:
        return _row("fidelity to held-out real behaviour", figure, "no targets recorded: read the figures", "warn")
    if not unmet:
        return _row("fidelity to held-out real behaviour", figure, "believable: every fidelity target met", "ok")
    verdict = f"{len(met)} of {len(targets)} fidelity targets met; not met: {'; '.join(unmet)}"
    return _row("fidelity to held-out real behaviour", figure,
                ("partly believable: " if met else "not shown to be believable: ") + verdict, "warn" if met else "bad")


def drift_rows(drift: dict | None) -> list[dict]:
    by_uv = (drift or {}).get("by_user_variant") or {}
    if not by_uv:
        return [_row("stability across runs (drift)", "not computed", "unknown: no drift report", "missing")]
    rows = []
    for uv, d in by_uv.items():
        check = f"stability across runs, {uv} users"
        null, ci = d.get("null"), d.get("ratio_ci") or [None, None]
        if null is None:
            rows.append(_row(check, f"ratio {_g(d.get('ratio_within_over_between'))}",
                             f"cannot be judged: {d.get('verdict') or 'no identical-persona null'}", "missing"))
            continue
        figure = (f"run-to-run / persona-to-persona variance {_g(d.get('ratio_within_over_between'))} "
                  f"[{_g(ci[0])}, {_g(ci[1])}] vs identical personas {_g(null['mean'])} "
                  f"[{_g(null['q025'])}, {_g(null['q975'])}], p = {_g(null['p_value'])}")
        if null["p_value"] <= ALPHA:
            rows.append(_row(check, figure, "stable: personas differ more than repeated runs do", "ok"))
        elif null["min_p"] > ALPHA:
            rows.append(_row(check, figure, f"too few users to tell personas apart (smallest possible p "
                                            f"{_g(null['min_p'])})", "warn"))
        else:
            detect = null.get("detectable_below")
            rows.append(_row(check, figure, "too noisy to compare personas: a random regrouping of the same users "
                                            "into personas gives as low a ratio"
                             + (f" (this design detects a ratio below {_g(detect)})" if detect is not None else ""),
                             "bad"))
    return rows


def power_rows(abs_: list[dict]) -> list[dict]:
    rows = []
    for ab in abs_:
        check = f"power of the A/B, {ab['treatment']} vs {ab['control']}"
        tested = [r for r in ab["rows"] if r.get("p_value") is not None]
        if not tested:
            rows.append(_row(check, "no paired users", "no test: fewer than two users met both variants", "missing"))
            continue
        n = max(r["n_users"] for r in tested)
        best = min((r["min_p_holm"] for r in tested if r.get("min_p_holm") is not None), default=None)
        mdes = ", ".join(f"{r['metric']} {_g(r['mde'], '.3g')}" for r in tested if r.get("mde") is not None)
        figure = f"{n} paired users, smallest reachable p_holm {_g(best)}" + (f"; MDE {mdes}" if mdes else "")
        significant = [r["metric"] for r in tested if r.get("p_holm") is not None and r["p_holm"] <= ALPHA]
        if best is None:
            rows.append(_row(check, figure, "power not recorded (an older A/B table): rerun `personasim campaign "
                                            "report`", "warn"))
        elif not any(r.get("can_reach_alpha") for r in tested):
            rows.append(_row(check, figure, f"too small to conclude: no metric can reach α = {ALPHA:g}; add users",
                             "bad"))
        else:
            found = f"differs: {', '.join(significant)}" if significant else "no metric differs beyond its MDE"
            rows.append(_row(check, figure, f"sized to detect the MDEs listed; {found}", "ok"))
    return rows or [_row("power of the A/B", "no A/B", "only one recommender variant", "missing")]


def aa_row(aa: dict | None) -> dict:
    check = "A/A check (a variant against itself)"
    if not aa or "verdict" not in aa:
        return _row(check, "not run", "unknown: the campaign has fewer than two runs per user", "missing")
    figure = f"{aa['variant']}, run {aa['runs'][0]} vs run {aa['runs'][1]}"
    if not aa["can_reach_alpha"]:
        return _row(check, figure, aa["verdict"], "warn")
    return _row(check, figure, aa["verdict"], "bad" if aa["n_significant"] else "ok")


def failed_row(header: dict, errors: dict[str, int]) -> dict:
    """``errors``: {error message: failed turns}."""
    n, failed = header["n_events"], header["n_failed"]
    top = "; ".join(f"{k} ({v}x)" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:3])
    figure = f"{failed} of {n} turns failed" + (f": {top}" if top else "")
    if failed == 0:
        return _row("failed turns", figure, "every turn usable", "ok")
    if failed / n <= FAILED_SHARE_WARN:
        return _row("failed turns", figure, "few failed turns: the figures rest on the rest", "ok")
    return _row("failed turns", figure, f"too many failed turns ({failed / n:.0%}): the figures describe only the "
                                        "turns that parsed", "bad")


def separability_row(gallery: dict, why: str | None = None) -> dict:
    """``why``: why there are no personas at all (None when there are)."""
    sep = gallery.get("separability")
    if not sep:
        return _row("distinct personas (separability)", "not measured",
                    f"unknown: {why or 'no separability report beside the personas'}", "missing")
    figure = (f"K = {sep['k']}, silhouette {_g(sep.get('silhouette'))}, between/within "
              f"{_g(sep.get('between_within_ratio'))}, PC1 share {_g(sep.get('pc1_variance_share'))}, "
              f"worst pair confusion {_g(sep.get('max_confusion'))}")
    if sep.get("collapse_alarm"):
        return _row("distinct personas (separability)", figure,
                    f"collapse alarm: personas drift toward one mode ({sep.get('collapse_rule')})", "bad")
    return _row("distinct personas (separability)", figure, "distinct: no collapse alarm", "ok")


def usage_row(usage: dict) -> dict:
    m_in, m_out = usage["tokens_in"] / 1e6, usage["tokens_out"] / 1e6
    figure = (f"{usage['backend']}/{usage['model']}: {usage['tokens_in']:,} tokens in, {usage['tokens_out']:,} out "
              f"({usage['tokens_per_session']:,.0f} per session), {usage['llm_seconds'] / 60:.1f} min of turn time")
    if usage["backend"] in LOCAL_BACKENDS:
        return _row("LLM usage and cost", figure, "local model: no API cost, only the compute time shown", "ok")
    return _row("LLM usage and cost", figure, f"billed per token: {m_in:.3f} M in and {m_out:.3f} M out at your "
                                              "provider's price (cached repeats are free)", "ok")


def panel(summary: dict) -> list[dict]:
    """Every row of the validity panel, in reading order; a check whose input is absent says why."""
    missing = summary.get("missing") or {}
    why = missing.get("events", "not in this summary")

    def absent(check: str) -> list[dict]:
        return [_row(check, "not measured", f"unknown: {why}", "missing")]

    rows = [fidelity_row((summary.get("validity") or {}).get("fidelity"))]
    if summary.get("personas"):
        rows.append(separability_row(summary["personas"], missing.get("personas")))
    rows += drift_rows(summary["drift"]) if summary.get("drift") else absent("stability across runs (drift)")
    rows += power_rows(summary["ab"]) if summary.get("ab") is not None else absent("power of the A/B")
    rows += [aa_row(summary.get("aa"))] if "aa" in summary else absent("A/A check (a variant against itself)")
    usage = summary.get("usage")
    rows += [failed_row(summary["header"], usage["errors"])] if usage else absent("failed turns")
    rows += [usage_row(usage)] if usage else absent("LLM usage and cost")
    return rows
