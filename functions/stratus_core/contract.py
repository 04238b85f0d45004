"""The packed request and response exchanged with the inference endpoint, version 2.

Defined once and imported by both sides: the dispatcher writes an `InferencePack` to S3 and
passes its location to `invoke_endpoint_async`; the inference server (`gpu_jobs`) answers
`POST /invocations` with a `PackResult`, which SageMaker stores in S3 for the results function.
Only pydantic is needed to import this module, so the GPU container can ship it alone.

A pack holds up to a configured number of requests from any tenants. One request failing
(bad parameters, too long for the context) does not fail the pack: its result carries an error.

Version 2 adds the generation options (`n`, logprobs, penalties, `logit_bias`, structured output,
tools) and, per choice, logprobs and tool calls. A version-1 pack is a valid version-2 pack (every
new field has its neutral default), so packs queued before a deploy are still served after it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CONTRACT_VERSION: Literal[2] = 2
Version = Literal[1, 2]
MAX_CHOICES = 8
MAX_TOP_LOGPROBS = 20
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionCall(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)
    arguments: str = Field(description="The arguments as a JSON text.")


class ToolCall(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    """One turn: text, or an assistant's tool calls, or a tool's answer to one (`tool_call_id`)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Message:
        problem = message_shape_problem(self.role, self.content, self.tool_calls is not None, self.tool_call_id)
        if problem:
            raise ValueError(problem)
        return self


def message_shape_problem(role: str, content: object, has_tool_calls: bool, tool_call_id: str | None) -> str | None:
    """What is wrong with a turn's shape, if anything (the API checks it too: a 400, not a failed job)."""
    if role == "tool" and not tool_call_id:
        return "a tool message answers a tool call: it needs tool_call_id"
    if has_tool_calls and role != "assistant":
        return "only an assistant message carries tool_calls"
    if content is None and not has_tool_calls:
        return "a message needs content (or, from the assistant, tool_calls)"
    return None


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = Field(default=None, max_length=4096)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: dict[Literal["name"], str]


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(default="response", pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_json_schema(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is given exactly when type is 'json_schema'")
        return self


class SamplingParams(BaseModel):
    """How to generate: the model server applies every one of these per request (per choice)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: list[str] = Field(default_factory=list, max_length=4)
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=MAX_TOP_LOGPROBS)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    logit_bias: dict[int, float] = Field(default_factory=dict, max_length=300)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[int, float]) -> dict[int, float]:
        if any(not -100 <= bias <= 100 for bias in value.values()) or any(token < 0 for token in value):
            raise ValueError("logit_bias maps token ids to biases between -100 and 100")
        return value

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> SamplingParams:
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or []}
            if self.tool_choice.function.get("name") not in names:
                raise ValueError("tool_choice names a function that is not in tools")
        if self.tool_choice in ("required",) and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self


class PackedRequest(BaseModel):
    """One request: a chat (`messages`) or a plain completion (`prompt`)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    tenant_id: str
    kind: Literal["chat", "completion"]
    model: str
    messages: list[Message] | None = None
    prompt: str | None = None
    params: SamplingParams

    @model_validator(mode="after")
    def _one_input(self) -> PackedRequest:
        if (self.kind == "chat") != (self.messages is not None) or (self.kind == "completion") != (
            self.prompt is not None
        ):
            raise ValueError("a chat request carries messages, a completion request carries a prompt")
        return self


class InferencePack(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Version = CONTRACT_VERSION
    pack_id: str
    model: str
    requests: list[PackedRequest] = Field(min_length=1)


class Usage(BaseModel):
    """Token counts from the model server's own tokenizer."""

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)

    @model_validator(mode="after")
    def _total_is_the_sum(self) -> Usage:
        if self.total_tokens != self.prompt_tokens + self.completion_tokens:
            raise ValueError("total_tokens must equal prompt_tokens + completion_tokens")
        return self

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class TopLogprob(BaseModel):
    token: str
    logprob: float = Field(le=0)
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    """One generated token: its log-probability under the model, and the most likely alternatives
    at that position (most likely first; the chosen token among them where it ranks)."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class Choice(BaseModel):
    index: int = 0
    text: str = Field(description="The generated text (the assistant message's content for chat).")
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCall] | None = None


class JobError(BaseModel):
    code: str  # why the request (its job) produced no completion: a code of `stratus_core.failures`
    message: str


class RequestResult(BaseModel):
    job_id: str
    tenant_id: str
    choices: list[Choice] | None = None
    usage: Usage | None = None
    error: JobError | None = None

    @model_validator(mode="after")
    def _result_or_error(self) -> RequestResult:
        if (self.error is None) == (self.choices is None or self.usage is None):
            raise ValueError("a result carries choices and usage, or an error")
        return self


class PackResult(BaseModel):
    version: Version = CONTRACT_VERSION
    pack_id: str
    model: str
    results: list[RequestResult]
