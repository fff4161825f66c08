"""Drift read against people: the campaign's within/between statistic computed on real users.

A simulated population's run-to-run variation is believable when it is about as large as a real
person's. Real people are never shown the same recommender twice, but their held-out period can be
cut in two: each test user's held-out ratings, in time order, give a first half ("run 0") and a second
half ("run 1"). One half is one session: the rated films are the slate, the films rated >= LIKED_MIN
are the chosen ones, and the ratings are the ratings. `evals.validity.drift_features.session_features` turns these rows
into the same features as a campaign's sessions (genres of the chosen, mean rating / 5, share chosen),
grouped by the same personas (the user's persona assignment from the extraction), and
`evals.validity.drift.variance_ratio` gives the same within / between ratio.

What the two numbers mean:
- The real ratio is an *upper bound* on real test-retest noise: the two halves are two stretches of
  time, so they carry drift over time (tastes move, new films arrive) as well as noise. A simulator
  whose ratio is far below it has built its stability in; one far above it is noisier than people.
- Its spread at the campaign's design: the campaign has U users per persona and K personas, and a
  ratio over 4 x 4 users scatters widely. So users are drawn at random among each persona's members,
  U per persona, ``draws`` times, and the ratio of each draw is kept: the median and the 2.5-97.5%
  range of those ratios is the target interval a campaign's ratio CI is read against (`compare`).
  Over all eligible users the ratio is given too, with the identical-persona null
  (`evals.validity.drift.null_ratio`), which tests one thing: whether persona labels explain some of the
  differences between users' behaviour (not whether a user is stable).

A user is eligible with at least MIN_PER_HALF held-out ratings in each half. Only the held-out part
of the split is read, and only for this target: nothing is fitted on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evals.validity.drift import HEADLINE, null_ratio, variance_ratio
from evals.validity.drift_features import feature_blocks, session_features
from simulator.selector import LIKED_MIN  # a film rated at least this is chosen (the grounded users' "liked")

#: Held-out ratings a user needs in each half.
MIN_PER_HALF = 3
#: Random draws of the campaign's design.
DRAWS = 200


def halves(test: pd.DataFrame, min_per_half: int = MIN_PER_HALF) -> pd.DataFrame:
    """Each user's held-out ratings ``test`` (user, item, rating, timestamp) cut in two halves in time order
    (ties by item): a 'run' column, 0 for the first floor(n / 2) ratings and 1 for the rest. Users with fewer
    than ``min_per_half`` ratings in a half are dropped."""
    t = test.sort_values(["user", "timestamp", "item"], kind="stable").copy()
    pos = t.groupby("user").cumcount().to_numpy()
    n = t.groupby("user")["item"].transform("size").to_numpy()
    t["run"] = (pos >= n // 2).astype(int)
    sizes = t.groupby(["user", "run"]).size().unstack(fill_value=0)
    keep = sizes.index[(sizes.get(0, 0) >= min_per_half) & (sizes.get(1, 0) >= min_per_half)]
    return t[t["user"].isin(keep)]


def real_sessions(ds, test: pd.DataFrame, persona_of: dict[str, str], *, min_per_half: int = MIN_PER_HALF,
                  liked_min: float = LIKED_MIN) -> pd.DataFrame:
    """Event rows (the columns `evals.validity.drift_features.session_features` reads) of the real test users: one session per
    user and half, user_variant 'real', variant 'heldout'. Users without a persona are left out."""
    uid = ds.users["user_id"].astype(str).to_numpy()
    iid = ds.items["item_id"].astype(str).to_numpy()
    genres = ds.items["genres"].to_numpy()
    rows = []
    for (u, run), g in halves(test, min_per_half).groupby(["user", "run"], sort=True):
        persona = persona_of.get(uid[u])
        if persona is None:
            continue
        items = g["item"].to_numpy()
        rows.append({"user_variant": "real", "variant": "heldout", "persona_id": persona, "user_id": uid[u],
                     "run": int(run), "turn": 0, "ok": True, "utterance": "", "consistency": {},
                     "slate": [{"id": iid[i], "genres": list(genres[i] or [])} for i in items],
                     "chosen": [iid[i] for i, r in zip(items, g["rating"]) if r >= liked_min],
                     "ratings": {iid[i]: int(r) for i, r in zip(items, g["rating"])}})
    if not rows:
        raise ValueError(f"no test user has {min_per_half} held-out ratings in each half and a persona")
    return pd.DataFrame(rows)


def _matrix(features: pd.DataFrame) -> np.ndarray:
    blocks = feature_blocks(features)
    return np.concatenate([blocks[b] for b in HEADLINE], axis=1)


def real_drift(sessions: pd.DataFrame, users_per_persona: int, *, draws: int = DRAWS, seed: int = 0,
               n_perm: int = 2000) -> dict:
    """The real users' ratio over all of them (with its null) and at the campaign's design (module docstring).

    ``users_per_persona``: U, the campaign's users per persona; a persona with fewer eligible members is
    refused (ValueError naming it). Returns JSON-ready {all: {ratio, n_users, null}, design: {users_per_persona,
    draws, median, q025, q975, q05, q95, ratios_defined}, n_users_by_persona, min_per_half, liked_min}."""
    features = session_features(sessions)
    X = _matrix(features)
    persona, unit = features["persona_id"].to_numpy(), features["user_id"].to_numpy()
    members = {p: sorted(set(unit[persona == p].tolist())) for p in sorted(set(persona.tolist()))}
    short = {p: len(m) for p, m in members.items() if len(m) < users_per_persona}
    if users_per_persona < 1 or short:
        raise ValueError(f"users_per_persona={users_per_persona}: the real users cannot fill that design "
                         f"(eligible members per persona: {short or {p: len(m) for p, m in members.items()}})")
    overall = variance_ratio(X, persona, unit)
    null = null_ratio(X, persona, unit, block=unit, n_perm=n_perm, seed=np.random.default_rng([seed, 0]))
    rng = np.random.default_rng([seed, 1])
    ratios = []
    for _ in range(draws):
        picked = {u for m in members.values() for u in rng.choice(m, size=users_per_persona, replace=False)}
        keep = np.array([u in picked for u in unit])
        r = variance_ratio(X[keep], persona[keep], unit[keep])["ratio_within_over_between"]
        if r is not None:
            ratios.append(r)
    q = (lambda p: float(np.quantile(ratios, p))) if ratios else (lambda p: None)
    return {
        "all": {"ratio": overall["ratio_within_over_between"], "within": overall["within"],
                "between": overall["between"], "n_users": int(len(set(unit.tolist()))),
                "null": null, "reason": overall.get("reason")},
        "design": {"users_per_persona": users_per_persona, "draws": draws, "ratios_defined": len(ratios),
                   "median": q(0.5), "q025": q(0.025), "q975": q(0.975), "q05": q(0.05), "q95": q(0.95)},
        "n_users_by_persona": {p: len(m) for p, m in members.items()},
        "min_per_half": MIN_PER_HALF, "liked_min": LIKED_MIN,
    }


#: Why an implicit log has no real drift to read (`real_drift_of`; the report's panel says it).
IMPLICIT_UNMEASURABLE = ("not measurable on an implicit log: real users' sessions are read from their held-out "
                         "ratings (share liked, mean rating), and every held-out interaction is a take")


def real_drift_of(personas_path, users_per_persona: int, *, ds=None, draws: int = DRAWS, seed: int = 0) -> dict:
    """`real_drift` of the test users of ``ds`` (default: MovieLens-100k) behind ``personas_path``: its split
    (GroundingError when the personas have none, or are of another data set), each user's held-out ratings in two
    halves, grouped by the personas' assignments. GroundingError(`IMPLICIT_UNMEASURABLE`) on an implicit log."""
    from pathlib import Path

    from evals.validity.grounding import GroundingError, implicit_log, read_assignments, split_for

    if ds is None:
        from personas.infra.assets import ml100k_dir
        from recsys import load_movielens

        ds = load_movielens(ml100k_dir())
    if implicit_log(ds):
        raise GroundingError(f"{ds.name}: {IMPLICIT_UNMEASURABLE}")
    sessions = real_sessions(ds, split_for(ds, personas_path).test, read_assignments(Path(personas_path).parent))
    return real_drift(sessions, users_per_persona, draws=draws, seed=seed)


def compare(simulated_ci: list | None, real: dict) -> str:
    """One line: where a simulated ratio's 95% CI lies against the real users' 2.5-97.5% range at the design."""
    lo, hi = (real.get("design") or {}).get("q025"), (real.get("design") or {}).get("q975")
    if not simulated_ci or None in simulated_ci or lo is None or hi is None:
        return "not comparable: a ratio or its range is undefined"
    if simulated_ci[1] < lo:
        return (f"more stable than real users: CI [{simulated_ci[0]:.3g}, {simulated_ci[1]:.3g}] lies below their "
                f"range [{lo:.3g}, {hi:.3g}] (stability built in, not measured)")
    if simulated_ci[0] > hi:
        return (f"noisier than real users: CI [{simulated_ci[0]:.3g}, {simulated_ci[1]:.3g}] lies above their "
                f"range [{lo:.3g}, {hi:.3g}]")
    return f"within real users' range: CI [{simulated_ci[0]:.3g}, {simulated_ci[1]:.3g}] overlaps [{lo:.3g}, {hi:.3g}]"
