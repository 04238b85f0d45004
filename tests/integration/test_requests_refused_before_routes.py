"""What the API refuses before any route looks at the body: oversized bodies, missing scopes,
invalid JSON and months."""

from __future__ import annotations

from collections.abc import Callable

from stratus_core.keys import IssuedKey, Scope
from tests.helpers import ApiResponse, principal_of

Api = Callable[..., ApiResponse]
MODEL = "smollm2-135m-instruct"


def test_an_oversized_body_is_413_even_when_it_is_not_valid(
    call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    caller = principal_of(make_tenant("acme"))
    response = call_api("POST", "/v1/chat/completions", raw_body="x" * 1_100_000, principal=caller)
    assert (response.status, response.body["error"]["code"]) == (413, "payload_too_large")


def test_admin_routes_refuse_a_tenant_key_before_looking_at_the_body(
    call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    caller = principal_of(make_tenant("acme"))
    response = call_api("POST", "/admin/tenants", {"tenant_id": "NOT VALID"}, principal=caller)
    assert (response.status, response.body["error"]["code"]) == (403, "insufficient_scope")
    anonymous = call_api("POST", "/admin/tenants", {"tenant_id": "NOT VALID"}, principal=None)
    assert anonymous.status == 401


def test_reading_a_job_needs_the_inference_scope(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    caller = principal_of(make_tenant("acme", scopes=[Scope.USAGE]))
    response = call_api("GET", "/v1/jobs/job_" + "0" * 24, principal=caller)
    assert response.status == 403


def test_month_zero_is_a_400_not_a_500(call_api: Api) -> None:
    assert call_api("GET", "/admin/invoices/0000-01").status == 400


def test_invalid_json_names_no_field(call_api: Api) -> None:
    response = call_api("POST", "/admin/tenants", raw_body="{nope")
    assert response.status == 400
    assert (response.body["error"]["code"], response.body["error"]["param"]) == ("invalid_json", None)
