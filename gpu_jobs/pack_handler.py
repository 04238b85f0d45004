"""SageMaker's `POST /invocations` for a pack, inside vLLM's own OpenAI server.

vLLM's server registers SageMaker's `/ping` and `/invocations` through AWS's
`model-hosting-container-standards`, which loads a customer script, `model.py` under
`SAGEMAKER_MODEL_PATH` (default `/opt/ml/model`, where SageMaker unpacks `model.tar.gz`); a function
named `custom_sagemaker_invocation_handler` there replaces `/invocations`. The artifact's `model.py`
(written by `gpu_jobs/build.py`) puts this package on the path and re-exports the handler below, so
the container is vLLM's own image and Stratus ships only this code, inside the model artifact.

The handler answers an `InferencePack` with a `PackResult`: it sends every request of the pack (every
choice of it) to the same server's OpenAI routes at once, over loopback, and vLLM's scheduler
batches them with whatever else is running. Each request is answered on its own: a request vLLM
refuses (400, 404) fails alone with a client-error code and is not billed; the others are answered.
Usage is vLLM's own token count. `/ping` stays vLLM's: it answers 503 once the engine is dead
(`EngineDeadError`), and the server then exits, so SageMaker replaces the instance; requests in
flight get 5xx answers, which fail them as `inference_failed` (retryable, unbilled).

The same handler serves the echo engine (`gpu_jobs/echo_server.py`), so fast tests exercise it too.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gpu_jobs.openai_requests import EngineAnswer, EngineCall, engine_calls, request_result
from stratus_core.contract import InferencePack, JobError, PackedRequest, PackResult, RequestResult

Post = Callable[[EngineCall], Awaitable[EngineAnswer]]
ENGINE_TIMEOUT_SECONDS = 3600.0  # SageMaker's async invocations may run up to an hour


async def answer_pack(pack: InferencePack, post: Post, template_has_tools: bool) -> PackResult:
    """Every request of `pack` sent at once; one result per request, in the pack's order."""

    async def answer(request: PackedRequest) -> RequestResult:
        try:
            calls = engine_calls(request, request.model, template_has_tools)
        except ValueError as unreadable:  # a history's tool-call arguments that are not JSON: this request alone
            error = JobError(code="invalid_request", message=f"the request cannot be rendered: {unreadable}")
            return RequestResult(job_id=request.job_id, tenant_id=request.tenant_id, error=error)
        return request_result(request, list(await asyncio.gather(*(post(call) for call in calls))))

    results = await asyncio.gather(*(answer(request) for request in pack.requests))
    return PackResult(pack_id=pack.pack_id, model=pack.model, results=list(results))


def loopback_post(client: httpx.AsyncClient) -> Post:
    async def post(call: EngineCall) -> EngineAnswer:
        try:
            answer = await client.post(call.path, json=call.body)
        except httpx.HTTPError as error:  # the engine is gone: a 503 for this request, never an exception
            return EngineAnswer(503, {"error": {"message": f"{type(error).__name__}: {error}"}})
        try:
            body = answer.json()
        except json.JSONDecodeError:
            body = {"error": {"message": answer.text[:1000]}}
        return EngineAnswer(answer.status_code, body if isinstance(body, dict) else {"error": {"message": str(body)}})

    return post


@cache
def template_has_tools(model_dir: str) -> bool:
    """Whether the model's chat template renders tool definitions itself (a `tools` variable)."""
    directory = Path(model_dir)
    template = directory / "chat_template.jinja"
    if template.exists():
        return "tools" in template.read_text(encoding="utf-8")
    config = directory / "tokenizer_config.json"
    if config.exists():
        return "tools" in str(json.loads(config.read_text(encoding="utf-8")).get("chat_template") or "")
    return False


def model_dir() -> str:
    return os.environ.get("SAGEMAKER_MODEL_PATH", "/opt/ml/model")


async def custom_sagemaker_invocation_handler(request: Request) -> Response:
    """`POST /invocations`: an `InferencePack` in, a `PackResult` out (400 for what is not a pack)."""
    try:
        pack = InferencePack.model_validate_json(await request.body())
    except ValidationError as invalid:
        errors: list[dict[str, Any]] = [
            {"loc": list(e["loc"]), "msg": e["msg"]} for e in invalid.errors(include_input=False)[:5]
        ]
        return JSONResponse({"error": "not an InferencePack (version 1 or 2)", "details": errors}, 400)
    _, port = request.scope.get("server") or ("127.0.0.1", 8080)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=ENGINE_TIMEOUT_SECONDS) as client:
        answer = await answer_pack(pack, loopback_post(client), template_has_tools(model_dir()))
    return Response(answer.model_dump_json(), media_type="application/json")
