"""From a packed request to the engine's rows, and from the rows back to OpenAI's choices.

- `n` choices are `n` rows of the continuous batch, seeded `seed`, `seed + 1`, … when a seed is
  given (reproducible), from fresh randomness otherwise (distinct); every choice's tokens are
  counted, the prompt once, as OpenAI counts them.
- Structured output: `json_object` is the schema `{"type": "object"}`, `json_schema` its schema;
  either is enforced by the grammar (`engine/constraints.py`).
- Tools. The prompt shows the tools through the model's chat template when the template has a
  tools format; otherwise the tools are described in a system message of ours (`TOOLS_PROMPT`),
  asking for a call as `{"name": …, "arguments": {…}}`. `tool_choice: required` or a named function
  constrains the output to exactly that shape, with `arguments` following the function's
  parameters schema, so the call always parses and validates; `auto` lets the model choose, and an
  answer that is such an object (optionally inside `<tool_call>` tags, the format of templates
  that have one) naming a known function becomes a call; `none` shows no tools. Earlier calls and
  tool results in the conversation are rendered as the template renders them, or as JSON text and
  `tool` messages where it has no tools format.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from gpu_jobs.engine.base import GenerationEngine, GenerationRequest, GenerationResult, TokenLogprobs
from stratus_core.contract import (
    Choice,
    FunctionCall,
    JobError,
    NamedToolChoice,
    PackedRequest,
    RequestResult,
    SamplingParams,
    TokenLogprob,
    Tool,
    ToolCall,
    TopLogprob,
    Usage,
)

TOOLS_PROMPT = (
    "You can call these functions. To call one, answer with only a JSON object "
    '{{"name": <the function\'s name>, "arguments": <an object of its parameters>}} and nothing else.\n'
    "Functions:\n{functions}"
)
_TOOL_CALL_TAGS = re.compile(r"^\s*<tool_call>\s*(.*?)\s*(?:</tool_call>)?\s*$", re.DOTALL)


def generation_requests(engine: GenerationEngine, request: PackedRequest) -> list[GenerationRequest]:
    """One row per choice."""
    params = request.params
    prompt = render(engine, request) if request.kind == "chat" else request.prompt or ""
    schema = output_schema(params)
    logprobs = params.top_logprobs if params.logprobs else None
    stop = () if _forced_call(params) else tuple(params.stop)  # a forced call ends where its grammar ends
    return [
        GenerationRequest(
            prompt=prompt,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=stop,
            seed=None if params.seed is None else params.seed + choice,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            logit_bias=tuple(sorted(params.logit_bias.items())),
            schema=schema,
            logprobs=logprobs,
        )
        for choice in range(params.n)
    ]


def render(engine: GenerationEngine, request: PackedRequest) -> str:
    params = request.params
    tools = [tool.function.model_dump(exclude_none=True) for tool in params.tools or []]
    shown = tools if tools and params.tool_choice != "none" else []
    with_template = bool(shown) and engine.chat_template_has_tools
    messages = [_message(m.model_dump(exclude_none=True), with_template) for m in request.messages or []]
    if shown and not with_template:
        messages.insert(
            0,
            {"role": "system", "content": TOOLS_PROMPT.format(functions="\n".join(_compact(tool) for tool in shown))},
        )
    return engine.render_chat(messages, tools=shown if with_template else None)


def _message(message: dict[str, Any], template_has_tools: bool) -> dict[str, Any]:
    if template_has_tools or not message.get("tool_calls"):
        return {**message, "content": message.get("content") or ""}
    calls = [
        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for c in message["tool_calls"]
    ]
    text = "\n".join(_compact(call) for call in calls)
    return {"role": "assistant", "content": text}


def _compact(value: Any) -> str:
    """JSON without spaces: fewer prompt tokens, and never more bytes than the admission bound counts."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def output_schema(params: SamplingParams) -> dict[str, Any] | None:
    """The JSON schema the output is held to, if any."""
    choice = params.tool_choice
    if params.tools and _forced_call(params):
        wanted = [
            t
            for t in params.tools
            if not isinstance(choice, NamedToolChoice) or t.function.name == choice.function["name"]
        ]
        calls = [_call_schema(tool) for tool in wanted]
        return calls[0] if len(calls) == 1 else {"anyOf": calls}
    if params.response_format is None:
        return None
    if params.response_format.type == "json_object":
        return {"type": "object"}
    if params.response_format.json_schema is not None:
        return params.response_format.json_schema.schema_
    return None


def _forced_call(params: SamplingParams) -> bool:
    return bool(params.tools) and (params.tool_choice == "required" or isinstance(params.tool_choice, NamedToolChoice))


def _call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.function.name}, "arguments": tool.function.parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def request_result(engine: GenerationEngine, request: PackedRequest, rows: list[GenerationResult]) -> RequestResult:
    """The request's choices and usage from its rows (an error in any row fails the request)."""
    failed = next((row for row in rows if row.error is not None), None)
    if failed is not None:
        error = JobError(code=failed.error_code or "invalid_request", message=failed.error or "failed")
        return RequestResult(job_id=request.job_id, tenant_id=request.tenant_id, error=error)
    choices = [_choice(engine, request.params, index, row) for index, row in enumerate(rows)]
    usage = Usage.of(rows[0].prompt_tokens, sum(row.completion_tokens for row in rows))
    return RequestResult(job_id=request.job_id, tenant_id=request.tenant_id, choices=choices, usage=usage)


def _choice(engine: GenerationEngine, params: SamplingParams, index: int, row: GenerationResult) -> Choice:
    logprobs = [_logprob(engine, entry) for entry in row.logprobs] if row.logprobs is not None else None
    calls = _tool_calls(params, row.text) if params.tools and params.tool_choice != "none" else None
    if calls and row.finish_reason == "stop":
        return Choice(index=index, text="", finish_reason="tool_calls", logprobs=logprobs, tool_calls=calls)
    return Choice(index=index, text=row.text, finish_reason=row.finish_reason, logprobs=logprobs)


def _tool_calls(params: SamplingParams, text: str) -> list[ToolCall] | None:
    """The call the output makes, if it is one: `{"name", "arguments"}` naming a known function."""
    tagged = _TOOL_CALL_TAGS.match(text)
    candidate = tagged.group(1) if tagged else text
    try:
        parsed = json.loads(candidate)
    except ValueError:
        return None
    names = {tool.function.name for tool in params.tools or []}
    if not isinstance(parsed, dict) or parsed.get("name") not in names or not isinstance(parsed.get("arguments"), dict):
        return None
    call = FunctionCall(name=parsed["name"], arguments=json.dumps(parsed["arguments"]))
    return [ToolCall(id="call_" + secrets.token_hex(12), function=call)]


def _logprob(engine: GenerationEngine, entry: TokenLogprobs) -> TokenLogprob:
    text, raw = engine.token_piece(entry.token_id)
    top = []
    for token_id, logprob in entry.top:
        top_text, top_raw = engine.token_piece(token_id)
        top.append(TopLogprob(token=top_text, logprob=min(0.0, logprob), bytes=list(top_raw)))
    return TokenLogprob(token=text, logprob=min(0.0, entry.logprob), bytes=list(raw), top_logprobs=top)
