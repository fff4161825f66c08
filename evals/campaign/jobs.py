"""What a campaign executes and what executes it: the job, the world a job runs in, the executors.

A leaf module: the runner (which schedules jobs), the Ray task (which runs one in a worker) and the
campaign world (which plays one) all import these types from here, so imports go one way:
``campaign -> runner -> ray_tasks -> world -> jobs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from simulator.layers import derive_seed  # one seed derivation for sessions and the turns inside them

if TYPE_CHECKING:
    from evals.campaign.events import TurnEvent

#: Where sessions run: on this process's event loop, or as Ray tasks.
ExecutorName = Literal["local", "ray"]


@dataclass(frozen=True)
class Job:
    """One session: a recommender variant meets one simulated user in one run."""

    variant: str
    user_variant: str
    user_index: int
    run: int
    seed: int

    @property
    def session_key(self) -> tuple[str, str, int, int]:
        return (self.variant, self.user_variant, self.user_index, self.run)


#: Receives each finished turn (the runner's Recorder, or a list's append in a Ray worker).
TurnSink = Callable[["TurnEvent"], None]


class World(Protocol):
    """Everything a session needs (users, recommenders, LLM), built once per process."""

    async def run_job(self, job: Job, on_turn: TurnSink) -> None: ...


class WorldArgs(NamedTuple):
    """What a process needs to build its World: the campaign config (JSON) and the campaign folder.
    Hashable and picklable, so a Ray worker keeps one World per campaign."""

    config_json: str
    out: str


def plan_jobs(campaign_seed: int, variants: Iterable[str], user_variants: Iterable[str],
              n_users: int | Mapping[str, int], runs: int) -> list[Job]:
    """Every (user variant, user, run, recommender variant); ``n_users``: users of every user variant, or
    {user variant: users}. The seed leaves the variant out, so every variant meets the same users with the
    same random numbers (paired A/B); it leaves the number of users out too, so user i's sessions do not
    change when more users are added."""
    return [
        Job(v, uv, u, r, derive_seed(campaign_seed, "session", uv, u, r))
        for uv in user_variants
        for u in range(n_users[uv] if isinstance(n_users, Mapping) else n_users)
        for r in range(runs)
        for v in variants
    ]


def user_id_for(index: int) -> str:
    return f"user-{index:04d}"


def user_index(user_id: str) -> int:
    return int(user_id.rsplit("-", 1)[1])
