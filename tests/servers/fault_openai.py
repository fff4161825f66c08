"""A small OpenAI-compatible chat server that injects faults, for tests and benchmarks.

    python -m tests.servers.fault_openai --port 8123 --fault-rate 0.3 --delay 0.05

Each request's fault is a pure function of (seed, request text, attempt number
for that text), so a run is reproducible whatever the arrival order. Faults:
429 with Retry-After, 500, a hang past the client's timeout, a truncated JSON
body, a non-JSON body. A healthy answer echoes the last user message as JSON
({"echo": ...}), so a test can check each answer went to its own request;
with --answer-schema, a request with a JSON schema gets a valid instance
drawn from a hash of the request instead (campaign benchmarks need answers a simulator accepts).
GET /stats tells how many healthy answers each text received.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import time
from collections import Counter

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

FAULTS = ("429", "500", "hang", "truncated", "nonjson")


def schema_instance(schema: dict, rng: random.Random):
    """A valid value for the simple JSON schemas personasim sends, drawn with ``rng``."""
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: schema_instance(props[k], rng) for k in schema.get("required", props)}
    if kind == "array":
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", 2)
        return [schema_instance(schema.get("items", {}), rng) for _ in range(rng.randint(max(lo, 1), max(lo, 1, hi)))]
    if kind == "string":
        return rng.choice(["Sounds good", "Not for me", "Maybe later", "I love this one"])
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return None


def build_app(
    *, fault_rate: float, delay_s: float, hang_s: float, seed: int, api_key: str | None = None,
    answer_schema: bool = False,
    faults: tuple[str, ...] = FAULTS,
) -> FastAPI:
    app = FastAPI()
    attempts: Counter[str] = Counter()
    served: Counter[str] = Counter()
    injected: Counter[str] = Counter()

    def pick_fault(text: str, attempt: int) -> str | None:
        h = hashlib.sha256(f"{seed}|{text}|{attempt}".encode()).digest()
        if int.from_bytes(h[:4], "big") / 2**32 >= fault_rate:
            return None
        return faults[h[4] % len(faults)]

    @app.get("/stats")
    async def stats():
        return {"attempts": dict(attempts), "served": dict(served), "injected": dict(injected)}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fault-echo", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        body = await request.json()
        text = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        attempts[text] += 1
        fault = pick_fault(text, attempts[text])
        if delay_s:
            await asyncio.sleep(delay_s)
        if fault is not None:
            injected[fault] += 1
        if fault == "429":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0.05"})
        if fault == "500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if fault == "hang":
            await asyncio.sleep(hang_s)
            return JSONResponse({"error": {"message": "late"}}, status_code=504)
        fmt = body.get("response_format") or {}
        schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema")
        if answer_schema and schema:  # varied but a pure function of the request (seed included)
            rng = random.Random(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest())
            content = json.dumps(schema_instance(schema, rng))
        else:
            content = json.dumps({"echo": text})
        payload = {
            "id": f"chatcmpl-{attempts[text]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fault-echo"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(text.split()), "completion_tokens": 3, "total_tokens": len(text.split()) + 3},
        }
        if fault == "truncated":
            raw = json.dumps(payload)
            return Response(raw[: len(raw) // 2], media_type="application/json")
        if fault == "nonjson":
            return PlainTextResponse("<html>502 Bad Gateway</html>", status_code=200)
        served[text] += 1
        return JSONResponse(payload)

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    p.add_argument("--hang", type=float, default=5.0, help="seconds a 'hang' fault waits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api-key-env", default=None, help="require the key held in this environment variable")
    p.add_argument("--answer-schema", action="store_true",
                   help="answer a request that carries a JSON schema with a minimal valid instance (not an echo)")
    a = p.parse_args()
    import os

    key = os.environ[a.api_key_env] if a.api_key_env else None
    app = build_app(fault_rate=a.fault_rate, delay_s=a.delay, hang_s=a.hang, seed=a.seed, api_key=key,
                    answer_schema=a.answer_schema)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
