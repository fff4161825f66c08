"""The campaign's data set (`recsys.dataset`): what it holds, what a campaign needs of it, and what it switches off.

``recsys.dataset: ml-100k`` (the default) is the packaged MovieLens-100k, read by `recsys.load_movielens` as it
always was; ``{path: DIR}`` (and ``name: NAME`` when DIR holds several ``.inter`` files) is any folder of RecBole
atomic files, read by `recsys.atomic.load_atomic` (its module says which fields are read and how).

Decisions, made once here:

- **Personas** of a campaign's own data come from ``personas.extract: dataset-users``: one document per user,
  rendered from the part of their interactions the campaign may show (`evals.validity.grounding.document_rows`:
  the train part of the grounded users' split, or all but the offline test items when ``personas.holdout`` is
  None or the ratings are on another scale) by `personas.corpora.interaction_users`: titles, genres or categories, and whatever demographics the
  ``.user`` file has. The users are clustered on what they did (`evals.validity.grounding.behaviour_vectors`),
  not on the documents' words, which for a log of ids do not tell users apart. 'ml-100k-users' renders
  MovieLens-100k's users exactly as before, so it is refused on another data set (its users and items are not
  that data set's).
- **The recommenders** are trained and scored on the leave-last-out split (`recsys.leave_last_out`), as on
  ML-100k, so every data set needs a timestamp on every interaction and a user with two positives (rating >= 4).
- **Grounded users** are calibrated on a time split's train part and need timestamps. On `explicit_ratings` (at
  least two distinct values, all on the 1-5 scale simulated users rate on) they are calibrated as on MovieLens;
  on an `implicit_log` (every interaction 5, or labels 5 and 0: purchases, clicks) on what the users went on to
  take, without a rating model, like given watched or a person's own level (`evals.validity.calibration`), and
  their ratings say only what they took (`simulator.choice.ChoiceModel.implicit`); the report names what is off.
  A log's timestamps may be a user's own order numbers (the Instacart sample's), on which only the per-user split
  means anything: such a config says ``personas.split: per-user``. Ratings on another scale are refused.
- **Sizes** are checked before any work: the personas to extract against the users with a document, a
  session's items (onboarding pool + turns x slate) against the catalog.
- **A missing column switches off what needs it**, named in OUT/dataset.json and in the report's warnings
  (`DataProfile.switched_off`), never a crash: without genres, ILD falls back to item-embedding cosine and
  calibration KL and taste coverage are NaN, items show no genre, personas have no favourite genre; without
  years items show none; without demographics the documents have no "About:" sentence and the personas no
  demographic facts; without explicit ratings the documents have no "Dislikes:" (and grounded users decide
  without a rating model, above). A *variant* that needs a missing column is refused instead: the 'calibration' reranker, or a
  reranker on 'pop' (which has no item embeddings to fall back on), on a catalog without genres. Dropping a
  variant the config names would make an A/B it asks for vanish.

Every refusal is a `DatasetError` of one line, raised by `check_dataset` before the campaign folder is claimed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

#: The user variants that need no ratings over time: what a refused grounded config is told to use.
WITHOUT_RATINGS = "[layered, naive]"


class DatasetError(ValueError):
    """A data set the campaign cannot run on as configured; one line naming the file or field."""


def load_dataset(dataset):
    """The `recsys.Dataset` of a config's ``recsys.dataset``. DataError (one line, naming the file) for a folder
    that is not a RecBole data set."""
    if dataset == "ml-100k":
        from personas.infra.assets import ml100k_dir
        from recsys import load_movielens

        return load_movielens(ml100k_dir())
    from recsys.atomic import load_atomic

    return load_atomic(dataset.path, dataset.name)


def inter_file(dataset) -> Path:
    """The ``.inter`` file of a config's ``recsys.dataset``."""
    if dataset == "ml-100k":
        from personas.infra.assets import ml100k_dir

        return ml100k_dir() / "ml-100k.inter"
    from recsys.atomic import atomic_name

    return Path(dataset.path) / f"{atomic_name(dataset.path, dataset.name)}.inter"


