"""simulator/: layered LLM simulated users, sessions with a recommender, consistency scoring.

Public names live here; ``simulator.llm`` is the LLM interface.
"""

from simulator.catalog import Feedback, Item, PopularityRecommender, RecommenderProtocol, sample_pool
from simulator.consistency import rescore, reward_of, score_line, summarize
from simulator.judges import ConsistencyJudge, LLMJudge, StructuredJudge, Verdict, make_judge
from simulator.layers import CONTEXT, TRAIT_JITTER, UserProfile, derive_seed, sample_users
from simulator.preferences import preference_row, write_preferences
from simulator.session import SessionSettings, run_session
from simulator.turn import Onboarding, PreferencePair, QARecord, Transcript, Turn, turn_schema
from simulator.user import NaiveUser, SimulatedUser
from simulator.variants import USER_VARIANTS, make_user

__all__ = [
    "CONTEXT", "TRAIT_JITTER", "USER_VARIANTS", "ConsistencyJudge", "Feedback", "Item", "LLMJudge", "NaiveUser",
    "Onboarding", "PopularityRecommender", "PreferencePair", "QARecord", "RecommenderProtocol", "SessionSettings",
    "SimulatedUser", "StructuredJudge", "Transcript", "Turn", "UserProfile", "Verdict", "derive_seed", "make_judge",
    "make_user", "preference_row", "rescore", "reward_of", "run_session", "sample_pool", "sample_users", "score_line",
    "summarize", "turn_schema", "write_preferences",
]
