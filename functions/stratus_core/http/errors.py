"""Domain exceptions → HTTP status and OpenAI's error shape, in one table.

`{"error": {"message", "type", "param", "code"}}` is what the official `openai` client parses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel

from stratus_core.errors import (
    Conflict,
    Forbidden,
    IdempotencyMismatch,
    InvalidRequest,
    JobNotReady,
    Limit,
    LimitExceeded,
    LimitIsZero,
    NotFound,
    NotServed,
    PayloadTooLarge,
    RateWindow,
    RequestExceedsLimit,
    StratusError,
    TenantBusy,
    Unauthenticated,
    Unavailable,
)
from stratus_core.failures import failure_kind


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class HttpError(BaseModel):
    status: int
    body: ErrorResponse
    headers: dict[str, str] = {}


def error(status: HTTPStatus, message: str, type_: str, code: str | None, param: str | None = None) -> HttpError:
    return HttpError(
        status=int(status),
        body=ErrorResponse(error=ErrorBody(message=message, type=type_, param=param, code=code)),
    )


def http_error(exc: StratusError) -> HttpError:
    """The one mapping from a domain exception class to what the client receives.

    Retries are told explicitly (`x-should-retry`, which the official SDKs obey before anything else):
    `true` where waiting helps (a limit's next window, a model starting, contention), `false` where
    it never can (a monthly quota used up, a request larger than a limit allows, a zero limit).
    Only a limit that a wait lifts is a 429 with `Retry-After`; a per-minute or in-flight limit of
    0 is a 403 `limit_zero` (a permission the tenant lacks; many retry helpers retry any 429), and
    a monthly quota of 0 is OpenAI's own `429 insufficient_quota`, with no `Retry-After`.
    """
    if isinstance(exc, LimitExceeded):
        if exc.limit is Limit.TOKENS_PER_MONTH:
            result = error(HTTPStatus.TOO_MANY_REQUESTS, str(exc), "insufficient_quota", "insufficient_quota")
            result.headers["x-should-retry"] = "false"
        else:
            kind = "tokens" if exc.limit is Limit.TOKENS_PER_MINUTE else "requests"
            result = error(HTTPStatus.TOO_MANY_REQUESTS, str(exc), kind, "rate_limit_exceeded")
        result.headers["Retry-After"] = str(exc.retry_after)
        result.headers["x-stratus-limit"] = exc.limit.value
        if exc.window is not None:
            result.headers.update(rate_limit_headers(exc.window))
        return result
    if isinstance(exc, TenantBusy):
        result = error(HTTPStatus.TOO_MANY_REQUESTS, str(exc), "requests", "rate_limit_exceeded")
        result.headers["Retry-After"] = str(exc.retry_after)
        result.headers["x-should-retry"] = "true"
        result.headers["x-stratus-limit"] = "tenant_write_ceiling"
        return result
    if isinstance(exc, LimitIsZero):
        result = error(HTTPStatus.FORBIDDEN, str(exc), "permission_error", "limit_zero")
        result.headers.update({"x-should-retry": "false", "x-stratus-limit": exc.limit.value})
        return result
    if isinstance(exc, RequestExceedsLimit):
        if exc.limit is Limit.TOKENS_PER_MONTH:
            result = error(HTTPStatus.TOO_MANY_REQUESTS, str(exc), "insufficient_quota", "insufficient_quota")
        else:
            kind = "tokens" if exc.limit is Limit.TOKENS_PER_MINUTE else "requests"
            result = error(HTTPStatus.TOO_MANY_REQUESTS, str(exc), kind, "rate_limit_exceeded")
        result.headers.update({"x-should-retry": "false", "x-stratus-limit": exc.limit.value})
        return result
    if isinstance(exc, JobNotReady):
        result = error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc), "server_error", exc.code)
        result.headers.update(
            {
                "Retry-After": str(exc.retry_after),
                "retry-after-ms": str(exc.retry_after * 1000),
                "x-should-retry": "true",
                "x-stratus-job-id": exc.job_id,
            }
        )
        return result
    if isinstance(exc, NotServed):
        return error(HTTPStatus.NOT_FOUND, str(exc), "invalid_request_error", exc.code)
    if isinstance(exc, NotFound):
        code = "model_not_found" if exc.kind == "model" else "not_found"
        return error(HTTPStatus.NOT_FOUND, str(exc), "invalid_request_error", code)
    if isinstance(exc, IdempotencyMismatch):
        result = error(HTTPStatus.CONFLICT, str(exc), "invalid_request_error", "idempotency_key_reused")
        result.headers["x-should-retry"] = "false"
        return result
    if isinstance(exc, Conflict):
        result = error(HTTPStatus.CONFLICT, str(exc), "invalid_request_error", "conflict")
        result.headers["x-should-retry"] = "false"
        return result
    if isinstance(exc, InvalidRequest):
        return error(HTTPStatus.BAD_REQUEST, str(exc), "invalid_request_error", exc.code, exc.param)
    if isinstance(exc, Unauthenticated):
        return error(HTTPStatus.UNAUTHORIZED, str(exc), "invalid_request_error", "invalid_api_key")
    if isinstance(exc, Forbidden):
        return error(HTTPStatus.FORBIDDEN, str(exc), "permission_error", exc.code)
    if isinstance(exc, PayloadTooLarge):
        return error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc), "invalid_request_error", "payload_too_large")
    if isinstance(exc, Unavailable):
        result = error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc), "server_error", "unavailable")
        result.headers.update({"Retry-After": str(exc.retry_after), "x-should-retry": "true"})
        return result
    return error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", "server_error", None)


def rate_limit_headers(window: RateWindow) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers: the minute's limits, what is left of them, when they reset."""
    reset = f"{window.resets_in_seconds}s"
    return {
        "x-ratelimit-limit-requests": str(window.requests_limit),
        "x-ratelimit-remaining-requests": str(max(0, window.requests_remaining)),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(window.tokens_limit),
        "x-ratelimit-remaining-tokens": str(max(0, window.tokens_remaining)),
        "x-ratelimit-reset-tokens": reset,
    }


def validation_error(errors: Sequence[Mapping[str, Any]]) -> HttpError:
    """A 400 naming the first invalid field; pydantic's messages never echo the input value."""
    if not errors:
        return error(HTTPStatus.BAD_REQUEST, "invalid request", "invalid_request_error", "invalid_value")
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in _LOCATIONS]
    param = ".".join(location) or None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    unsupported = getattr((first.get("ctx") or {}).get("error"), "unsupported_parameter", None)
    if unsupported:
        param = str(unsupported)
        return error(HTTPStatus.BAD_REQUEST, message, "invalid_request_error", "unsupported_parameter", param)
    if param:
        message = f"{param}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    if first.get("type") == "json_invalid":  # pydantic's loc is a character offset here, not a field
        return error(HTTPStatus.BAD_REQUEST, "the body is not valid JSON", "invalid_request_error", "invalid_json")
    return error(HTTPStatus.BAD_REQUEST, message, "invalid_request_error", "invalid_value", param)


def route_not_found(method: str, path: str) -> HttpError:
    return error(
        HTTPStatus.NOT_FOUND, f"Unknown request URL: {method} {path[:200]}", "invalid_request_error", "unknown_url"
    )


_LOCATIONS = {"body", "query", "path", "header"}


def job_failure(code: str, message: str) -> HttpError:
    """How a request that ended without a result is answered to a client that waited for it (the
    same status and type its batch error line would carry: `stratus_core.failures`)."""
    kind = failure_kind(code)
    return error(kind.status, message, kind.type, code)
