"""From a packed request to the OpenAI-shaped requests vLLM serves, and from vLLM's answers back to
the pack contract's choices and usage. No generation happens here: vLLM samples, constrains and
counts; this module only says what to ask for and reads what came back.

- `n` choices are `n` requests of one choice each, seeded `seed`, `seed + 1`, … when a seed is given,
  from fresh randomness otherwise: the pack contract's rule since version 2 (choice `i` is what
  `n: 1, seed: seed + i` gives alone, whatever engine serves it), which vLLM's own `n` does not
  promise. The prompt is counted once, every choice's completion tokens are added,
  as OpenAI counts them. vLLM's prefix cache computes the shared prompt once.
- Structured output: `json_object` is the schema `{"type": "object"}`, `json_schema` its schema, a
  forced tool call the schema of the call; vLLM enforces it (`structured_outputs.json`).
- Tools. A chat template with a tools format shows the tools itself (sent as `tools` with
  `tool_choice: "none"`, so that vLLM renders them and leaves the parsing to us, whatever the model's
  tool-call syntax); otherwise the tools are described in a system message of ours (`TOOLS_PROMPT`),
  asking for a call as `{"name": …, "arguments": {…}}`, and earlier calls become that JSON text.
  `tool_choice: required` or a named function constrains the output to exactly that shape, so the
  call always parses and validates; `auto` lets the model choose, and an answer that is such an
  object (optionally inside `<tool_call>` tags, the format of templates that have one) naming a known
  function becomes a call; `none` shows no tools.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class EngineCall:
    """One OpenAI request to the engine: its path and JSON body."""

    path: str
    body: dict[str, Any]


@dataclass(frozen=True)
class EngineAnswer:
    """The engine's answer to one call: its HTTP status and JSON body."""

    status: int
    body: dict[str, Any]


