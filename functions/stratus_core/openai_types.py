"""OpenAI's request shapes for chat and text completions, and their translation into the
endpoint's contract (`packed_request`). The objects a client gets back are in `openai_objects.py`,
the Responses API's request in `openai_responses.py`.

Parameters OpenAI has but Stratus does not implement are refused with a 400 that names them,
unless they carry their default value (`echo: false`, `best_of: 1`, …), so the official client
works unchanged. The README's API section lists every field with its status.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stratus_core.contract import (
    MAX_CHOICES,
    MAX_TOP_LOGPROBS,
    FunctionCall,
    Message,
    PackedRequest,
    ResponseFormat,
    SamplingParams,
    Tool,
    ToolCall,
    ToolChoice,
    message_shape_problem,
)
from stratus_core.jobs import Lane

MAX_MESSAGES = 256
MAX_OUTPUT_TOKENS = 4096
DEFAULT_MAX_TOKENS = 256

_UNSUPPORTED_UNLESS_DEFAULT: dict[str, tuple[Any, ...]] = {
    "echo": (False, None),
    "best_of": (1, None),
    "functions": (None, []),
    "function_call": (None, "none"),
    "suffix": (None,),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "store": (None, False),
    "reasoning_effort": (None,),
    "metadata": (None, {}),
}


class UnsupportedParameter(ValueError):
    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"'{name}' is not supported")
        self.unsupported_parameter = name


def refuse_unsupported(data: Any, table: dict[str, tuple[Any, ...]] = _UNSUPPORTED_UNLESS_DEFAULT) -> Any:
    if isinstance(data, dict):
        for name, defaults in table.items():
            if name in data and data[name] not in defaults:
                raise UnsupportedParameter(name)
        return {k: v for k, v in data.items() if k not in table}
    return data


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False
    include_obfuscation: bool | None = Field(default=None, description="Accepted and ignored: no padding is added.")


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    user: str | None = Field(default=None, max_length=256)
    stream: bool = Field(default=False, description="Server-sent events; on AWS delivered when the job completes.")
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES, description="Distinct choices; every choice's tokens are billed.")
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = Field(default=None, description="Token id (as a string) → bias, -100 to 100.")
    service_tier: Literal["auto", "default", "flex"] | None = Field(
        default=None,
        description="`flex`: cheaper (the catalog's flex price) and slower: the request waits for a warm "
        "endpoint, up to `FlexWindowMinutes`. Answered like any request (a retryable 503 that the retry "
        "attaches to, or 202 with `Prefer: respond-async`); without `Prefer: wait=N` it does not wait.",
    )

    @property
    def lane(self) -> Lane:
        return "flex" if self.service_tier == "flex" else "interactive"

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return refuse_unsupported(data)

    @model_validator(mode="after")
    def _stream_options_need_a_stream(self) -> _Sampling:
        if self.stream_options is not None and not self.stream:
            raise UnsupportedParameter("stream_options", "stream_options is only allowed when stream is true")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: str | list[str] | None) -> str | list[str] | None:
        sequences = [value] if isinstance(value, str) else (value or [])
        if len(sequences) > 4 or any(not s or len(s) > 256 for s in sequences):
            raise ValueError("stop takes up to 4 non-empty sequences of at most 256 characters")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and any(not key.isdigit() for key in value):
            raise ValueError("logit_bias keys are token ids")
        return value

    def sampling(self, **options: Any) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
            n=self.n,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias={int(token): bias for token, bias in (self.logit_bias or {}).items()},
            **options,
        )


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    type: Literal["function"] = "function"
    function: FunctionCall

    @field_validator("function")
    @classmethod
    def _arguments_are_a_json_object(cls, function: FunctionCall) -> FunctionCall:
        """A call in the history is shown to the model as its arguments' JSON: text that is not a JSON
        object cannot be rendered, so it is refused here (a 400) rather than failing at the model server."""
        try:
            arguments = json.loads(function.arguments)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise ValueError("function.arguments must be a JSON object, as text")
        return function


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = Field(default=None, max_length=64)
    tool_calls: list[ToolCallIn] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=64)
    refusal: None = None

    @model_validator(mode="after")
    def _shape(self) -> ChatMessageIn:
        problem = message_shape_problem(self.role, self.content, bool(self.tool_calls), self.tool_call_id)
        if problem:
            raise ValueError(problem)
        return self

    def to_message(self) -> Message:
        content = self.content if isinstance(self.content, str | None) else "".join(p.text for p in self.content)
        calls = [ToolCall(**call.model_dump()) for call in self.tool_calls] if self.tool_calls else None
        role = "system" if self.role == "developer" else self.role
        return Message(role=role, content=content, tool_calls=calls, tool_call_id=self.tool_call_id)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = Field(default=None, description="Accepted; each choice makes at most one call.")

    @model_validator(mode="after")
    def _options_fit_together(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise UnsupportedParameter("top_logprobs", "top_logprobs needs logprobs: true")
        if self.tool_choice not in (None, "none", "auto") and not self.tools:
            raise UnsupportedParameter("tool_choice", "tool_choice needs tools")
        return self

    def sampling(self, **options: Any) -> SamplingParams:
        response_format = self.response_format if self.response_format and self.response_format.type != "text" else None
        return super().sampling(
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs or 0,
            response_format=response_format,
            tools=self.tools or None,
            tool_choice=self.tool_choice if self.tools else None,
        )


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=5, description="Top alternatives per token (0-5).")

    def sampling(self, **options: Any) -> SamplingParams:
        wanted = self.logprobs is not None
        return super().sampling(logprobs=wanted, top_logprobs=self.logprobs or 0)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("exactly one prompt per request (send a batch for many)")
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


InferenceRequest = ChatCompletionRequest | CompletionRequest


def packed_request(request: InferenceRequest, job_id: str, tenant_id: str) -> PackedRequest:
    """The request as the model server receives it (the endpoint contract)."""
    if isinstance(request, ChatCompletionRequest):
        return PackedRequest(
            job_id=job_id,
            tenant_id=tenant_id,
            kind="chat",
            model=request.model,
            messages=[message.to_message() for message in request.messages],
            params=request.sampling(),
        )
    return PackedRequest(
        job_id=job_id,
        tenant_id=tenant_id,
        kind="completion",
        model=request.model,
        prompt=request.prompt_text(),
        params=request.sampling(),
    )
