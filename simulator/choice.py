"""The written-down decision of a grounded user: utilities, context shifts, seeded noise.

For the M items of a slate with features X [M, F] (`simulator.evidence.EVIDENCE`
plus ``llm``), a `ChoiceModel` fitted on training logs gives

    like logit  l_j = b + sum_f w_f (x_jf - mean_f) / scale_f  + c_j(context)
    rating      r_j = a + a_u * user_mean + a_i * item_mean_j + sum_f v_f z_jf

and `decide` turns them into one turn:

- each item is *liked* when l_j + T * e_j > 0, e_j ~ Logistic(0, 1) seeded; T is the
  noise temperature (T = 1 samples from the fitted probabilities, T = 0 is the argmax);
- the chosen items are the liked ones with the highest noisy logit, at most ``max_choices``;
- ratings read the noisy expected rating r_j + T * rating_sd * n_j, n_j ~ N(0, 1), by one of two
  rules (``RATING_RULES``). ``expected`` (the default) rounds it, clipped to 1..5, and rates a
  chosen item at least 3 (one does not pick what one would pan): the least squared error, but
  ratings pile up at 3-4, because a regression's predictions shrink to the mean. ``matched`` bins
  it at the cutpoints ``rating_cuts`` fitted on the training ratings, so that the ratings'
  histogram is the real one (1s and 5s included) in the same order, at the cost of a larger
  error; it has no floor, because every MovieLens rating is of a film its rater chose to watch,
  and 17% of them are 1 or 2. `personasim validate fidelity` measures both; no one rule gives
  both (README, "Can the simulated users be believed?");
- stop: with probability sigmoid(STOP_BASE + context shifts + STOP_IF_NOTHING when nothing
  was chosen), from ``allow_stop_from`` on.

Why T = 0 is the default (campaigns and the fidelity benchmark). The like model is fitted
class-balanced on positives against never-rated items, so its probabilities rank items but are
not the rate at which a person takes an item (MovieLens records no impressions): sampling
from them at T = 1 would be noise of no known size, and any T in between is as arbitrary.
T = 0 is the fitted decision itself. It is also what the measurements favour (README): on
the fidelity benchmark T = 0.25 cost 0.04 accuracy, and in the default campaign design even
T = 0.1 let the first tie-break between two likeable items send two runs of one user down
different slates (run-to-run / persona-to-persona variance 0.16 at T = 0, 1.02 at 0.1, 1.07
at 0.25: benchmarks/drift_temperature.py). Set T > 0 to study test-retest noise; the stop
hazard stays random at any T.

Context shifts (`CONTEXT_SHIFTS`) are not fitted: training logs carry no context.
They are stated here and tested: "with kids" lowers horror, crime, thriller,
war and film-noir and raises children's films and animation; "20 minutes"
lowers every item (MovieLens-100k has no running times, so a short evening
means fewer picks, not shorter films) and raises the stop hazard; "impatient"
stops sooner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: (context characteristic, value) -> like-logit shift per genre; "*" applies to every item.
CONTEXT_SHIFTS: dict[tuple[str, str], dict[str, float]] = {
    ("companions", "with kids"): {"Children's": 1.0, "Animation": 1.0, "Horror": -2.0, "Crime": -1.0,
                                  "Thriller": -1.0, "War": -1.0, "Film-Noir": -1.0},
    ("occasion", "family time"): {"Children's": 0.5, "Horror": -1.0},
    ("occasion", "date night"): {"Romance": 0.5},
    ("time_available", "20 minutes"): {"*": -0.75},
    ("mood", "tired"): {"Comedy": 0.5, "Documentary": -0.5, "War": -0.5},
    ("effort_tolerance", "wants something easy"): {"Comedy": 0.5, "Documentary": -0.5, "Film-Noir": -0.5},
    ("decisiveness", "hesitant"): {"*": -0.25},
}
#: How a grounded user turns its expected rating into a 1-5 rating (module docstring).
RATING_RULES = ("expected", "matched")
#: Stop hazard per turn: base logit and context shifts (stated, not fitted).
STOP_BASE = -2.5
STOP_IF_NOTHING = 1.0
STOP_SHIFTS: dict[tuple[str, str], float] = {("patience", "impatient"): 1.5, ("time_available", "20 minutes"): 1.0}


class ChoiceModel(BaseModel):
    """Weights of the decision (module docstring), fitted on a training split by `personasim calibrate`."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="'twin' or 'persona': which memory the weights were fitted for")
    features: list[str]
    mean: list[float]
    scale: list[float]
    like_coef: list[float]
    like_intercept: float
    rating_coef: list[float] = Field(description="[user_mean, item_mean, *features (standardised)]")
    rating_intercept: float
    rating_sd: float = Field(description="residual sd of the rating fit")
    rating_cuts: list[float] = Field(default_factory=list, description="4 ascending cutpoints on the expected rating "
                                     "whose bins hold the training ratings' shares of 1..5 (the 'matched' rule)")

    def z(self, X: np.ndarray) -> np.ndarray:
        """Standardised features [M, F]."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"features: expected [M, {len(self.features)}] ({self.features}), got {X.shape}")
        return (X - np.asarray(self.mean)) / np.asarray(self.scale)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """What each feature adds to the like logit [M, F] (w_f * z_f)."""
        return self.z(X) * np.asarray(self.like_coef)

    def like_logit(self, X: np.ndarray) -> np.ndarray:
        return self.like_intercept + self.contributions(X).sum(1)

    def expected_rating(self, X: np.ndarray, user_mean: float, item_mean: np.ndarray) -> np.ndarray:
        base = np.column_stack([np.full(len(X), user_mean), np.asarray(item_mean, dtype=float), self.z(X)])
        return self.rating_intercept + base @ np.asarray(self.rating_coef)

    def rating(self, r: np.ndarray, rule: str = "expected") -> np.ndarray:
        """1-5 ratings [M] of expected ratings ``r`` [M] by ``rule`` (module docstring)."""
        if rule == "expected":
            return np.clip(np.rint(r), 1, 5).astype(int)
        if rule != "matched":
            raise ValueError(f"rating rule {rule!r}: choose one of {', '.join(RATING_RULES)}")
        if len(self.rating_cuts) != 4:
            raise ValueError(f"the {self.kind} model has no rating cutpoints (a calibration from before they existed); "
                             "rerun `personasim calibrate` for the 'matched' rating rule")
        return 1 + np.searchsorted(np.asarray(self.rating_cuts), r, side="right").astype(int)


def rating_cuts(expected: np.ndarray, real: np.ndarray) -> list[float]:
    """The 4 cutpoints on ``expected`` [n] whose bins hold the shares of 1..5 in ``real`` [n]: the expected
    ratings' quantiles at the real ratings' cumulative shares."""
    share = np.bincount(np.asarray(real, dtype=int), minlength=6)[1:6] / len(real)
    return np.quantile(np.asarray(expected, dtype=float), np.clip(np.cumsum(share)[:4], 0.0, 1.0)).tolist()


def context_shift(context: dict[str, str], genres: list[list[str]]) -> np.ndarray:
    """Like-logit shift [M] of items with these genre lists under ``context``."""
    out = np.zeros(len(genres))
    for (name, value), table in CONTEXT_SHIFTS.items():
        if context.get(name) != value:
            continue
        for j, gs in enumerate(genres):
            out[j] += table.get("*", 0.0) + sum(table.get(g, 0.0) for g in gs)
    return out


def stop_logit(context: dict[str, str], chose_nothing: bool) -> float:
    return STOP_BASE + STOP_IF_NOTHING * chose_nothing + sum(
        v for (name, value), v in STOP_SHIFTS.items() if context.get(name) == value)


@dataclass
class Decision:
    """One turn's decision over M items: logits [M] (context included), liked [M] bool,
    chosen (indices, best first), ratings [M] ints, stop; rating_scores [M]: the noisy expected
    ratings the ratings were read from (`ChoiceModel.rating` reads them by the other rule)."""

    logits: np.ndarray
    liked: np.ndarray
    chosen: list[int]
    ratings: np.ndarray
    stop: bool
    rating_scores: np.ndarray


def decide(model: ChoiceModel, X: np.ndarray, *, user_mean: float, item_mean: np.ndarray, genres: list[list[str]],
           context: dict[str, str], temperature: float, rng: np.random.Generator, max_choices: int | None = None,
           may_stop: bool = False, rating_rule: str = "expected") -> Decision:
    """The decision over M items (module docstring). ``max_choices=None``: no cap (taste alignment)."""
    if temperature < 0:
        raise ValueError(f"noise temperature must be >= 0, got {temperature}")
    logits = model.like_logit(X) + context_shift(context, genres)
    u = rng.uniform(1e-12, 1 - 1e-12, size=len(logits))
    noisy = logits + temperature * np.log(u / (1 - u))
    liked = noisy > 0
    order = [int(j) for j in np.argsort(-noisy, kind="stable") if liked[j]]
    chosen = order if max_choices is None else order[:max_choices]
    r = model.expected_rating(X, user_mean, item_mean) + temperature * model.rating_sd * rng.standard_normal(len(logits))
    ratings = model.rating(r, rating_rule)
    if rating_rule == "expected":
        ratings[chosen] = np.maximum(ratings[chosen], 3)
    stop = bool(may_stop and rng.random() < 1.0 / (1.0 + np.exp(-stop_logit(context, not chosen))))
    return Decision(logits, liked, chosen, ratings, stop, r)