def engine_calls(request: PackedRequest, served_model: str, template_has_tools: bool) -> list[EngineCall]:
    """One call per choice."""
    params = request.params
    common: dict[str, Any] = {
        "model": served_model,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "n": 1,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    if params.stop and not _forced_call(params):  # a forced call ends where its schema ends
        common["stop"] = list(params.stop)
    if params.logit_bias:
        common["logit_bias"] = {str(token): bias for token, bias in params.logit_bias.items()}
    schema = output_schema(params)
    if schema is not None:
        common["structured_outputs"] = {"json": schema}
    if request.kind == "chat":
        path = "/v1/chat/completions"
        common |= chat_input(request, template_has_tools)
        if params.logprobs:
            common |= {"logprobs": True, "top_logprobs": params.top_logprobs}
    else:
        path = "/v1/completions"
        common["prompt"] = request.prompt or ""
        if params.logprobs:
            common["logprobs"] = params.top_logprobs
    return [
        EngineCall(path, {**common, **({} if params.seed is None else {"seed": params.seed + choice})})
        for choice in range(params.n)
    ]


def chat_input(request: PackedRequest, template_has_tools: bool) -> dict[str, Any]:
    """The `messages` (and, for a template with a tools format, `tools`) of a chat request."""
    params = request.params
    tools = [tool.function.model_dump(exclude_none=True) for tool in params.tools or []]
    shown = tools if tools and params.tool_choice != "none" else []
    with_template = bool(shown) and template_has_tools
    messages = [_message(m.model_dump(exclude_none=True), template_has_tools) for m in request.messages or []]
    if shown and not with_template:
        listed = "\n".join(_compact(tool) for tool in shown)
        messages.insert(0, {"role": "system", "content": TOOLS_PROMPT.format(functions=listed)})
    if with_template:
        return {
            "messages": messages,
            "tools": [{"type": "function", "function": t} for t in shown],
            "tool_choice": "none",
        }
    return {"messages": messages}


def _message(message: dict[str, Any], template_has_tools: bool) -> dict[str, Any]:
    if template_has_tools or not message.get("tool_calls"):
        return {**message, "content": message.get("content") or ""}
    calls = [
        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for c in message["tool_calls"]
    ]
    return {"role": "assistant", "content": "\n".join(_compact(call) for call in calls)}


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


def request_result(request: PackedRequest, answers: list[EngineAnswer]) -> RequestResult:
    """The request's choices and usage from its calls' answers; one refused call fails the request.

    A 4xx is the request's own fault (`invalid_request`, `context_length_exceeded`, or
    `model_not_found` for a model this server does not serve): it fails alone and is not billed.
    Anything else (5xx, an engine that died) is `inference_failed`."""
    for answer in answers:
        if answer.status != 200:
            return RequestResult(job_id=request.job_id, tenant_id=request.tenant_id, error=engine_error(answer))
    choices = [_choice(request, index, answer.body) for index, answer in enumerate(answers)]
    usages = [answer.body["usage"] for answer in answers]
    usage = Usage.of(int(usages[0]["prompt_tokens"]), sum(int(u["completion_tokens"]) for u in usages))
    return RequestResult(job_id=request.job_id, tenant_id=request.tenant_id, choices=choices, usage=usage)


def engine_error(answer: EngineAnswer) -> JobError:
    error = answer.body.get("error")
    message = str(error.get("message") if isinstance(error, dict) else error or answer.body)[:1000]
    if answer.status == 404:
        return JobError(code="model_not_found", message=message)
    if 400 <= answer.status < 500:
        too_long = "maximum context length" in message or "max_model_len" in message
        return JobError(code="context_length_exceeded" if too_long else "invalid_request", message=message)
    return JobError(code="inference_failed", message=f"the engine answered {answer.status}: {message}")


def _choice(request: PackedRequest, index: int, body: dict[str, Any]) -> Choice:
    params = request.params
    (raw,) = body["choices"]
    text = str(raw["message"].get("content") or "") if request.kind == "chat" else str(raw["text"])
    finish = "length" if raw.get("finish_reason") == "length" else "stop"
    logprobs = _logprobs(request, raw.get("logprobs")) if params.logprobs else None
    calls = _tool_calls(params, text) if params.tools and params.tool_choice != "none" else None
    if calls and finish == "stop":
        return Choice(index=index, text="", finish_reason="tool_calls", logprobs=logprobs, tool_calls=calls)
    return Choice(index=index, text=text, finish_reason=finish, logprobs=logprobs)


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


def _logprobs(request: PackedRequest, raw: dict[str, Any] | None) -> list[TokenLogprob]:
    """vLLM's logprobs in the contract's shape: chat's `content` entries carry bytes already; the
    completions API's parallel lists do not, so a token's bytes are its text's UTF-8 there."""
    if not raw:
        return []
    if request.kind == "chat":
        return [
            TokenLogprob(
                token=entry["token"],
                logprob=min(0.0, float(entry["logprob"])),
                bytes=entry.get("bytes"),
                top_logprobs=sorted(
                    (_top(top["token"], top["logprob"], top.get("bytes")) for top in entry["top_logprobs"]),
                    key=lambda top: -top.logprob,
                ),
            )
            for entry in raw.get("content") or []
        ]
    tops = raw.get("top_logprobs") or [None] * len(raw["tokens"])
    return [
        TokenLogprob(
            token=token,
            logprob=min(0.0, float(logprob)),
            bytes=list(token.encode()),
            top_logprobs=[_top(t, v, None) for t, v in sorted((top or {}).items(), key=lambda kv: -kv[1])],
        )
        for token, logprob, top in zip(raw["tokens"], raw["token_logprobs"], tops, strict=True)
    ]


def _top(token: str, logprob: float, raw: list[int] | None) -> TopLogprob:
    return TopLogprob(
        token=token, logprob=min(0.0, float(logprob)), bytes=raw if raw is not None else list(token.encode())
    )
