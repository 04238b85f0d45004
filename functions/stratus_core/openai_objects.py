"""OpenAI's completion objects, built from the model server's choices: what a job stores and its
client receives (`chat.completion` and `text_completion`, with their logprobs and tool calls)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from stratus_core.contract import Choice, TokenLogprob, ToolCall, Usage

FinishReason = Literal["stop", "length", "tool_calls"]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None
    refusal: None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCall] | None = Field(default=None, exclude_if=lambda calls: calls is None)  # as OpenAI: absent


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChatLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    service_tier: Literal["default", "flex"] = "default"


class TextLogprobs(BaseModel):
    """The legacy completions' logprobs: parallel lists, one entry per generated token."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason
    logprobs: TextLogprobs | None = Field(default=None)


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


def completion_object(
    kind: str,
    job_id: str,
    created: int,
    model: str,
    choices: list[Choice],
    usage: Usage,
    service_tier: Literal["default", "flex"] = "default",
) -> ChatCompletion | TextCompletion:
    """OpenAI's object; a chat completion names its `service_tier` as OpenAI's does."""
    if kind == "chat":
        return ChatCompletion(
            id=f"chatcmpl-{job_id}",
            created=created,
            model=model,
            choices=[_chat_choice(choice) for choice in choices],
            usage=usage,
            service_tier=service_tier,
        )
    return TextCompletion(
        id=f"cmpl-{job_id}",
        created=created,
        model=model,
        choices=[
            TextChoice(index=c.index, text=c.text, finish_reason=c.finish_reason, logprobs=_text_logprobs(c.logprobs))
            for c in choices
        ],
        usage=usage,
    )


def _chat_choice(choice: Choice) -> ChatChoice:
    calls = choice.tool_calls or None
    message = AssistantMessage(content=None if calls else choice.text, tool_calls=calls)
    logprobs = ChatLogprobs(content=choice.logprobs) if choice.logprobs is not None else None
    return ChatChoice(index=choice.index, message=message, finish_reason=choice.finish_reason, logprobs=logprobs)


def _text_logprobs(logprobs: list[TokenLogprob] | None) -> TextLogprobs | None:
    if logprobs is None:
        return None
    offsets, offset = [], 0
    for entry in logprobs:
        offsets.append(offset)
        offset += len(entry.token)
    return TextLogprobs(
        tokens=[entry.token for entry in logprobs],
        token_logprobs=[entry.logprob for entry in logprobs],
        top_logprobs=[{top.token: top.logprob for top in entry.top_logprobs} for entry in logprobs],
        text_offset=offsets,
    )
