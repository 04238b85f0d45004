"""The packed request and response exchanged with the inference endpoint, version 1.

Defined once and imported by both sides: the dispatcher writes an `InferencePack` to S3 and
passes its location to `invoke_endpoint_async`; the inference server (`gpu_jobs`) answers
`POST /invocations` with a `PackResult`, which SageMaker stores in S3 for the results function.
Only pydantic is needed to import this module, so the GPU container can ship it alone.

A pack holds up to a configured number of requests from any tenants. One request failing
(bad parameters, too long for the context) does not fail the pack: its result carries an error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONTRACT_VERSION: Literal[1] = 1


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class SamplingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: list[str] = Field(default_factory=list, max_length=4)
    seed: int | None = None


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

    version: Literal[1] = CONTRACT_VERSION
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


class Choice(BaseModel):
    index: int = 0
    text: str = Field(description="The generated text (the assistant message's content for chat).")
    finish_reason: Literal["stop", "length"]


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
    version: Literal[1] = CONTRACT_VERSION
    pack_id: str
    model: str
    results: list[RequestResult]