def source_files(dataset) -> dict[str, Path]:
    """{'dataset NAME.ext': path} of a folder's atomic files ({} for the packaged ML-100k): the inputs a campaign
    on them is pinned to (`evals.campaign.driver.input_files`)."""
    if dataset == "ml-100k":
        return {}
    inter = inter_file(dataset)
    paths = [inter.with_suffix(ext) for ext in (".inter", ".item", ".user")]
    return {f"dataset {p.name}": p for p in paths if p.is_file()}


@dataclass(frozen=True)
class DataProfile:
    """What a data set holds, as far as a campaign cares. ``rating_field``: whether ``.inter`` has a rating field;
    ``ratings``: (min, max, distinct values)."""

    name: str
    source: str
    inter: str
    users: int
    items: int
    interactions: int
    rating_field: bool
    ratings: tuple[float, float, int]
    explicit_ratings: bool
    implicit: bool
    timestamps: bool
    genres: bool
    years: bool
    demographics: tuple[str, ...]

    def switched_off(self) -> list[str]:
        """One line per feature this data set cannot have (the module's list)."""
        out = []
        if not self.genres:
            out.append("no item genres or categories: ILD is item-embedding cosine, calibration KL and taste "
                       "coverage are not computed, items show no genre, personas have no favourite genre")
        if not self.years:
            out.append("no item years: items show none")
        if not self.demographics:
            out.append("no user demographics: persona documents have no 'About:' sentence, personas no "
                       "demographic facts")
        if self.implicit:
            out.append("no explicit ratings (an implicit log): persona documents have no 'Dislikes:'; grounded users "
                       "are calibrated on what users took (their own level moves the take), with no rating model or "
                       "like given watched; they keep every item they take and rate it 5 (3 an item not taken), so "
                       "their ratings are not a measure (their mean rating, 3 + 2 x their acceptance, is left out of "
                       "the tables and the A/B) and their Q&A asks the card; the fidelity check reads taste, A/B and "
                       "how much users take, not ratings")
        elif not self.explicit_ratings:
            out.append("no ratings on the 1-5 scale: persona documents have no 'Dislikes:', and grounded users cannot "
                       "run")
        return out

    def record(self) -> dict:
        """OUT/dataset.json: the profile and what it switched off."""
        return {**asdict(self), "switched_off": self.switched_off()}


def profile(ds, dataset) -> DataProfile:
    """The `DataProfile` of ``ds``, loaded from a config's ``recsys.dataset``."""
    from evals.validity.grounding import explicit_ratings, implicit_log
    from recsys.atomic import has_timestamps

    inter = inter_file(dataset)
    with open(inter, encoding="utf-8-sig") as f:
        fields = [cell.split(":")[0] for cell in f.readline().rstrip("\r\n").split("\t")]
    r = ds.ratings["rating"]
    return DataProfile(
        name=ds.name, source=dataset if dataset == "ml-100k" else str(dataset.path), inter=str(inter),
        users=int(ds.n_users), items=int(ds.n_items), interactions=int(len(ds.ratings)),
        rating_field="rating" in fields, ratings=(float(r.min()), float(r.max()), int(r.nunique())),
        explicit_ratings=explicit_ratings(ds), implicit=implicit_log(ds), timestamps=has_timestamps(ds),
        genres=any(len(gs) for gs in ds.items["genres"]),
        years=any(str(y).strip() and str(y) != "nan" for y in ds.items["year"]),
        demographics=tuple(c for c in ds.users.columns if c != "user_id"))


