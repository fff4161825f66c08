"""A recommender running as a service: `ServiceRecommender` keeps the contract (`recsys.contract`) by asking an
HTTP service for ranked item ids. The registry builds one for a name 'http://HOST:PORT' (`recsys.registry`).

Schema, version 1 (`docs/service.md` has examples; `examples/service/serve.py` is a service that keeps it):

- ``GET {url}/health`` -> HTTP 200 once the service can answer (any body). `fit` asks it once.
- ``POST {url}/recommend`` with ``{"users": [{"liked": [item id, ...]}, ...], "k": depth}``
  -> ``{"items": [[item id, ...], ...]}``: one list per user, in request order, best first, at most ``k`` ids,
  no id twice in one list, every id one of the catalog's. Item ids are JSON strings. A service should leave a
  user's ``liked`` items out (the campaign leaves them out of its slates in any case).

Item ids are the service's, not our column indices. A campaign calls ``set_catalog(item_ids, categories)``
before ``fit`` with the data set's own id of each item column (the optional contract method,
`recsys.contract.give_catalog`; the categories are not used here); the adapter translates both ways. Without
it, the ids are the column indices as strings ('0', '1', ...).

The service trains itself: in this version `fit` sends it none of our training data. It only remembers the
train matrix (a known user's ``liked`` is their training positives) and checks the service is up.

Scores: an item at rank r (0 = best) of a user's list scores ``depth - r``; an item the service did not list
scores -inf, so `recsys.slate` takes the top k of the listed items after leaving out those already shown.
``depth`` must exceed the items a session is shown plus a slate (a campaign's 3 slates of 5: 20 << 100).

Requests: ``score_all`` sends known users' training positives in chunks of `CHUNK_USERS` a request;
``fold_in`` returns the liked item indices (a new user is their history) and ``score_params`` sends one user.
Connect errors, timeouts, 429 and 5xx answers are retried with the LLM client's numbers (`TIMEOUT_S`,
`RETRIES`, exponential backoff from `BACKOFF_S` capped at `BACKOFF_MAX_S`, jitter in [0.5, 1.5), at least a
Retry-After given in seconds); any other failure is not. Every failure is a `ServiceError` (a `ContractError`)
of one line naming the URL: not reachable, too slow, an HTTP error, malformed JSON or a missing field, an item
id outside the catalog, an id twice in one list, a list longer than asked, not one list per user.

Auth: ``auth_env`` names an environment variable whose value is sent as ``Authorization: Bearer VALUE``. The value
is read when the HTTP client is made, never stored in the model's state (a pickle holds no secret) and never
written to a message or a log.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time

import httpx
import numpy as np

from recsys.contract import ContractError
from recsys.models import Recommender, RecsysError

log = logging.getLogger(__name__)

# The LLM client's numbers (simulator.llm: OpenAIBackend's timeout_s, LLMClient's max_retries, backoff_s and
# backoff_max_s), written out because recsys imports nothing else of personasim; a test keeps them equal.
TIMEOUT_S = 60.0
RETRIES = 4
BACKOFF_S = 0.5
BACKOFF_MAX_S = 30.0
#: users a /recommend request, for `score_all`
CHUNK_USERS = 256


class ServiceError(ContractError):
    """A recommender service that is down, too slow, or answers outside the schema; one line naming the URL."""


class ServiceRecommender(Recommender):
    """A model behind HTTP (see the module docstring for the schema).

    Args:
        url: the service's base URL, 'http://HOST:PORT' (a path prefix is kept).
        timeout_s: seconds to wait for each connect, write and read of a request.
        retries: retries after the first attempt of a transient failure.
        depth: ``k`` of every /recommend request: how many ranked items a user gets scores for.
        backoff_s: first backoff delay; doubles each retry, capped at `BACKOFF_MAX_S`.
        auth_env: name of an environment variable holding a bearer token, or None for no auth header.
    """

    name = "service"

    def __init__(self, url: str, timeout_s: float = TIMEOUT_S, retries: int = RETRIES, depth: int = 100, *,
                 backoff_s: float = BACKOFF_S, auth_env: str | None = None):
        if not url.startswith(("http://", "https://")):
            raise RecsysError(f"recommender service {url!r}: the URL must start with http:// or https://")
        if timeout_s <= 0 or retries < 0 or depth < 1 or backoff_s < 0:
            raise RecsysError(f"recommender service {url}: need timeout_s > 0, retries >= 0, depth >= 1 and "
                              f"backoff_s >= 0, got {timeout_s}, {retries}, {depth}, {backoff_s}")
        self.url = url.rstrip("/")
        self.timeout_s, self.retries, self.depth, self.backoff_s = float(timeout_s), int(retries), int(depth), backoff_s
        self.auth_env = auth_env
        self.item_ids: list[str] | None = None
        self._index: dict[str, int] = {}
        self._client: httpx.Client | None = None
        self._jitter = random.Random()

    # --- the contract
    def set_catalog(self, item_ids, categories=None) -> None:
        """The service's id of each item column [N] (str); call before `fit`. ``categories`` (the contract hands
        each item's genres) are not used: the service knows its own items."""
        ids = [str(i) for i in item_ids]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise RecsysError(f"recommender service {self.url}: set_catalog got item id {dup!r} twice")
        if hasattr(self, "n_items") and len(ids) != self.n_items:
            raise RecsysError(f"recommender service {self.url}: set_catalog got {len(ids)} item ids; the model was "
                              f"fitted on {self.n_items} item columns")
        self.item_ids, self._index = ids, {i: n for n, i in enumerate(ids)}

    def fit(self, train, show_progress: bool = False) -> "ServiceRecommender":
        """Remember ``train`` (CSR [n_users, N]) and check the service answers /health; nothing is sent to it."""
        t0 = time.perf_counter()
        self._remember(train)
        if self.item_ids is None:
            self.set_catalog(range(self.n_items))
        elif len(self.item_ids) != self.n_items:
            raise RecsysError(f"recommender service {self.url}: set_catalog gave {len(self.item_ids)} item ids; the "
                              f"training matrix has {self.n_items} item columns")
        self.ping()
        self.train_s = time.perf_counter() - t0
        return self

    def ping(self) -> None:
        """ServiceError of one line unless the service answers GET /health (a campaign asks before any work)."""
        self._send("GET", "/health")

    def score_all(self, users) -> np.ndarray:
        """Scores [B, N] for known user indices [B], their training positives as ``liked``."""
        self._fitted()
        users = self._check_users(users)
        ptr, idx = self._train.indptr, self._train.indices
        return self._scores(self._rank([idx[ptr[u]:ptr[u + 1]] for u in users]))

    def fold_in(self, liked, steps: int = 60, seed: int = 0) -> np.ndarray:
        """The liked item indices [L] themselves: a new user is their history (``steps`` and ``seed`` unused)."""
        self._fitted()
        liked = np.asarray(liked, dtype=np.int64).ravel()
        self._check_items(liked)
        return liked.copy()

    def score_params(self, params) -> np.ndarray:
        """Scores [N] for a folded-in user (their liked item indices): one request."""
        self._fitted()
        liked = np.asarray(params, dtype=np.int64).ravel()
        self._check_items(liked)
        return self._scores(self._rank([liked]))[0]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_client"] = None  # sockets do not pickle; remade on the next request
        return state

    # --- requests
    def _rank(self, liked: list[np.ndarray]) -> list[np.ndarray]:
        """Ranked item indices, one array per user, from /recommend in chunks of `CHUNK_USERS`."""
        out: list[np.ndarray] = []
        for start in range(0, len(liked), CHUNK_USERS):
            chunk = liked[start:start + CHUNK_USERS]
            body = {"users": [{"liked": [self.item_ids[i] for i in row]} for row in chunk], "k": self.depth}
            resp = self._send("POST", "/recommend", body)
            out += read_answer(resp.content, len(chunk), self.depth, self._index, f"{self.url}/recommend")
        return out

    def _scores(self, ranked: list[np.ndarray]) -> np.ndarray:
        scores = np.full((len(ranked), self.n_items), -np.inf, dtype=np.float32)
        for row, items in zip(scores, ranked):
            row[items] = self.depth - np.arange(len(items), dtype=np.float32)
        return scores

    def _send(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        """One request, retrying transient failures; ServiceError when it fails for good."""
        where = f"{self.url}{path}"
        attempt = 0
        while True:
            attempt += 1
            hint, wait = "", 0.0
            try:
                resp = self._http().request(method, where, json=body)
                if resp.status_code == 200:
                    return resp
                problem = f"answered HTTP {resp.status_code}: {_first_line(resp.text)}"
                if resp.status_code != 429 and resp.status_code < 500:
                    raise ServiceError(self._redact(f"recommender service {where} {problem}"))
                wait = _seconds(resp.headers.get("retry-after"))
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problem = f"is not reachable ({type(exc).__name__}: {_first_line(str(exc))})"
                hint = "; is the service running?"
            except httpx.TimeoutException:
                problem = f"gave no answer within timeout_s={self.timeout_s:g} s"
            except httpx.TransportError as exc:  # connection reset, closed mid-answer
                problem = f"dropped the connection ({type(exc).__name__}: {_first_line(str(exc))})"
            if attempt > self.retries:
                raise ServiceError(self._redact(f"recommender service {where} {problem} after {attempt} "
                                                f"attempts{hint}"))
            delay = min(BACKOFF_MAX_S, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + self._jitter.random())
            delay = max(delay, wait)  # a Retry-After, as the LLM client honours it
            log.info("recommender service %s %s; retry %d in %.2fs", where, self._redact(problem), attempt, delay)
            time.sleep(delay)

    def _http(self) -> httpx.Client:
        if self._client is None:
            headers = {}
            if self.auth_env:
                token = os.environ.get(self.auth_env)
                if not token:
                    raise ServiceError(f"recommender service {self.url}: set {self.auth_env} (its auth token)")
                headers["Authorization"] = f"Bearer {token}"
            self._client = httpx.Client(timeout=self.timeout_s, headers=headers)
        return self._client

    def _redact(self, text: str) -> str:
        token = os.environ.get(self.auth_env) if self.auth_env else None
        return text.replace(token, "***") if token else text

    def _fitted(self) -> None:
        if not hasattr(self, "_train"):
            raise RecsysError(f"recommender service {self.url}: call fit() first")


def read_answer(content: bytes, n_users: int, k: int, index: dict[str, int], where: str) -> list[np.ndarray]:
    """The item indices of a /recommend answer, one array per user (best first); ServiceError of one line naming
    ``where`` when it breaks the schema: not JSON, no 'items' list of ``n_users`` lists, an id that is not a string
    of ``index``, an id twice in a list, a list longer than ``k``."""
    try:
        answer = json.loads(content)
    except ValueError as exc:
        raise ServiceError(f"recommender service {where} answered malformed JSON ({_first_line(str(exc))}): "
                           f"{_first_line(content.decode('utf-8', 'replace'))}") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
        got = sorted(answer)[:5] if isinstance(answer, dict) else type(answer).__name__
        raise ServiceError(f"recommender service {where} answered without the field 'items' (a list of lists); "
                           f"got {got}")
    lists = answer["items"]
    if len(lists) != n_users:
        raise ServiceError(f"recommender service {where} answered {len(lists)} lists for {n_users} users")
    out = []
    for u, ids in enumerate(lists):
        if not isinstance(ids, list):
            raise ServiceError(f"recommender service {where} answered {type(ids).__name__} for user {u} of the "
                               "request, expected a list of item ids")
        if len(ids) > k:
            raise ServiceError(f"recommender service {where} answered {len(ids)} items for user {u} of the request; "
                               f"it asked for k={k}")
        rows = []
        for i in ids:
            if not isinstance(i, str) or i not in index:
                raise ServiceError(f"recommender service {where} answered item id {_short(i)} for user {u} of the "
                                   f"request, not in the catalog ({len(index)} items; ids are strings)")
            rows.append(index[i])
        if len(set(rows)) != len(rows):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ServiceError(f"recommender service {where} answered item id {dup!r} twice for user {u} of the "
                               "request")
        out.append(np.asarray(rows, dtype=np.int64))
    return out


def _first_line(text: str, limit: int = 160) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit] + "..."


def _seconds(header: str | None) -> float:
    """A Retry-After header's delay in seconds (0 when absent or an HTTP date, which we do not wait for)."""
    try:
        return min(BACKOFF_MAX_S, max(0.0, float(header))) if header else 0.0
    except ValueError:
        return 0.0


def _short(value) -> str:
    return _first_line(repr(value), 60)
