"""recsys.service against real processes of the example service (examples/service/serve.py) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import inspect
import pickle

import numpy as np
import pytest

from recsys import Popularity, leave_last_out, load_movielens, slate
from recsys.contract import Catalog, ContractError, check_contract
from recsys.service import BACKOFF_MAX_S, BACKOFF_S, RETRIES, TIMEOUT_S, ServiceRecommender, read_answer
from tests.servers.process import ROOT, free_port, serve

SERVE = str(ROOT / "examples" / "service" / "serve.py")
FAULTS = ("duplicates", "unknown_ids", "slow")


@pytest.fixture(scope="module")
def ml100k():
    """(ML-100k's `Catalog`, leave-last-out train CSR): what the example service ranks over."""
    from personas.infra.assets import ml100k_dir

    ds = load_movielens(ml100k_dir())
    return Catalog.of(ds.items), leave_last_out(ds).train


@pytest.fixture(scope="module")
def services():
    """Base URL per mode: 'good' and each --faulty mode, one process each for the module."""
    with contextlib.ExitStack() as stack:
        urls = {}
        for mode in ("good", *FAULTS):
            port = free_port()
            args = [SERVE, "--port", str(port), *([] if mode == "good" else ["--faulty", mode])]
            urls[mode] = stack.enter_context(serve(args, port, ready_path="/health")).removesuffix("/v1")
        yield urls


def fitted(url, ml100k, **kwargs) -> ServiceRecommender:
    catalog, train = ml100k
    model = ServiceRecommender(url, **kwargs)
    model.set_catalog(catalog.item_ids, catalog.categories)
    return model.fit(train)


def test_retry_numbers_are_the_llm_clients():
    from simulator.llm.backends.openai_compat import OpenAIBackend
    from simulator.llm.client import LLMClient

    client = inspect.signature(LLMClient).parameters
    assert (RETRIES, BACKOFF_S, BACKOFF_MAX_S) == (client["max_retries"].default, client["backoff_s"].default,
                                                   client["backoff_max_s"].default)
    assert TIMEOUT_S == inspect.signature(OpenAIBackend).parameters["timeout_s"].default


def test_service_keeps_the_contract(services, ml100k):
    from recsys.models import TrainConfig
    from recsys.registry import Settings, train as train_named

    catalog, train = ml100k
    report = check_contract(ServiceRecommender(services["good"]), train, "service", catalog)
    assert "pickle round trip" in report["checks"]
    named = train_named(services["good"], Settings(TrainConfig()), train, catalog=catalog)  # as a campaign does
    assert isinstance(named, ServiceRecommender) and named.item_ids == catalog.item_ids


def test_ranking_equals_in_process_popularity(services, ml100k):
    catalog, train = ml100k
    model, pop = fitted(services["good"], ml100k), Popularity().fit(train)
    ptr = train.indptr
    likes = [np.array([], dtype=np.int64), np.array([49, 99, 180]),  # column 49 = MovieLens '50', Star Wars
             *(train.indices[ptr[u]:ptr[u + 1]] for u in range(5))]
    for liked in likes:
        ours = slate(model.score_params(model.fold_in(liked)), 10)
        counts = pop.score_params(pop.fold_in(liked))
        expected = np.argsort(-np.where(np.isin(np.arange(train.shape[1]), liked), -np.inf, counts), kind="stable")[:10]
        assert ours.tolist() == expected.tolist()  # the service breaks ties by column order, as a stable sort does
        inproc = slate(counts, 10, exclude=liked)  # a campaign's slate; ties at its edge may pick another item
        assert sorted(counts[ours]) == sorted(counts[inproc])
    users = np.arange(300)  # two requests of CHUNK_USERS
    ours, _ = model.recommend(users, 10)
    theirs, _ = pop.recommend(users, 10)
    assert all(sorted(pop.counts[a]) == sorted(pop.counts[b]) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("mode, says", [
    ("down", "is not reachable"),
    ("unknown_ids", "item id 'no-such-item'"),
    ("duplicates", "twice for user 0"),
    ("slow", "gave no answer within timeout_s=0.3 s after 2 attempts"),
])
def test_bad_service_raises_one_line_naming_the_url(services, ml100k, mode, says):
    url = f"http://127.0.0.1:{free_port()}" if mode == "down" else services[mode]
    with pytest.raises(ContractError) as err:
        model = fitted(url, ml100k, timeout_s=0.3, retries=1, backoff_s=0.01)
        model.score_params(model.fold_in([0, 1]))
    message = str(err.value)
    assert url in message and says in message and "\n" not in message, message


@pytest.mark.parametrize("body, says", [
    (b"<html>oops</html>", "malformed JSON"),
    (b'{"ranked": [["1"]]}', "without the field 'items'"),
    (b'{"items": [["1", "2", "3"]]}', "answered 3 items for user 0 of the request; it asked for k=2"),
    (b'{"items": [["1"], ["2"]]}', "answered 2 lists for 1 users"),
    (b'{"items": [[1]]}', "item id 1 for user 0"),
])
def test_answers_outside_the_schema(body, says):
    with pytest.raises(ContractError) as err:
        read_answer(body, 1, 2, {"1": 0, "2": 1, "3": 2}, "http://svc/recommend")
    assert says in str(err.value) and "http://svc/recommend" in str(err.value) and "\n" not in str(err.value)


def test_pickle_round_trip_holds_no_client_and_no_secret(services, ml100k, monkeypatch):
    monkeypatch.setenv("RECSVC_TOKEN", "s3cret-value-123")
    model = fitted(services["good"], ml100k, auth_env="RECSVC_TOKEN")
    before = model.score_params(model.fold_in([0, 1, 2]))
    assert model._http().headers["authorization"] == "Bearer s3cret-value-123"
    blob = pickle.dumps(model)
    assert b"s3cret" not in blob
    again = pickle.loads(blob)
    assert again._client is None
    np.testing.assert_array_equal(again.score_params(again.fold_in([0, 1, 2])), before)
    monkeypatch.delenv("RECSVC_TOKEN")
    with pytest.raises(ContractError, match="set RECSVC_TOKEN"):
        pickle.loads(blob).score_params(np.array([0]))


def test_catalog_must_match_the_training_columns(services, ml100k):
    catalog, train = ml100k
    model = ServiceRecommender(services["good"])
    model.set_catalog(catalog.item_ids[:-1])
    with pytest.raises(Exception, match="1681 item ids; the training matrix has 1682"):
        model.fit(train)
