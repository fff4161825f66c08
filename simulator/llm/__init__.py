"""One async LLM interface for all of personasim.

    client = create_client("embedded", cache_dir=".cache/llm")
    c = await client.generate(messages, temperature=0.7, max_tokens=128, seed=0, json_schema=SCHEMA)
    c.ok, c.parsed, c.text, c.tokens_out, client.usage
    p = await client.option_probs(messages, ["yes", "no"])   # p.ok, p.probs["yes"]
"""

from simulator.llm.backends.base import Backend
from simulator.llm.client import LLMClient
from simulator.llm.errors import LLMConfigError, PermanentError, TransientError, redact
from simulator.llm.registry import BACKENDS, create_backend, create_client
from simulator.llm.types import Completion, Message, OptionProbs, RawCompletion, TopLogprobs, Usage

__all__ = [
    "BACKENDS",
    "Backend",
    "Completion",
    "LLMClient",
    "LLMConfigError",
    "Message",
    "OptionProbs",
    "PermanentError",
    "RawCompletion",
    "TopLogprobs",
    "TransientError",
    "Usage",
    "create_backend",
    "create_client",
    "redact",
]
