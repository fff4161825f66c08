"""The report's validity panel: one row per check, each with its figure and a one-line verdict.

A row is {check, figure, verdict, status}; status is one of STATUSES and colours the row:
ok (the check passes), warn (read with care), bad (this number should not be believed), missing
(not measured, and why). Every function reads the summary dict that `evals.report.summary.summarise` builds.
"""

from __future__ import annotations

from evals.stats.testing import ALPHA
from simulator.llm.registry import BACKENDS

STATUSES = ("ok", "warn", "bad", "missing")
FAILED_SHARE_WARN = 0.05


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
        who = f", {ab['user_variant']} users" if ab.get("user_variant") else ""
        check = f"power of the A/B, {ab['treatment']} vs {ab['control']}{who}"
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


def real_drift_rows(drift: dict | None, real: dict | None) -> list[dict]:
    """Each user variant's drift ratio CI against real users' own ratio at the campaign's design
    (`evals.validity.real_drift`): within their range, more stable (built in) or noisier."""
    check = "drift against real users' own drift"
    if real and real.get("unavailable"):
        return [_row(check, "not measured", real["unavailable"], "missing")]
    if not real or "design" not in real:
        return [_row(check, "not measured", "unknown: run `python -m benchmarks.real_drift RUN` (writes "
                                             "RUN/real_drift.json)", "missing")]
    from evals.validity.real_drift import compare

    d = real["design"]
    rows = []
    for uv, r in ((drift or {}).get("by_user_variant") or {}).items():
        line = compare(r.get("ratio_ci"), real)
        figure = (f"ratio CI [{_g((r.get('ratio_ci') or [None])[0])}, {_g((r.get('ratio_ci') or [None, None])[1])}]"
                  f" vs real users {_g(d.get('median'))} [{_g(d.get('q025'))}, {_g(d.get('q975'))}] "
                  f"({d.get('users_per_persona')} a persona, {d.get('draws')} draws)")
        status = "ok" if line.startswith("within") else "warn" if line.startswith("noisier") else "bad" \
            if line.startswith("more stable") else "missing"
        rows.append(_row(f"{check}, {uv} users", figure, line, status))
    return rows


def ab_power_row(record: dict | None) -> dict:
    """The A/A false-positive rate over many pairs and the power against a degraded recommender
    (`evals.campaign.ab_power`)."""
    check = "A/A calibration and power against a degraded recommender"
    if not record or "aa" not in record:
        return _row(check, "not measured", "unknown: run `python -m benchmarks.ab_power RUN` (writes "
                                            "RUN/ab_power.json)", "missing")
    aa, power = record["aa"]["familywise"], record["degraded"]["power"]
    layers = ", ".join(record.get("layers") or []) or "no layers"
    figure = (f"{record['pairs']} pairs at {record['design']['paired_users']} grounded users ({layers}): A/A family-wise rate "
              f"{_g(aa['rate'])} [{_g(aa['ci'][0])}, {_g(aa['ci'][1])}]; {record['primary']} detects "
              f"{record['degrade_share']:.0%} random pages with power {_g(power['rate'])} "
              f"[{_g(power['ci'][0])}, {_g(power['ci'][1])}]")
    unmet = [t for t, met in record["targets"].items() if not met]  # the record's own targets, not a second copy
    ok = not unmet
    verdict = ("calibrated and powered: false positives at most alpha, the known effect found at least 4 times in 5"
               if ok else "; ".join(unmet) + ": not met")
    return _row(check, figure, verdict, "ok" if ok else "bad")


def aa_rows(aas: list[dict] | dict | None) -> list[dict]:
    """One row per user variant's A/A check (an older summary's single dict: one row)."""
    if isinstance(aas, dict) or not aas:
        return [aa_row(aas or None)]
    return [aa_row(aa) for aa in aas]


def aa_row(aa: dict | None) -> dict:
    who = f", {aa['user_variant']} users" if aa and aa.get("user_variant") else ""
    check = f"A/A check (a variant against itself{who})"
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
    if usage["backend"] in BACKENDS and BACKENDS[usage["backend"]].local:
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
    validity = summary.get("validity") or {}
    rows += real_drift_rows(summary.get("drift"), validity.get("real_drift"))
    rows += power_rows(summary["ab"]) if summary.get("ab") is not None else absent("power of the A/B")
    rows.append(ab_power_row(validity.get("ab_power")))
    rows += aa_rows(summary.get("aa")) if "aa" in summary else absent("A/A check (a variant against itself)")
    usage = summary.get("usage")
    rows += [failed_row(summary["header"], usage["errors"])] if usage else absent("failed turns")
    rows += [usage_row(usage)] if usage else absent("LLM usage and cost")
    return rows
