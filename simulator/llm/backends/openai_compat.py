"""`openai`: any OpenAI-compatible chat server (OpenAI, vLLM, Ollama, llama.cpp, TGI).

The key comes from an environment variable (default OPENAI_API_KEY) and is
never logged or put in an error. The `openai` SDK's own retries are off:
LLMClient retries every backend the same way.
"""

from __future__ import annotations

import os
from typing import Literal

from simulator.llm.backends.base import Backend, merge_tokens
from simulator.llm.errors import LLMConfigError, PermanentError, TransientError
from simulator.llm.types import Message, RawCompletion, TopLogprobs

#: How a JSON schema is sent. `json_schema`: OpenAI structured outputs (vLLM, OpenAI);
#: `json_object`: {"type": "json_object", "schema": ...} (llama.cpp server);
#: `prompt`: schema only in the prompt, validation and repair do the rest.
JsonMode = Literal["json_schema", "json_object", "prompt"]


def _retry_after(response) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        json_mode: JsonMode = "json_schema",
    ):
        try:
            import openai
        except ImportError:
            raise LLMConfigError("backend 'openai' needs the openai package: pip install openai") from None
        if not model:
            raise LLMConfigError("backend 'openai' needs a model name (--model NAME)")
        key = os.environ.get(api_key_env)
        if not key:
            if base_url is None:
                raise LLMConfigError(
                    f"backend 'openai' with the default OpenAI endpoint needs an API key: set {api_key_env}"
                )
            key = "not-needed"  # local servers (llama.cpp, vLLM, Ollama) accept any key
        self._key = key
        self.api_key_env = api_key_env
        self.model = model
        self.base_url = base_url
        self.json_mode = json_mode
        self._openai = openai
        from openai.types.chat import ChatCompletion

        self._completion_type = ChatCompletion
        self._client = openai.AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout_s, max_retries=0)

    def secrets(self) -> tuple[str, ...]:
        return (self._key,)

    def _response_format(self, schema: dict | None) -> dict | None:
        if schema is None or self.json_mode == "prompt":
            return None
        if self.json_mode == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}

    async def complete(self, messages: list[Message], *, temperature, max_tokens, seed, json_schema) -> RawCompletion:
        messages = list(messages)
        if json_schema is not None and self.json_mode == "prompt":
            import json

            messages = [*messages, {"role": "system", "content": f"Answer with JSON matching: {json.dumps(json_schema)}"}]
        kwargs = {}
        if (fmt := self._response_format(json_schema)) is not None:
            kwargs["response_format"] = fmt
        out = await self._create(messages=messages, temperature=temperature, max_tokens=max_tokens, seed=seed, **kwargs)
        choice = out.choices[0]
        usage = out.usage
        return RawCompletion(
            text=choice.message.content or "",
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason,
        )

    async def first_token_logprobs(self, messages: list[Message], *, seed: int, top_logprobs: int) -> TopLogprobs:
        """One token at temperature 0 with ``logprobs=True, top_logprobs=k`` (OpenAI allows k <= 20)."""
        out = await self._create(
            messages=list(messages), temperature=0.0, max_tokens=1, seed=seed, logprobs=True, top_logprobs=top_logprobs
        )
        logprobs = out.choices[0].logprobs
        first = logprobs.content[0] if logprobs is not None and logprobs.content else None
        if first is None or not first.top_logprobs:
            raise PermanentError(
                f"{self._where}: model {self.model!r} returned no top_logprobs for the first token; "
                "this server or model does not support log-probabilities"
            )
        tokens_in = out.usage.prompt_tokens if out.usage else 0
        return merge_tokens(((t.token, t.logprob) for t in first.top_logprobs), tokens_in=tokens_in)

    @property
    def _where(self) -> str:
        return self.base_url or "api.openai.com"

    async def _create(self, **kwargs):
        """A chat completion with errors classified: TransientError or PermanentError.

        Sent with the SDK's documented raw `post` ("undocumented requests"), typed as a ChatCompletion:
        `chat.completions.create` first walks every message through the request TypedDicts, which was
        an eighth of a campaign's event-loop CPU against a fast server. Retries, auth, timeouts and
        error types are the SDK's either way."""
        oa = self._openai
        where = self._where
        try:
            out = await self._client.post("/chat/completions", body={"model": self.model, **kwargs},
                                          cast_to=self._completion_type)
        except oa.RateLimitError as exc:
            raise TransientError(f"{where}: rate limited (429)", retry_after=_retry_after(exc.response)) from None
        except oa.AuthenticationError:
            raise PermanentError(f"{where} rejected the API key (401): set {self.api_key_env}") from None
        except oa.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise TransientError(
                    f"{where}: server error {exc.status_code}", retry_after=_retry_after(exc.response)
                ) from None
            raise PermanentError(f"{where}: request refused ({exc.status_code}): {exc.message[:200]}") from None
        except oa.APITimeoutError:
            raise TransientError(f"{where}: timed out") from None
        except oa.APIConnectionError:
            raise TransientError(f"{where}: cannot connect (is the server running?)") from None
        except (oa.APIResponseValidationError, ValueError) as exc:  # garbled or truncated body
            raise TransientError(f"{where}: unreadable response ({type(exc).__name__})") from None
        if isinstance(out, str) or not getattr(out, "choices", None):
            raise TransientError(f"{where}: response without choices")
        return out

    async def aclose(self) -> None:
        await self._client.close()
