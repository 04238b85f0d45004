"""SageMaker's bring-your-own-container contract: `GET /ping` and `POST /invocations` on 8080.

`/ping` answers 200 only once the model is loaded (503 before). `/invocations` takes an
`InferencePack` and answers a `PackResult`: per request the generated choice and the usage counted
by the model's own tokenizer, or an error that fails that request alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpu_jobs.batcher import ContinuousBatcher
from gpu_jobs.engine.base import GenerationEngine
from gpu_jobs.options import generation_requests, request_result
from stratus_core.contract import InferencePack, PackResult

logger = logging.getLogger(__name__)


class ModelHolder:
    """Loads the engine in the background so that `/ping` can answer while it does."""

    def __init__(self, load: Callable[[], tuple[GenerationEngine, ContinuousBatcher]]) -> None:
        self._load = load
        self.engine: GenerationEngine | None = None
        self.batcher: ContinuousBatcher | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.engine is not None

    def _run(self) -> None:
        try:
            self.engine, self.batcher = self._load()
            logger.info("model loaded", extra={"model": self.engine.model_name})
        except Exception as error:  # kept and reported by /ping; the process stays up for logs
            logger.exception("model failed to load")
            self.error = f"{type(error).__name__}: {error}"


def create_app(holder: ModelHolder, max_concurrent_invocations: int = 4) -> Starlette:
    limiter = asyncio.Semaphore(max_concurrent_invocations)

    async def ping(_: Request) -> Response:
        if holder.engine is not None:
            return JSONResponse({"status": "healthy", "model": holder.engine.model_name})
        return JSONResponse({"status": "failed" if holder.error else "loading", "error": holder.error}, 503)

    async def invocations(request: Request) -> Response:
        engine, batcher = holder.engine, holder.batcher
        if engine is None or batcher is None:
            return JSONResponse({"error": "the model is not loaded yet"}, 503)
        try:
            pack = InferencePack.model_validate_json(await request.body())
        except ValidationError as invalid:
            errors: list[dict[str, Any]] = [
                {"loc": list(e["loc"]), "msg": e["msg"]} for e in invalid.errors(include_input=False)[:5]
            ]
            return JSONResponse({"error": "not an InferencePack (version 1 or 2)", "details": errors}, 400)
        async with limiter:
            rows = [generation_requests(engine, r) for r in pack.requests]
            futures = [[asyncio.wrap_future(batcher.submit(row)) for row in choices] for choices in rows]
            generated = [await asyncio.gather(*choices) for choices in futures]
        results = [request_result(engine, r, list(g)) for r, g in zip(pack.requests, generated, strict=True)]
        answer = PackResult(pack_id=pack.pack_id, model=pack.model, results=results)
        return Response(answer.model_dump_json(), media_type="application/json")

    return Starlette(routes=[Route("/ping", ping), Route("/invocations", invocations, methods=["POST"])])
