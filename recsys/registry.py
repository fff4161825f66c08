"""Every recommender a campaign, the bench or `personasim recsys check` can name, and how a name becomes a model.

A name is one of:
- a built-in (`BUILTINS`): 'pop', 'mf', 'ampcf', 'ampcf-mf', and the library models 'als', 'bpr', 'itemknn',
  'ease' (`recsys.library`);
- an installed plug-in, registered under the entry-point group ``personasim.recommenders`` (name = factory);
- a Python plug-in path, 'package.module:factory';
- a recommender running as a service, 'http://HOST:PORT' (`recsys.service`); its timeout, retries, depth and
  auth are fields of `Settings.services`, never parts of the URL.

A factory takes no argument, or a ``seed`` keyword, and returns an untrained model that keeps the contract
(`recsys.contract`). Settings are fields of `Settings`, never parsed back out of a name: 'ampcf' has
``mixture_k`` mixture components because the settings say so.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path

from recsys.contract import Catalog, as_recommender, give_catalog
from recsys.models import Popularity, Recommender, RecsysError, TrainConfig

ENTRY_POINT_GROUP = "personasim.recommenders"
#: AMP-CF prefers smaller batches (K=4: NDCG@10 0.071 at 1024, 0.075 at 256); tau 0.5 vs 1.0 made no difference.
AMPCF_BATCH = 256


@dataclass(frozen=True)
class Settings:
    """What a campaign or the bench decides for every recommender it builds."""

    train: TrainConfig
    mixture_k: int = 4  # AMP-CF's mixture components (user vectors) per user
    seed: int = 0
    #: a service's options by its URL ('http://HOST:PORT' -> {timeout_s, retries, depth, auth_env}:
    #: `recsys.service.ServiceRecommender`'s keywords); a URL not named here gets the defaults
    services: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """One nameable recommender: ``build(settings)`` gives it untrained."""

    name: str
    family: str
    build: Callable[[Settings], object]
    help: str
    source: str = "built-in"          # built-in | entry point | plug-in | service
    attention: bool = False           # attends over K > 1 mixture components (the 'mixture' reranker needs it)
    starts_from_mf: bool = False      # fitted from the campaign's trained MF (``fit(..., start=mf)``)
    torch: bool = False               # saved as torch state, not a pickle (`model_file`)


def _ampcf(s: Settings, from_mf: bool):
    from recsys.factorised import AMPCF

    if from_mf and s.mixture_k < 2:
        raise RecsysError(f"'ampcf-mf' needs mixture_k >= 2 (with one component it is MF), got {s.mixture_k}")
    return AMPCF(replace(s.train, batch_size=AMPCF_BATCH), k=s.mixture_k, tau=0.5, att_dim=16,
                 pretrain=s.train if from_mf else None)


def _mf(s: Settings):
    from recsys.factorised import MF

    return MF(s.train)


def _library(cls_name: str) -> Callable[[Settings], object]:
    def build(s: Settings):
        from recsys import library

        return getattr(library, cls_name)(seed=s.seed)

    return build


BUILTINS: dict[str, Entry] = {e.name: e for e in (
    Entry("pop", "popularity", lambda s: Popularity(), "training-count popularity"),
    Entry("mf", "factorised", _mf, "matrix factorisation, full-softmax loss (torch)", torch=True),
    Entry("ampcf", "attention", lambda s: _ampcf(s, False), "attention over K mixture components (user vectors), mixed per item",
          attention=True, torch=True),
    Entry("ampcf-mf", "attention", lambda s: _ampcf(s, True), "AMP-CF whose mixture components start from the trained MF",
          attention=True, starts_from_mf=True, torch=True),
    Entry("als", "factorised", _library("ALS"), "implicit's alternating least squares"),
    Entry("bpr", "factorised", _library("BPR"), "implicit's Bayesian personalised ranking"),
    Entry("itemknn", "neighbourhood", _library("ItemKNN"), "implicit's item-item cosine nearest neighbours"),
    Entry("ease", "linear", _library("EASE"), "EASE: closed-form item-item linear autoencoder"),
)}


def _factory_entry(name: str, factory, source: str) -> Entry:
    if not callable(factory):
        raise RecsysError(f"recommender {name!r}: {type(factory).__name__} is not callable; give a factory "
                          "that returns a model")
    takes_seed = "seed" in _parameters(factory)

    def build(s: Settings):
        try:
            return factory(seed=s.seed) if takes_seed else factory()
        except Exception as exc:
            raise RecsysError(f"recommender {name!r}: its factory raised {type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0]}") from exc

    return Entry(name, "plug-in", build, (inspect.getdoc(factory) or "").split("\n")[0], source=source,
                 attention=bool(getattr(factory, "attention", False)))


def _parameters(fn) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _installed() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def resolve(name: str) -> Entry:
    """The `Entry` a name stands for; RecsysError of one line when nothing answers to it (a plug-in module that
    does not import, a missing factory, an unknown name)."""
    if name in BUILTINS:
        return BUILTINS[name]
    if name.startswith(("http://", "https://")):
        from recsys.service import ServiceRecommender

        return Entry(name, "service", lambda s: ServiceRecommender(name, **s.services.get(name, {})),
                     "a recommender behind HTTP", source="service")
    installed = _installed()
    if name in installed:
        try:
            factory = installed[name].load()
        except Exception as exc:
            raise RecsysError(f"recommender {name!r}: its entry point does not load: {type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0]}") from None
        return _factory_entry(name, factory, "entry point")
    module, sep, attr = name.partition(":")
    if not sep:
        raise RecsysError(f"unknown recommender {name!r}: use a built-in ({', '.join(BUILTINS)}), an installed "
                          f"plug-in, 'package.module:factory' or 'http://HOST:PORT'")
    if not re.fullmatch(r"[A-Za-z_][\w.]*", module) or not re.fullmatch(r"[A-Za-z_][\w.]*", attr):
        raise RecsysError(f"recommender {name!r}: a plug-in is 'package.module:factory'")
    try:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.append(str(Path.cwd()))  # a plug-in in the working folder imports as it would with `python -m`
        mod = importlib.import_module(module)
    except Exception as exc:
        raise RecsysError(f"recommender {name!r}: module {module!r} does not import: {type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0]}") from None
    factory = mod
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise RecsysError(f"recommender {name!r}: module {module!r} has no {attr!r}")
        factory = getattr(factory, part)
    return _factory_entry(name, factory, "plug-in")


def build(name: str, settings: Settings) -> Recommender:
    """An untrained recommender for ``name``, behind `Recommender` (`recsys.contract.as_recommender`)."""
    return as_recommender(resolve(name).build(settings), name)


def file_stem(name: str) -> str:
    """A file name for recommender or variant ``name`` (plug-in paths and URLs hold ':' and '/'): the name itself
    when it is safe, else a readable part and a hash of the whole."""
    stem = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_.")
    if stem == name:
        return name
    import hashlib

    return f"{stem[:40]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def model_file(folder: Path, name: str) -> Path:
    """Where a campaign keeps fitted model ``name`` under ``folder``: MF and AMP-CF as torch state ('.pt', which a
    fold-in worker process loads), any other as a pickle ('.pkl')."""
    entry = BUILTINS.get(name)
    return folder / f"{file_stem(name)}.{'pt' if entry is not None and entry.torch else 'pkl'}"


def save_model(model: Recommender, folder: Path, name: str, write) -> Path:
    """Save fitted ``model`` at `model_file` with ``write(path, data)`` (a whole-file writer)."""
    path = model_file(folder, name)
    write(path, model.save if path.suffix == ".pt" else pickle.dumps(model))
    return path


def load_model(folder: Path, name: str) -> Recommender:
    """The model `save_model` wrote for ``name`` under ``folder``."""
    path = model_file(folder, name)
    if path.suffix == ".pt":
        from recsys.factorised import MF

        return MF.load(path)  # restores MF or AMP-CF
    with open(path, "rb") as f:
        return pickle.load(f)


def train(name: str, settings: Settings, matrix, *, catalog: Catalog | None = None, start=None,
          show_progress: bool = False) -> Recommender:
    """Recommender ``name`` built with ``settings`` and fitted on CSR positives ``matrix`` [n_users, n_items].
    ``catalog``: the items' own ids and categories, handed to a model that asks (``set_catalog``). ``start``: the trained MF that an entry with ``starts_from_mf`` starts from (else it
    trains its own)."""
    entry = resolve(name)
    model = as_recommender(entry.build(settings), name)
    give_catalog(model, catalog)
    if entry.starts_from_mf:
        return model.fit(matrix, show_progress, start=start)
    return model.fit(matrix, show_progress=show_progress)
