from __future__ import annotations

import pytest

from stratus_core.errors import (
    Conflict,
    Limit,
    LimitExceeded,
    MissingScope,
    NotFound,
    RequestExceedsLimit,
    TenantSuspended,
    Unauthenticated,
    Unavailable,
)
from stratus_core.http.auth import bearer_key, principal_from_authorizer, require_scope
from stratus_core.http.errors import http_error, route_not_found, validation_error
from stratus_core.keys import Principal, Scope


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (NotFound("tenant", "acme"), 404, "invalid_request_error", "not_found"),
        (NotFound("model", "gpt-9"), 404, "invalid_request_error", "model_not_found"),
        (Conflict("exists"), 409, "invalid_request_error", "conflict"),
        (RequestExceedsLimit(Limit.TOKENS_PER_MINUTE, 900, 500), 400, "invalid_request_error", "tokens_per_minute"),
        (Unauthenticated("unknown API key"), 401, "invalid_request_error", "invalid_api_key"),
        (TenantSuspended("acme"), 403, "permission_error", "tenant_suspended"),
        (MissingScope("admin"), 403, "permission_error", "insufficient_scope"),
        (LimitExceeded(Limit.REQUESTS_PER_MINUTE, 17, "x"), 429, "rate_limit_exceeded", "requests_per_minute"),
        (LimitExceeded(Limit.TOKENS_PER_MONTH, 86_400, "x"), 429, "insufficient_quota", "tokens_per_month"),
        (Unavailable("busy"), 503, "server_error", "unavailable"),
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


def test_rate_limits_say_when_to_retry() -> None:
    assert http_error(LimitExceeded(Limit.TOKENS_PER_MINUTE, 23, "x")).headers == {"Retry-After": "23"}


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
