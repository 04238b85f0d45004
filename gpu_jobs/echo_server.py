"""An instant engine for load tests of the serverless path: no model, the artifact's tokenizer.

It speaks the two OpenAI routes the pack handler calls (`/v1/chat/completions`, `/v1/completions`)
and answers each with the first `max_tokens` tokens of its prompt (the chat template applied), at
once, with usage counted by the same tokenizer vLLM would use, so that metering is exercised exactly
while the model costs nothing. `/invocations` is the same pack handler vLLM's server runs
(`gpu_jobs/pack_handler.py`), so a pack takes the same path as on the GPU. Selected with
`STRATUS_ENGINE=echo`; never the default.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpu_jobs.pack_handler import custom_sagemaker_invocation_handler


def create_app(model_dir: Path, served_model: str) -> Starlette:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def refuse(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "BadRequestError", "code": status}}, status)

    def echo(prompt: str, body: dict[str, Any]) -> tuple[str, str, dict[str, int]]:
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        echoed = ids[: int(body.get("max_tokens") or 16)]
        finish = "length" if len(ids) >= int(body.get("max_tokens") or 16) else "stop"
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(echoed)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return str(tokenizer.decode(echoed, skip_special_tokens=True)), finish, usage

    async def chat(request: Request) -> Response:
        body = await request.json()
        if body.get("model") != served_model:
            return refuse(f"The model `{body.get('model')}` does not exist.", 404)
        prompt = tokenizer.apply_chat_template(
            body["messages"], tools=body.get("tools"), tokenize=False, add_generation_prompt=True
        )
        text, finish, usage = echo(str(prompt), body)
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return JSONResponse(
            {"object": "chat.completion", "created": int(time.time()), "choices": [choice], "usage": usage}
        )

    async def completion(request: Request) -> Response:
        body = await request.json()
        if body.get("model") != served_model:
            return refuse(f"The model `{body.get('model')}` does not exist.", 404)
        text, finish, usage = echo(str(body["prompt"]), body)
        choice = {"index": 0, "text": text, "finish_reason": finish}
        return JSONResponse(
            {"object": "text_completion", "created": int(time.time()), "choices": [choice], "usage": usage}
        )

    async def ping(_: Request) -> Response:
        return JSONResponse({"status": "healthy", "model": served_model})

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET", "POST"]),
            Route("/invocations", custom_sagemaker_invocation_handler, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completion, methods=["POST"]),
        ]
    )
