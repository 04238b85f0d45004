"""A finished job's result, told in the form its client asked for: JSON, a stream, or a Response.

A job stores one OpenAI completion object (`chat.completion` or `text_completion`); how it is
presented is decided by the request that waits for it, so a retry with the same body gets the same
form. Streams are OpenAI's server-sent events, built whole once the job is done: on AWS, API
Gateway's HTTP APIs and Lambda buffer the response, so the chunks reach the client together when
the job completes (the usage in the final chunk is what is billed). A token-by-token stream would
need the model server itself to stream, which an asynchronous endpoint cannot do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def _event(data: Any, event: str | None = None) -> str:
    line = json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {line}\n\n"


def chat_stream(result: dict[str, Any], include_usage: bool) -> str:
    """`chat.completion.chunk`s, per choice: the role first, then the content (or the tool calls,
    each whole in one delta with its `index`), then the finish reason; with
    `stream_options.include_usage`, a last chunk with empty `choices` and the usage; then `[DONE]`."""
    head = {
        "id": result["id"],
        "object": "chat.completion.chunk",
        "created": result["created"],
        "model": result["model"],
    }
    chunks: list[dict[str, Any]] = []
    for choice in result["choices"]:
        index = choice["index"]
        message = choice["message"]
        chunks.append({**head, "choices": [_delta(index, {"role": "assistant", "content": ""})]})
        if message.get("content"):
            chunks.append({**head, "choices": [_delta(index, {"content": message["content"]}, choice.get("logprobs"))]})
        if message.get("tool_calls"):
            calls = [{"index": position, **call} for position, call in enumerate(message["tool_calls"])]
            chunks.append({**head, "choices": [_delta(index, {"tool_calls": calls}, choice.get("logprobs"))]})
        chunks.append({**head, "choices": [_delta(index, {}, finish=choice["finish_reason"])]})
    if include_usage:
        chunks = [{**chunk, "usage": None} for chunk in chunks]
        chunks.append({**head, "choices": [], "usage": result["usage"]})
    return _done(chunks)


def completion_stream(result: dict[str, Any], include_usage: bool) -> str:
    """`text_completion` chunks: the text, then the finish reason; the usage chunk when asked."""
    head = {"id": result["id"], "object": "text_completion", "created": result["created"], "model": result["model"]}
    chunks: list[dict[str, Any]] = []
    for choice in result["choices"]:
        piece = {
            "index": choice["index"],
            "text": choice["text"],
            "logprobs": choice.get("logprobs"),
            "finish_reason": None,
        }
        chunks.append({**head, "choices": [piece]})
        end = {"index": choice["index"], "text": "", "logprobs": None, "finish_reason": choice["finish_reason"]}
        chunks.append({**head, "choices": [end]})
    if include_usage:
        chunks = [{**chunk, "usage": None} for chunk in chunks]
        chunks.append({**head, "choices": [], "usage": result["usage"]})
    return _done(chunks)


def _delta(index: int, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def _done(chunks: Iterable[dict[str, Any]]) -> str:
    return "".join(_event(chunk) for chunk in chunks) + "data: [DONE]\n\n"


def response_object(
    result: dict[str, Any], request: dict[str, Any], job_id: str, status: str = "completed"
) -> dict[str, Any]:
    """The Responses API's `response` for a finished chat job; `request` holds the fields echoed
    back (instructions, max_output_tokens, temperature, top_p, metadata, text)."""
    choice = result["choices"][0]
    text = choice["message"].get("content") or ""
    usage = result["usage"]
    truncated = choice["finish_reason"] == "length"
    return {
        "id": f"resp_{job_id.removeprefix('job_')}",
        "object": "response",
        "created_at": result["created"],
        "status": "incomplete" if truncated else status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": result["model"],
        "output": [
            {
                "type": "message",
                "id": f"msg_{job_id.removeprefix('job_')}",
                "status": "incomplete" if truncated else "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        ],
        "parallel_tool_calls": False,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"],
        },
        "metadata": request.get("metadata") or {},
    }


def response_stream(response: dict[str, Any]) -> str:
    """The Responses API's streaming events for a finished response, each with its sequence number."""
    item = response["output"][0]
    part = item["content"][0]
    text = part["text"]
    started = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    empty_item = {**item, "status": "in_progress", "content": []}
    empty_part = {**part, "text": ""}
    final_event = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
        ("response.output_item.added", {"output_index": 0, "item": empty_item}),
        (
            "response.content_part.added",
            {"item_id": item["id"], "output_index": 0, "content_index": 0, "part": empty_part},
        ),
    ]
    if text:
        delta = {"item_id": item["id"], "output_index": 0, "content_index": 0, "delta": text, "logprobs": []}
        events.append(("response.output_text.delta", delta))
    done = {"item_id": item["id"], "output_index": 0, "content_index": 0, "text": text, "logprobs": []}
    events += [
        ("response.output_text.done", done),
        ("response.content_part.done", {"item_id": item["id"], "output_index": 0, "content_index": 0, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        (final_event, {"response": response}),
    ]
    return "".join(
        _event({"type": kind, "sequence_number": number, **data}, kind) for number, (kind, data) in enumerate(events)
    )
