"""OpenAI's request and response shapes: chat and text completions, and the Responses API's basic
text form (the subset we serve).

Parameters OpenAI has but Stratus does not implement are refused with a 400 that names them,
unless they carry their default value (`n: 1`, `presence_penalty: 0`, …), so the official client
works unchanged. The README's API section lists every field with its status.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stratus_core.contract import Choice, Message, PackedRequest, SamplingParams, Usage

MAX_MESSAGES = 256
MAX_OUTPUT_TOKENS = 4096
DEFAULT_MAX_TOKENS = 256

_UNSUPPORTED_UNLESS_DEFAULT: dict[str, tuple[Any, ...]] = {
    "n": (1, None),
    "logprobs": (False, None),
    "top_logprobs": (None, 0),
    "echo": (False, None),
    "best_of": (1, None),
    "presence_penalty": (0, None),
    "frequency_penalty": (0, None),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "parallel_tool_calls": (None,),
    "response_format": (None, {"type": "text"}),
    "suffix": (None,),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "store": (None, False),
    "service_tier": (None, "auto", "default"),
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

    def sampling(self) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
        )


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(default=None, max_length=64)

    def to_message(self) -> Message:
        content = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return Message(role="system" if self.role == "developer" else self.role, content=content)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)


class CompletionRequest(_Sampling):
    prompt: str | list[str]

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


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


def completion_object(
    kind: str, job_id: str, created: int, model: str, choices: list[Choice], usage: Usage
) -> ChatCompletion | TextCompletion:
    if kind == "chat":
        return ChatCompletion(
            id=f"chatcmpl-{job_id}",
            created=created,
            model=model,
            choices=[
                ChatChoice(index=c.index, message=AssistantMessage(content=c.text), finish_reason=c.finish_reason)
                for c in choices
            ],
            usage=usage,
        )
    return TextCompletion(
        id=f"cmpl-{job_id}",
        created=created,
        model=model,
        choices=[TextChoice(index=c.index, text=c.text, finish_reason=c.finish_reason) for c in choices],
        usage=usage,
    )
