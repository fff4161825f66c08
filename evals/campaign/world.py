"""Everything a campaign session needs, built once per process.

`prepare` (driver only, once per campaign folder) extracts the personas,
calibrates the grounded users and measures their fidelity on held-out data, and
trains the recommenders, saving all of it under OUT so that a resumed run or a Ray
worker loads instead of rebuilding. `CampaignWorld.load` reads them back and
`run_job` plays one session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from evals.campaign.config import CampaignConfig
from evals.campaign.events import TurnEvent
from evals.campaign.foldin import FoldInBatcher, FoldInSettings
from evals.campaign.jobs import Job, user_id_for
from personas.infra.files import write_whole

log = logging.getLogger(__name__)


def personas_path_of(cfg: CampaignConfig, out: Path) -> Path:
    return Path(cfg.personas.path) if cfg.personas.path else out / "personas" / "personas.jsonl"


def _model_names(cfg: CampaignConfig) -> list[str]:
    return sorted({v.partition("+")[0] for v in cfg.variants} - {"pop"})


def _split_variant(variant: str, rc):
    """'mf+dpp' -> ('mf', the DPP reranker with the campaign's lambda and candidates); 'ampcf' -> ('ampcf', None)."""
    from recsys import Reranker

    base, _, rr = variant.partition("+")
    return base, (Reranker(rr, rc.rerank_lambda, rc.candidates) if rr else None)


def _dataset(cfg: CampaignConfig):
    """The campaign's data set (``recsys.dataset``: MovieLens-100k, or a folder of RecBole atomic files), loaded
    afresh by each step that reads it (`evals.campaign.dataset`; checked before any work by `check_dataset`)."""
    from evals.campaign.dataset import load_dataset

    return load_dataset(cfg.recsys.dataset)


def prepare(cfg: CampaignConfig, out: Path, show_progress: bool = True) -> None:
    """Extract personas and train models unless OUT already holds them (through `recsys.offline`, the
    bench's own API: a campaign's 'ampcf' is the bench's 'ampcf-kK' on the campaign's config)."""
    from evals.validity.grounding import DATASET_USERS
    from recsys import leave_last_out
    from recsys.offline import evaluate
    from recsys.contract import Catalog
    from recsys.registry import save_model, train

    personas_path = personas_path_of(cfg, out)
    if cfg.personas.extract and not personas_path.exists():
        log.info("extracting %d personas from %s", cfg.personas.k, cfg.personas.extract)
        if cfg.personas.extract == "ml-100k-users" and cfg.personas.holdout:
            from evals.validity.grounding import extract_train_personas
            from recsys.time_splits import make_split

            ds = _dataset(cfg)
            split = make_split(ds, cfg.personas.split, cfg.personas.holdout)
            extract_train_personas(ds, split, personas_path.parent, k=cfg.personas.k,
                                   seed=cfg.seed, cache_dir=out / "personas" / "embeddings", show_progress=show_progress)
        elif cfg.personas.extract == DATASET_USERS:  # the campaign's own users: evals/campaign/dataset.py
            from evals.validity.grounding import extract_dataset_personas

            extract_dataset_personas(_dataset(cfg), personas_path.parent, kind=cfg.personas.split,
                                     holdout=cfg.personas.holdout, k=cfg.personas.k, seed=cfg.seed,
                                     show_progress=show_progress)
        else:
            from personas import extract_personas, load_documents

            result = extract_personas(load_documents(cfg.personas.extract), k=cfg.personas.k, seed=cfg.seed,
                                      cache_dir=out / "personas" / "embeddings", show_progress=show_progress)
            result.write(personas_path.parent)
    if "grounded" in cfg.user_variants and not (personas_path.parent / "calibration.json").exists():
        _calibrate(cfg, out, personas_path, show_progress)
    if "grounded" in cfg.user_variants and cfg.grounding.fidelity_users and not cfg.fidelity \
            and not (out / "fidelity.json").exists():
        check_fidelity(cfg, out, personas_path, show_progress)
    models_dir = out / "models"
    offline = models_dir / "offline.json"
    if offline.exists():
        return
    models_dir.mkdir(parents=True, exist_ok=True)
    ds = _dataset(cfg)
    write_dataset_record(cfg, out, ds)
    split = leave_last_out(ds)
    genres, _ = ds.genre_matrix()
    rc = cfg.recsys
    settings = settings_of(cfg)
    catalog = Catalog.of(ds.items)
    models = {"pop": train("pop", settings, split.train)}
    for name in sorted(_model_names(cfg), key=lambda n: n != "mf"):  # MF first: 'ampcf-mf' starts from it
        models[name] = train(name, settings, split.train, catalog=catalog, start=models.get("mf"),
                             show_progress=show_progress)
        save_model(models[name], models_dir, name, write_whole)
    rows = []
    for variant in cfg.variants:
        base, reranker = _split_variant(variant, rc)
        row = evaluate(variant, models[base], split, genres, 10, reranker)
        row.pop("_per_user_ndcg", None)  # per-user arrays are for the bench's paired CIs
        rows.append(row)
    write_whole(offline, json.dumps({"config_hash": cfg.config_hash(), "seed": cfg.seed, "rows": rows}, indent=2))


def write_dataset_record(cfg: CampaignConfig, out: Path, ds) -> None:
    """OUT/dataset.json: what the campaign's data set holds and what it switched off for want of a column
    (`evals.campaign.dataset.DataProfile`); the report names each switched-off feature."""
    from evals.campaign.dataset import profile

    write_whole(out / "dataset.json", json.dumps(profile(ds, cfg.recsys.dataset).record(), indent=2) + "\n")


def settings_of(cfg: CampaignConfig):
    """What this campaign decides for every recommender it builds (`recsys.registry.Settings`)."""
    from recsys.registry import Settings

    return Settings(train_config_of(cfg), mixture_k=cfg.recsys.mixture_k, seed=cfg.seed,
                    services={url: o.model_dump() for url, o in cfg.recsys.services.items()})


def train_config_of(cfg: CampaignConfig):
    """How this campaign trains its recommenders (`recsys.offline.DEFAULT_TRAIN` at its dim, epochs and seed)."""
    from recsys.offline import DEFAULT_TRAIN

    return replace(DEFAULT_TRAIN, dim=cfg.recsys.dim, epochs=cfg.recsys.epochs, seed=cfg.seed)


def _llm_client(cfg: CampaignConfig, out: Path):
    from simulator.llm import create_client

    llm = cfg.llm
    return create_client(llm.backend, concurrency=llm.concurrency, cache_dir=out / "llm_cache" if llm.cache else None,
                         **llm.backend_options())


@contextmanager
def _prepare_llm(cfg: CampaignConfig, out: Path, needed: bool) -> Iterator:
    """The campaign's LLM client for a step of `prepare` when ``needed`` (else None), its answer cache closed
    after the step (the sessions open a client of their own)."""
    llm = _llm_client(cfg, out) if needed else None
    try:
        yield llm
    finally:
        if llm is not None and llm.cache is not None:
            llm.cache.close()


def _calibrate(cfg: CampaignConfig, out: Path, personas_path: Path, show_progress: bool) -> None:
    """Fit the grounded users on the personas' training split (calibration.json beside the personas)."""
    from evals.validity.calibration import calibrate, write_calibration
    from evals.validity.grounding import split_for

    g = cfg.grounding
    ds = _dataset(cfg)
    split = split_for(ds, personas_path)
    with _prepare_llm(cfg, out, g.llm_feature) as llm:
        record = calibrate(ds, split, personas_path, llm, n_users=g.calibration_users, use_llm=g.llm_feature,
                           seed=cfg.seed, show_progress=show_progress, verb=cfg.recsys.verb())
    write_calibration(record, personas_path)


def check_fidelity(cfg: CampaignConfig, out: Path, personas_path: Path, show_progress: bool) -> None:
    """OUT/fidelity.json: `personasim validate fidelity`'s protocol (taste alignment, rating error, A/B fidelity on
    the held-out part of the personas' split) for this campaign's grounded users: its personas, its calibration,
    its decision settings, its recommenders' training settings. The report's first validity check reads it.
    On personas of the outer split this reads the test part: ``read`` says so, and the read is counted
    (`evals.validity.read_ledger.count_campaign_read`: in a checkout of this repository, never silently).
    Whether the LLM is read follows the calibration's features, as the sessions do (a reused calibration may
    differ from ``grounding.llm_feature``, which only says how to fit a new one)."""
    from evals.validity.calibration import read_calibration
    from evals.validity.fidelity import FidelityConfig, measure_fidelity
    from evals.validity.read_ledger import count_campaign_read, part_read, test_reads_path
    from evals.validity.grounding import split_for
    from personas.card import read_personas

    g = cfg.grounding
    ds = _dataset(cfg)
    split = split_for(ds, personas_path)
    calibration, _ = read_calibration(personas_path)
    use_llm = "llm" in calibration["features"]
    fcfg = FidelityConfig(split=split.kind, holdout=split.holdout, n_personas=max(2, len(read_personas(personas_path))),
                          users=g.fidelity_users,
                          calibration_users=max(10, int(calibration.get("n_users") or g.calibration_users)),
                          decision=g.decision, use_llm=use_llm, ab_users=g.fidelity_ab_users, ab_turns=cfg.turns,
                          slate_size=cfg.slate_size, seed=cfg.seed, layers=list(g.layers))
    log.info("measuring the grounded users' fidelity on %d held-out users", fcfg.users)
    with _prepare_llm(cfg, out, use_llm) as llm:
        record = measure_fidelity(ds, split, personas_path, fcfg, llm, show_progress=show_progress,
                                  train_config=train_config_of(cfg), mixture_k=cfg.recsys.mixture_k)
    record = {"source": "campaign", "campaign_config_hash": cfg.config_hash(), "read": part_read(split), **record}
    out.mkdir(parents=True, exist_ok=True)
    write_whole(out / "fidelity.json", json.dumps(record, indent=2, default=float) + "\n")
    if count_campaign_read(record, out) is not None:
        log.info("the fidelity check read the test part; counted in %s", test_reads_path())


def _grounding(cfg: CampaignConfig, personas_path: Path, ds):
    """The grounded users' item space, memories and fitted choice models (train part of the personas' split)."""
    from evals.validity.calibration import judgement_verb, read_calibration
    from evals.validity.grounding import item_space, memories, read_assignments, split_for
    from simulator.grounded import Grounding

    record, models = read_calibration(personas_path, cfg.grounding.rating_rule)
    split = split_for(ds, personas_path)
    if record["split"] != split.key:
        raise ValueError(f"{personas_path.parent / 'calibration.json'}: fitted on {record['split']}, "
                         f"the personas are of {split.key}")
    verb = judgement_verb(record)
    if "llm" in record["features"] and verb != cfg.recsys.verb():
        raise ValueError(f"{personas_path.parent / 'calibration.json'}: its LLM judgement asks whether a user would "
                         f"{verb!r} an item, and this campaign's users {cfg.recsys.verb()!r} (recsys.dataset.verb); "
                         "recalibrate with this verb")
    space = item_space(ds, split.train)
    mems = memories(ds, split.train, read_assignments(personas_path.parent), space)
    return Grounding(space, models, mems, sampled=cfg.grounding.decision == "sampled",
                     rating_rule=cfg.grounding.rating_rule, judge_seed=record["seed"],  # an int: read_calibration checks
                     layers=tuple(cfg.grounding.layers), verb=verb)


def draw_twins(members: dict[str, list[str]], n: int, seed: int, has_memory) -> dict[str, list[str]]:
    """{persona id: ``n`` of its members drawn at random, seeded, without replacement, among those
    ``has_memory`` accepts}. Not the most central members: a persona's users are a sample of the people it
    stands for, so their spread is the persona's own (issue 33). ValueError of one line naming the persona
    when it has fewer than ``n`` such members."""
    from simulator import derive_seed

    out = {}
    for pid, docs in sorted(members.items()):
        pool = [d for d in docs if has_memory(d)]
        if len(pool) < n:
            raise ValueError(f"users_per_persona: {n} grounded users a persona, but persona {pid!r} has "
                             f"{len(pool)} members with training ratings")
        rng = np.random.default_rng(derive_seed(seed, "twins", pid))
        out[pid] = [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    return out


def check_twins(cfg: CampaignConfig, out: Path) -> bool:
    """ValueError of one line when a persona in use has fewer members with training ratings than the config's
    grounded users per persona (`draw_twins`). False when there was nothing to check (no grounded twins), or
    nothing yet (no personas on disk); True once checked."""
    from evals.validity.grounding import persona_members, split_for
    from personas.card import read_personas

    ppath = personas_path_of(cfg, out)
    if "grounded" not in cfg.user_variants or not cfg.grounding.twins or not ppath.is_file():
        return False
    cards = read_personas(ppath)[: cfg.personas.max_personas or None]
    ds = _dataset(cfg)
    split = split_for(ds, ppath)
    uid = ds.users["user_id"].astype(str).to_numpy()
    trained = {uid[u] for u in split.train["user"].unique()}
    members = persona_members(ppath.parent)
    draw_twins({c.id: members.get(c.id, []) for c in cards}, cfg.users_for("grounded"), cfg.seed, trained.__contains__)
    return True


def catalog_items(ds):
    """simulator Items for a recsys Dataset, and popularity (number of ratings) per item. An item shows its genres
    (or categories) and year where the data set has them, and nothing in their place where it does not."""
    from simulator import Item

    counts = np.bincount(ds.ratings["item"].to_numpy(), minlength=ds.n_items)
    items = [
        Item(id=str(r.item_id), title=r.title, facets={"genres": list(r.genres), **({"year": [r.year]} if r.year else {})})
        for r in ds.items.itertuples(index=False)
    ]
    return items, [float(c) for c in counts]


movielens_items = catalog_items  # its name before any data set could be a campaign's (`personasim simulate` uses it)


def user_settings(cfg, user_variant: str) -> dict:
    """The settings a campaign's simulated user of ``user_variant`` is built with (`simulator.variants.make_user`):
    the data set's verb for every variant (what a user does with a chosen item, `RecsysSettings.verb`), and the
    grounded users' voice."""
    return {"verb": cfg.recsys.verb(), **({"voice": cfg.grounding.voice} if user_variant == "grounded" else {})}


def user_seed(campaign_seed: int, job: Job, purpose: str) -> int:
    """A seed that belongs to the simulated user, not the run: the onboarding pool ("pool") and the
    recommender's fold-in ("fold-in") are the same in every run of a user (and under every recommender),
    so the same choices give the same slates, and run-to-run drift measures the simulated user, not the
    recommender's initialisation or a different set of items to onboard from."""
    from simulator import derive_seed

    return derive_seed(campaign_seed, purpose, job.user_variant, job.user_index)


class RecsysAdapter:
    """A trained recsys model (+ optional reranker) behind the simulator's RecommenderProtocol.

    One per session. Onboarding likes fold the user in (item parameters frozen);
    every chosen or >= 4-rated item joins the likes, and the user is refolded
    once before the next slate, not once per liked item (a fold-in starts from
    scratch on all likes, so the slate is the same with a third of the
    fold-ins). With a `FoldInBatcher` the refold happens in `prepare`, which the
    session awaits before each slate, so it runs off the event loop and batched
    with other sessions; `recommend` refolds inline only if nothing prepared it.
    Items already shown are never shown again. With AMP-CF each
    slate item carries the index of the mixture component whose attention
    dominated (``item.meta['component']``).
    """

    def __init__(self, model, reranker, items, popularity, genres, seed: int, folder: FoldInBatcher | None = None,
                 model_name: str = ""):
        self.model, self.reranker, self.items = model, reranker, items
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.genres, self.seed = genres, seed
        self.folder, self.model_name = folder, model_name
        self.index = {it.id: i for i, it in enumerate(items)}
        self.liked: list[int] = []
        self.shown: set[int] = set()
        self.params = None
        self._stale = False  # likes added since the last fold-in

    async def prepare(self) -> None:
        """Refold now if likes were added, off the loop (awaited by the session before each slate)."""
        if not (self._stale and self.liked and self.folder is not None and hasattr(self.model, "fold_in_batch")):
            return
        n = len(self.liked)
        warm = self.params if self.folder.settings.warm_steps is not None else None
        self.params = await self.folder.fold(self.model_name, self.liked, self.seed, warm)
        self._stale = len(self.liked) != n

    def _refold(self) -> None:
        if self._stale and self.liked and hasattr(self.model, "fold_in"):
            steps = (self.folder.settings if self.folder is not None else FoldInSettings()).steps
            self.params = self.model.fold_in(np.asarray(self.liked), steps, seed=self.seed)
        self._stale = False

    def onboard(self, liked_item_ids: list[str]) -> None:
        self.liked += [self.index[i] for i in liked_item_ids if i in self.index]
        self.shown.update(self.liked)
        self._stale = True

    def recommend(self, history, k: int):
        from recsys import slate

        self.shown.update(self.index[f.item_id] for f in history if f.item_id in self.index)
        self._refold()
        scores = self.model.score_params(self.params) if self.params is not None else self.popularity
        emb = self.model.item_embeddings() if hasattr(self.model, "item_embeddings") else None
        att, reranker = None, self.reranker
        if reranker is not None and reranker.kind == "mixture":  # mixture calibration: the user's attention
            att = self.model.explain_params(self.params, np.arange(len(scores))) if self.params is not None else None
            reranker = reranker if att is not None else None  # no likes yet: popularity, nothing to calibrate to
        picked = slate(scores, k, exclude=np.fromiter(self.shown, dtype=np.int64), reranker=reranker,
                       genres=self.genres, embeddings=emb, history=np.asarray(self.liked, dtype=np.int64), attention=att)
        self.shown.update(int(i) for i in picked)
        out = [self.items[int(i)] for i in picked]
        if self.params is not None and getattr(self.model, "k", 1) > 1:
            dominant = self.model.explain_params(self.params, picked).argmax(1)
            out = [it.model_copy(update={"meta": {**it.meta, "component": int(p)}}) for it, p in zip(out, dominant)]
        return out

    def observe(self, feedback) -> None:
        idx = self.index.get(feedback.item_id)
        if idx is None:
            return
        self.shown.add(idx)
        if (feedback.chosen or (feedback.rating or 0) >= 4) and idx not in self.liked:
            self.liked.append(idx)
            self._stale = True


class CampaignWorld:
    """Personas, users, catalog, models and the LLM client of one campaign, in one process."""

    def __init__(self, cfg: CampaignConfig, out: Path, fold_in: FoldInSettings | None = None):
        from personas.card import read_personas
        from recsys import Popularity, leave_last_out
        from recsys.registry import load_model, model_file
        from simulator import sample_users

        self.cfg, self.out = cfg, out
        cards = read_personas(personas_path_of(cfg, out))
        if cfg.personas.max_personas:
            cards = cards[: cfg.personas.max_personas]
        ds = _dataset(cfg)
        personas_path = personas_path_of(cfg, out)
        self.grounding, twins = None, None
        if "grounded" in cfg.user_variants:
            from evals.validity.grounding import persona_members

            self.grounding = _grounding(cfg, personas_path, ds)
            if cfg.grounding.twins:
                members = persona_members(personas_path.parent)
                twins = draw_twins({c.id: members.get(c.id, []) for c in cards}, cfg.users_for("grounded"), cfg.seed,
                                   lambda d: f"twin:{d}" in self.grounding.memories)
        self.users = {
            uv: [p.model_copy(update={"user_id": user_id_for(i)})
                 for i, p in enumerate(sample_users(cards, len(cards) * cfg.users_for(uv), cfg.seed, variant=uv,
                                                    twins=twins if uv == "grounded" else None))]
            for uv in cfg.user_variants
        }
        self.items, self.popularity = catalog_items(ds)
        self.genres, _ = ds.genre_matrix()
        self.models = {"pop": Popularity().fit(leave_last_out(ds).train)}
        for name in _model_names(cfg):
            self.models[name] = load_model(out / "models", name)
        torch_files = {name: model_file(out / "models", name) for name in _model_names(cfg)}
        self.folder = FoldInBatcher(self.models, fold_in or FoldInSettings(),
                                    {name: str(p) for name, p in torch_files.items() if p.suffix == ".pt"})
        self.llm = _llm_client(cfg, out)
        self.config_hash = cfg.config_hash()

    @classmethod
    def load(cls, config_json: str, out: str, fold_in: FoldInSettings | None = None) -> "CampaignWorld":
        return cls(CampaignConfig.model_validate_json(config_json), Path(out), fold_in)

    @staticmethod
    def n_users(cfg: CampaignConfig, out: Path) -> dict[str, int]:
        """{user variant: simulated users}."""
        from personas.card import read_personas

        n = len(read_personas(personas_path_of(cfg, out)))
        return {uv: min(n, cfg.personas.max_personas or n) * cfg.users_for(uv) for uv in cfg.user_variants}

    def recommender(self, variant: str, seed: int) -> RecsysAdapter:
        base, reranker = _split_variant(variant, self.cfg.recsys)
        return RecsysAdapter(self.models[base], reranker, self.items, self.popularity, self.genres, seed,
                             folder=self.folder, model_name=base)

    async def run_job(self, job: Job, on_turn) -> None:
        from simulator import SessionSettings, run_session, sample_pool

        cfg = self.cfg
        profile = self.users[job.user_variant][job.user_index]
        pool = sample_pool(self.items, self.popularity, cfg.recsys.onboarding_pool, user_seed(cfg.seed, job, "pool"))

        def record(turn) -> None:
            on_turn(TurnEvent.from_turn(turn, config_hash=self.config_hash, seed=job.seed,
                                        model=turn.model or self.llm.model, backend=self.llm.name,
                                        variant=job.variant, user_variant=job.user_variant, run=job.run))

        recommender = self.recommender(job.variant, user_seed(cfg.seed, job, "fold-in"))
        await run_session(profile, recommender, cfg.turns, job.seed, self.llm,
                          settings=SessionSettings(best_of=cfg.best_of, slate_size=cfg.slate_size,
                                                   reshow_from=cfg.reshow_from,
                                                   user=user_settings(cfg, job.user_variant)), pool=pool,
                          meta={"config_hash": self.config_hash, "variant": job.variant, "run": job.run},
                          on_turn=record, grounding=self.grounding)

    def close(self) -> None:
        self.folder.close()
        if self.llm.cache is not None:
            self.llm.cache.close()
