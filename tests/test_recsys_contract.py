"""The recommender contract (recsys/contract.py) and the registry (recsys/registry.py): every built-in keeps it,
a plug-in joins by name, and a plug-in that breaks it is refused in one line naming the method."""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recsys.contract import Catalog, ContractError, as_recommender, capabilities, check_contract
from recsys.models import RecsysError
from recsys.offline import DEFAULT_TRAIN
from recsys.registry import BUILTINS, Settings, build, file_stem, load_model, model_file, resolve, save_model, train
from tests.recsys_fixtures import planted

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "examples.plugins.genre_pop:make_ranker"
SMALL = Settings(replace(DEFAULT_TRAIN, dim=8, epochs=2, seed=1), mixture_k=2, seed=1)


@pytest.fixture(scope="module")
def world():
    train, _, item_cluster, _ = planted(n_users=120, seed=2)
    catalog = Catalog([f"i{j}" for j in range(train.shape[1])], [[f"g{c}"] for c in item_cluster])
    return train, catalog


@pytest.mark.parametrize("name", [*BUILTINS, PLUGIN])
def test_every_builtin_and_the_example_plugin_keep_the_contract(world, name):
    train, catalog = world
    report = check_contract(build(name, SMALL), train, name, catalog)
    assert report["checks"][:4] == ["fit", "score_all", "recommend excludes seen", "fold_in + score_params, seeded"]
    assert report["checks"][-1] == "pickle round trip"
    assert ("attention" in report["capabilities"]) == resolve(name).attention


def test_capabilities_say_what_a_model_offers(world):
    matrix = world[0]
    assert capabilities(train("mf", SMALL, matrix)) == {"item_embeddings"}
    assert capabilities(train("ampcf", SMALL, matrix)) == {"item_embeddings", "attention"}
    assert capabilities(train("pop", SMALL, matrix)) == frozenset()


def test_the_example_plugin_ranks_by_the_categories_it_is_given(world):
    """With the catalog it recommends from the liked category; without one it is plain popularity."""
    matrix, catalog = world
    with_cat = train(PLUGIN, SMALL, matrix, catalog=catalog)
    liked = np.flatnonzero([c == ["g1"] for c in catalog.categories])[:3]
    top = np.argsort(-with_cat.score_params(with_cat.fold_in(liked)))[:10]
    assert {tuple(catalog.categories[i]) for i in top} == {("g1",)}
    plain = train(PLUGIN, SMALL, matrix)
    np.testing.assert_array_equal(np.argsort(-plain.score_params(plain.fold_in(liked)), kind="stable")[:10],
                                  np.argsort(-np.asarray(matrix.sum(0)).ravel(), kind="stable")[:10])


class _Good:
    def fit(self, train):
        self.n = train.shape[1]
        return self

    def score_all(self, users):
        return np.tile(np.arange(self.n, dtype=float), (len(users), 1))

    def fold_in(self, liked, steps=60, seed=0):
        return np.asarray(liked)

    def score_params(self, params):
        return np.arange(self.n, dtype=float)


class _NoFoldIn(_Good):
    fold_in = None


class _WrongShape(_Good):
    def score_all(self, users):
        return np.zeros((len(users), self.n + 1))


class _NaN(_Good):
    def score_params(self, params):
        return np.full(self.n, np.nan)


class _Unseeded(_Good):
    def fold_in(self, liked, steps=60, seed=0):
        return np.random.default_rng().random(self.n)

    def score_params(self, params):
        return params


class _Raises(_Good):
    def fit(self, train):
        raise KeyError("user 7")


class _Unpicklable(_Good):
    def fit(self, train):
        super().fit(train)
        self.hook = lambda: None
        return self