def _no_grounded(p: DataProfile) -> str | None:
    """Why grounded users cannot run on ``p`` (naming the missing field), or None."""
    why = None
    if not p.explicit_ratings and not p.implicit:
        lo, hi, _ = p.ratings
        why = (f"'rating' in {p.inter} runs from {lo:g} to {hi:g}: neither explicit ratings on the 1-5 scale "
               "simulated users rate on nor an implicit log (every interaction 5, or labels)")
    elif not p.timestamps:
        why = f"{p.inter} has no 'timestamp' on every interaction"
    if why is None:
        return None
    return (f"field 'user_variants': 'grounded' users are calibrated on ratings or interactions over time, and {why}; "
            f"use user_variants {WITHOUT_RATINGS}")


def check_dataset(cfg):
    """The campaign's data set loaded and checked against ``cfg`` (the module's decisions), before any work:
    returns its `DataProfile`; DatasetError of one line otherwise (a folder that does not load included)."""
    from evals.validity.grounding import DATASET_USERS, document_rows, document_split
    from recsys.data import DataError

    dataset = cfg.recsys.dataset
    where = "field 'recsys.dataset'"
    try:
        ds = load_dataset(dataset)
        p = profile(ds, dataset)
    except (DataError, OSError) as exc:
        raise DatasetError(f"{where}: {exc}") from None
    if not p.timestamps:
        raise DatasetError(f"{where}: {p.inter} has no 'timestamp' on every interaction; the recommenders are "
                           "trained and scored on a leave-last-out split (each user's latest positive held out), "
                           "which needs one")
    pos = ds.ratings[ds.ratings["rating"] >= 4]
    if not (pos.groupby("user").size() >= 2).any():
        raise DatasetError(f"{where}: no user in {p.inter} has two positives (rating >= 4); the recommenders' "
                           "leave-last-out split holds one out and trains on the rest")
    if "grounded" in cfg.user_variants and (why := _no_grounded(p)):
        raise DatasetError(why)
    source = cfg.personas
    if source.extract == "ml-100k-users" and dataset != "ml-100k":
        raise DatasetError(f"field 'personas.extract': 'ml-100k-users' are MovieLens-100k's users, not those of "
                           f"{p.source}; extract '{DATASET_USERS}' (this data set's own users)")
    if source.extract in ("ml-100k-users", DATASET_USERS):
        try:
            split = document_split(ds, source.split, source.holdout)
            users = document_rows(ds, split, source.holdout)["user"].nunique()
        except DataError as exc:
            raise DatasetError(f"field 'personas': {exc}") from None
        if source.k > users:
            raise DatasetError(f"field 'personas.k': {source.k} personas from {users} users with a document in "
                               f"{p.name}; lower k")
    need = cfg.recsys.onboarding_pool + cfg.turns * cfg.slate_size
    if need > p.items:
        raise DatasetError(f"{where}: {p.name} has {p.items} items, and a session shows up to {need} "
                           f"(recsys.onboarding_pool {cfg.recsys.onboarding_pool} + turns {cfg.turns} x slate_size "
                           f"{cfg.slate_size}); lower them")
    if not p.genres:
        for variant in cfg.variants:
            model, _, reranker = variant.partition("+")
            if reranker == "calibration" or (reranker in ("mmr", "dpp") and model == "pop"):
                need_what = "item genres" if reranker == "calibration" else "item genres or embeddings ('pop' has none)"
                raise DatasetError(f"field 'variants': {variant!r} needs {need_what}, and {p.name} has no genre field "
                                   "(genre, genres, class or categories in .item); drop it or use mmr or dpp on a "
                                   "model with embeddings")
    return p


def recorded_implicit(run_dir: str | Path) -> bool:
    """Whether the campaign in ``run_dir`` ran on an implicit log, as its dataset.json records (False without one:
    a campaign from before the record, MovieLens's)."""
    import json

    try:
        return bool(json.loads((Path(run_dir) / "dataset.json").read_text(encoding="utf-8")).get("implicit"))
    except (OSError, ValueError, AttributeError):
        return False
