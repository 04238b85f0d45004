"""An input file's lines, validated as OpenAI validates them: every error listed, none fatal alone."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratus_core.batches.models import MAX_LINES, BatchEndpoint, BatchError
from stratus_core.errors import InvalidRequest
from stratus_core.openai_types import ChatCompletionRequest, CompletionRequest


class BatchLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom_id: str = Field(min_length=1, max_length=512)
    method: Literal["POST"]
    url: BatchEndpoint
    body: dict[str, Any]


class ParsedLine(BaseModel):
    line: int
    custom_id: str
    request: ChatCompletionRequest | CompletionRequest


def batch_job_id(batch_id: str, line: int) -> str:
    return f"{batch_id}-{line:06d}"


def parse_lines(content: bytes, endpoint: str) -> tuple[list[ParsedLine], list[BatchError]]:
    """Validate every line as OpenAI does: all errors are listed, none is fatal on its own."""
    parsed: list[ParsedLine] = []
    errors: list[BatchError] = []
    seen: set[str] = set()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return [], [BatchError(code="invalid_file_format", message="the file is not UTF-8")]
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return [], [BatchError(code="empty_file", message="the input file has no requests")]
    if len(lines) > MAX_LINES:
        return [], [BatchError(code="too_many_requests", message=f"a batch holds at most {MAX_LINES} requests")]
    request_model = ChatCompletionRequest if endpoint == "/v1/chat/completions" else CompletionRequest
    for number, raw in enumerate(lines, start=1):
        try:
            line = BatchLine.model_validate_json(raw)
            if line.url != endpoint:
                raise InvalidRequest(f"url {line.url} does not match the batch's endpoint {endpoint}", param="url")
            if line.custom_id in seen:
                raise InvalidRequest(f"custom_id {line.custom_id!r} is used twice", param="custom_id")
            request = request_model.model_validate(line.body)
        except ValidationError as invalid:
            first = invalid.errors(include_input=False)[0]
            param = ".".join(str(p) for p in first.get("loc", ())) or None
            message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
            errors.append(BatchError(code="invalid_request", message=message, param=param, line=number))
            continue
        except InvalidRequest as invalid:
            errors.append(BatchError(code="invalid_request", message=str(invalid), param=invalid.param, line=number))
            continue
        seen.add(line.custom_id)
        parsed.append(ParsedLine(line=number, custom_id=line.custom_id, request=request))
    return parsed, errors