@pytest.mark.parametrize("cls, message", [
    (_NoFoldIn, "has no method fold_in()"),
    (_WrongShape, "score_all() returned shape (8, 121), expected (8, 120)"),
    (_NaN, "score_params() returned NaN scores"),
    (_Unseeded, "fold_in(): the same likes and seed gave different scores"),
    (_Raises, "fit() raised KeyError: 'user 7'"),
    (_Unpicklable, "a fitted model must pickle"),
])
def test_a_model_that_breaks_the_contract_is_named_by_method(world, cls, message):
    train, _ = world
    with pytest.raises(ContractError) as info:
        check_contract(cls(), train, "mine")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_plugged_model_is_a_recommender_like_any_built_in(world):
    train, _ = world
    model = as_recommender(_Good(), "good").fit(train)
    top, scores = model.recommend(np.array([0, 1]), 5)
    assert top.shape == (2, 5) and not np.intersect1d(top[0], train[0].indices).size
    with pytest.raises(RecsysError, match="unknown user index"):
        model.recommend(np.array([10_000]), 5)


def test_names_resolve_to_entries_and_never_parse_settings():
    assert resolve("ampcf").attention and resolve("ampcf-mf").starts_from_mf and not resolve("mf").attention
    assert build("ampcf", replace(SMALL, mixture_k=5)).k == 5  # K is a field of the settings
    assert resolve(PLUGIN).source == "plug-in" and resolve("http://127.0.0.1:9").source == "service"
    with pytest.raises(RecsysError, match="unknown recommender 'ampcf-k4'"):  # the bench's labels are not names
        resolve("ampcf-k4")
    assert file_stem("mf+dpp") == "mf+dpp"
    assert "/" not in file_stem("http://127.0.0.1:8000") and file_stem("a:b") != file_stem("a/b")


def test_an_entry_point_plugin_resolves_by_its_name(tmp_path, monkeypatch):
    """An installed package registers its factory under `personasim.recommenders` (read from its dist-info)."""
    dist = tmp_path / "mine-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mine\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[personasim.recommenders]\ngenre-pop = {PLUGIN}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = resolve("genre-pop")
    assert entry.source == "entry point" and entry.help.startswith("Popularity within")


@pytest.mark.parametrize("name", ["mf", PLUGIN, "pop"])
def test_a_saved_model_loads_and_scores_the_same(world, tmp_path, name):
    from personas.infra.files import write_whole

    trained = train(name, SMALL, world[0], catalog=world[1])
    path = save_model(trained, tmp_path, name, write_whole)
    assert path == model_file(tmp_path, name) and path.suffix == (".pt" if name == "mf" else ".pkl")
    users = np.arange(5)
    np.testing.assert_allclose(load_model(tmp_path, name).score_all(users), trained.score_all(users))
    assert pickle.loads(pickle.dumps(trained)).n_items == trained.n_items


def _check_cli(target: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evals.cli", "recsys", "check", target], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_recsys_check_runs_the_suite_and_refuses_a_broken_plugin_in_one_line(tmp_path):
    good = _check_cli(PLUGIN, ROOT)
    assert good.returncode == 0, good.stderr[-2000:]
    assert "contract kept" in good.stdout and "ok  pickle round trip" in good.stdout and "NDCG@10" in good.stdout
    (tmp_path / "broken_plugin.py").write_text(
        "import numpy as np\n"
        "class M:\n"
        "    def fit(self, train): self.n = train.shape[1]\n"
        "    def score_all(self, users): return np.zeros((len(users), 3))\n"
        "    def fold_in(self, liked, steps=60, seed=0): return liked\n"
        "    def score_params(self, p): return np.zeros(self.n)\n"
        "def make(): return M()\n")
    bad = _check_cli("broken_plugin:make", tmp_path)  # a plug-in in the working folder imports from there
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [f"error: score_all() returned shape (8, 3), expected (8, 1682)"]
    missing = _check_cli("broken_plugin:nothing", tmp_path)
    assert missing.returncode == 2 and "module 'broken_plugin' has no 'nothing'" in missing.stderr
