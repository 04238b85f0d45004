from __future__ import annotations

import pytest

from stratus_core.errors import (
    Conflict,
    JobNotReady,
    Limit,
    LimitExceeded,
    LimitIsZero,
    MissingScope,
    NotFound,
    NotServed,
    RateWindow,
    RequestExceedsLimit,
    TenantSuspended,
    Unauthenticated,
    Unavailable,
)
from stratus_core.http.auth import bearer_key, denial_context, principal_from_authorizer, require_scope
from stratus_core.http.errors import http_error, route_not_found, validation_error
from stratus_core.keys import Principal, Scope


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (NotFound("tenant", "acme"), 404, "invalid_request_error", "not_found"),
        (NotFound("model", "gpt-9"), 404, "invalid_request_error", "model_not_found"),
        (Conflict("exists"), 409, "invalid_request_error", "conflict"),
        (RequestExceedsLimit(Limit.TOKENS_PER_MINUTE, 900, 500), 429, "tokens", "rate_limit_exceeded"),
        (RequestExceedsLimit(Limit.TOKENS_PER_MONTH, 900, 500), 429, "insufficient_quota", "insufficient_quota"),
        (RequestExceedsLimit(Limit.TOKENS_PER_MONTH, 1, 0), 429, "insufficient_quota", "insufficient_quota"),
        (LimitIsZero(Limit.REQUESTS_PER_MINUTE), 403, "permission_error", "limit_zero"),
        (LimitIsZero(Limit.MAX_IN_FLIGHT), 403, "permission_error", "limit_zero"),
        (Unauthenticated("unknown API key"), 401, "invalid_request_error", "invalid_api_key"),
        (TenantSuspended("acme"), 403, "permission_error", "tenant_suspended"),
        (MissingScope("admin"), 403, "permission_error", "insufficient_scope"),
        (LimitExceeded(Limit.REQUESTS_PER_MINUTE, 17, "x"), 429, "requests", "rate_limit_exceeded"),
        (LimitExceeded(Limit.TOKENS_PER_MINUTE, 17, "x"), 429, "tokens", "rate_limit_exceeded"),
        (LimitExceeded(Limit.MAX_IN_FLIGHT, 1, "x"), 429, "requests", "rate_limit_exceeded"),
        (LimitExceeded(Limit.TOKENS_PER_MONTH, 86_400, "x"), 429, "insufficient_quota", "insufficient_quota"),
        (Unavailable("busy"), 503, "server_error", "unavailable"),
        (JobNotReady("job_1", "model_starting", 42, "starting"), 503, "server_error", "model_starting"),
        (
            NotServed("no embeddings", "embeddings_not_supported"),
            404,
            "invalid_request_error",
            "embeddings_not_supported",
        ),
    ],
)
def test_each_domain_error_has_one_status_and_openai_shape(
    error: Exception, status: int, type_: str, code: str
) -> None:
    result = http_error(error)  # type: ignore[arg-type]
    body = result.body.model_dump()
    assert result.status == status
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == type_
    assert body["error"]["code"] == code


def test_what_can_pass_later_says_when_and_what_never_can_says_not_to_retry() -> None:
    window = RateWindow(
        requests_limit=60, requests_remaining=0, tokens_limit=1000, tokens_remaining=12, resets_in_seconds=23
    )
    minute = http_error(LimitExceeded(Limit.REQUESTS_PER_MINUTE, 23, "x", window)).headers
    assert minute == {
        "Retry-After": "23",
        "x-stratus-limit": "requests_per_minute",
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "23s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "12",
        "x-ratelimit-reset-tokens": "23s",
    }
    quota = http_error(LimitExceeded(Limit.TOKENS_PER_MONTH, 86_400, "x")).headers
    assert (quota["x-should-retry"], quota["x-stratus-limit"]) == ("false", "tokens_per_month")
    assert http_error(RequestExceedsLimit(Limit.TOKENS_PER_MINUTE, 900, 500)).headers["x-should-retry"] == "false"
    zero = http_error(LimitIsZero(Limit.MAX_IN_FLIGHT)).headers
    assert zero == {"x-should-retry": "false", "x-stratus-limit": "max_in_flight"}  # and no Retry-After
    starting = http_error(JobNotReady("job_1", "model_starting", 42, "starting")).headers
    assert starting == {
        "Retry-After": "42",
        "retry-after-ms": "42000",
        "x-should-retry": "true",
        "x-stratus-job-id": "job_1",
    }


def test_validation_error_names_the_field_without_echoing_input() -> None:
    result = validation_error(
        [
            {
                "loc": ("body", "limits", "max_in_flight"),
                "msg": "Input should be greater than or equal to 0",
                "type": "greater_than_equal",
                "input": -5,
            },
            {"loc": ("body", "name"), "msg": "Field required", "type": "missing"},
        ]
    )
    assert result.status == 400
    assert result.body.error.param == "limits.max_in_flight"
    assert result.body.error.message == (
        "limits.max_in_flight: Input should be greater than or equal to 0 (and 1 more problem)"
    )


def test_unknown_route_is_an_openai_404() -> None:
    result = route_not_found("GET", "/v1/nothing")
    assert result.status == 404
    assert result.body.error.message == "Unknown request URL: GET /v1/nothing"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "sk-abc"])
def test_malformed_authorization_headers_are_unauthenticated(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        bearer_key(header)


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_key("bearer sk-abc") == "sk-abc"


def test_missing_authorizer_context_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        principal_from_authorizer({})


def test_scopes_round_trip_through_the_authorizer_context() -> None:
    principal = Principal(tenant_id="acme", key_id="key_1", scopes=frozenset({Scope.USAGE, Scope.INFERENCE}))
    context = principal.to_context()
    assert context == {"tenant_id": "acme", "key_id": "key_1", "scopes": "inference usage"}
    assert principal_from_authorizer(context) == principal
    with pytest.raises(MissingScope):
        require_scope(principal, Scope.ADMIN)


def test_a_key_the_authorizer_refused_never_becomes_a_principal() -> None:
    with pytest.raises(Unauthenticated, match="Incorrect API key provided: API key key_1 is revoked"):
        principal_from_authorizer(denial_context("invalid_api_key", "API key key_1 is revoked"))
    with pytest.raises(TenantSuspended.__mro__[1]) as suspended:  # Forbidden
        principal_from_authorizer(denial_context("tenant_suspended", "tenant 'acme' is suspended"))
    assert http_error(suspended.value).status == 403
