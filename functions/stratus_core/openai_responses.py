"""The Responses API's basic text form (`POST /v1/responses`), served as a chat job.

`input` is a string or a list of messages; `instructions` becomes the system message;
`max_output_tokens`, `temperature` and `top_p` are the chat's. Nothing is stored: `store` is
accepted (either value) but no response can be read back, so `previous_response_id` is refused with
a 400 that says so. Tools, reasoning and background mode are refused unless at their defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stratus_core.contract import FUNCTION_NAME, JsonSchemaFormat, ResponseFormat
from stratus_core.openai_types import (
    DEFAULT_MAX_TOKENS,
    MAX_MESSAGES,
    MAX_OUTPUT_TOKENS,
    ChatCompletionRequest,
    ChatMessageIn,
    UnsupportedParameter,
    refuse_unsupported,
)

_RESPONSES_UNSUPPORTED_UNLESS_DEFAULT: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "auto", "none"),
    "parallel_tool_calls": (None, True, False),
    "reasoning": (None, {}),
    "include": (None, []),
    "truncation": (None, "disabled"),
    "background": (None, False),
    "prompt": (None,),
    "service_tier": (None, "auto", "default"),
    "top_logprobs": (None, 0),
    "conversation": (None,),
    "max_tool_calls": (None,),
}


class InputText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["input_text", "output_text"]
    text: str
    annotations: list[Any] | None = None


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["message"] | None = None
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[InputText]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class TextFormat(BaseModel):
    """`text`, `json_object`, or `json_schema` with the schema beside the type (the Responses API's
    flat form of chat's `response_format.json_schema`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, pattern=FUNCTION_NAME)  # chat's json_schema.name rule
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_when_json_schema(self) -> TextFormat:
        if (self.type == "json_schema") != (self.schema_ is not None):
            raise ValueError("text.format carries a schema exactly when its type is json_schema")
        return self

    def response_format(self) -> ResponseFormat | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return ResponseFormat(type="json_object")
        named = {"name": self.name} if self.name else {}
        schema = JsonSchemaFormat.model_validate({**named, "schema": self.schema_, "strict": self.strict})
        return ResponseFormat(type="json_schema", json_schema=schema)


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: TextFormat | None = None
    verbosity: Literal["medium"] | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[InputMessage] = Field(description="A string, or a list of messages.")
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stream: bool = Field(default=False, description="Server-sent events; on AWS delivered when the job completes.")
    store: bool | None = Field(default=None, description="Accepted; nothing is stored (no GET /v1/responses/{id}).")
    previous_response_id: str | None = None
    text: TextOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = Field(default=None, max_length=256)

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return refuse_unsupported(data, _RESPONSES_UNSUPPORTED_UNLESS_DEFAULT)

    @field_validator("previous_response_id")
    @classmethod
    def _not_stored(cls, value: str | None) -> str | None:
        if value is not None:
            raise UnsupportedParameter(
                "previous_response_id", "responses are not stored, so previous_response_id cannot be used"
            )
        return value

    @field_validator("input")
    @classmethod
    def _messages(cls, value: str | list[InputMessage]) -> str | list[InputMessage]:
        if isinstance(value, list) and not 1 <= len(value) <= MAX_MESSAGES:
            raise ValueError(f"input holds 1 to {MAX_MESSAGES} messages")
        return value

    def as_chat(self) -> ChatCompletionRequest:
        """The same request as a chat completion (what the model server runs)."""
        messages: list[dict[str, Any]] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        if isinstance(self.input, str):
            messages.append({"role": "user", "content": self.input})
        else:
            messages += [{"role": m.role, "content": m.text()} for m in self.input]
        return ChatCompletionRequest(
            model=self.model,
            messages=[ChatMessageIn.model_validate(m) for m in messages],
            max_tokens=self.max_output_tokens or DEFAULT_MAX_TOKENS,
            temperature=self.temperature,
            top_p=self.top_p,
            response_format=self.text.format.response_format() if self.text and self.text.format else None,
        )

    def echoed(self) -> dict[str, Any]:
        """The request's fields a `response` object repeats."""
        return {
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "metadata": self.metadata,
            "text": {
                "format": (
                    self.text.format.model_dump(by_alias=True, exclude_none=True)
                    if self.text and self.text.format
                    else {"type": "text"}
                )
            },
        }
