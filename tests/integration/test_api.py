"""The API function on moto, driven with API Gateway's HTTP API v2 events."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.key_store import INDEX_MISS_BACKOFF_SECONDS, KEY_ID_INDEX
from stratus_core.errors import Unauthenticated
from stratus_core.keys import IssuedKey, Principal, Scope
from stratus_core.services import Services
from tests.helpers import ApiResponse, bill, principal_of

Api = Callable[..., ApiResponse]
MODEL = "smollm2-135m-instruct"


def assert_openai_error(response: ApiResponse, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert set(response.body) == {"error"}
    assert set(response.body["error"]) == {"message", "type", "param", "code"}
    assert response.body["error"]["code"] == code


def test_admin_creates_a_tenant_and_a_second_create_conflicts(call_api: Api) -> None:
    created = call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Acme", "limits": {"max_in_flight": 4}})

    assert created.status == 201
    assert created.body["tenant_id"] == "acme"
    assert created.body["status"] == "active"
    assert created.body["limits"] == {
        "requests_per_minute": 60,
        "tokens_per_minute": 100_000,
        "tokens_per_month": 10_000_000,
        "max_in_flight": 4,
    }
    assert_openai_error(call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Again"}), 409, "conflict")
    assert [t["tenant_id"] for t in call_api("GET", "/admin/tenants").body["data"]] == ["acme"]


def test_patch_changes_only_what_it_names(call_api: Api) -> None:
    call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Acme", "limits": {"max_in_flight": 4}})

    patched = call_api("PATCH", "/admin/tenants/acme", {"status": "suspended", "limits": {"tokens_per_minute": 5}})

    assert patched.status == 200
    assert patched.body["status"] == "suspended"
    assert patched.body["name"] == "Acme"
    assert patched.body["limits"]["tokens_per_minute"] == 5
    assert patched.body["limits"]["max_in_flight"] == 4
    assert call_api("GET", "/admin/tenants/acme").body == patched.body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tenant_id": "Acme Corp!", "name": "x"}, "tenant_id"),
        ({"tenant_id": "acme"}, "name"),
        ({"tenant_id": "acme", "name": "x", "limits": {"max_in_flight": -1}}, "limits.max_in_flight"),
        ({"tenant_id": "acme", "name": "x", "tenant": "evil"}, "tenant"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(call_api: Api, body: dict[str, object], param: str) -> None:
    response = call_api("POST", "/admin/tenants", body)
    assert_openai_error(response, 400, "invalid_value")
    assert response.body["error"]["param"] == param


def test_a_body_that_is_not_json_is_400(call_api: Api) -> None:
    assert call_api("POST", "/admin/tenants", raw_body="{not json").status == 400


def test_unknown_things_are_openai_404s(call_api: Api) -> None:
    assert_openai_error(call_api("GET", "/admin/tenants/ghost"), 404, "not_found")
    assert_openai_error(call_api("GET", "/v1/nothing-here"), 404, "unknown_url")
    assert_openai_error(call_api("DELETE", "/admin/keys/key_0123456789abcdef"), 404, "not_found")


def test_issued_key_is_shown_once_and_listed_without_secret(call_api: Api) -> None:
    call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Acme"})

    issued = call_api("POST", "/admin/tenants/acme/keys", {"scopes": ["inference", "usage"]})

    assert issued.status == 201
    api_key = issued.body["api_key"]
    assert api_key.startswith("sk-") and len(api_key) == 46
    assert issued.body["prefix"] == api_key[:9]
    listed = call_api("GET", "/admin/tenants/acme/keys")
    assert listed.status == 200
    (key,) = listed.body["data"]
    assert key["key_id"] == issued.body["key_id"]
    assert key["status"] == "active"
    assert "api_key" not in key
    assert api_key not in str(listed.body)


def test_revoke_and_rotate_through_the_api(call_api: Api) -> None:
    call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Acme"})
    first = call_api("POST", "/admin/tenants/acme/keys", {"scopes": ["inference"]}).body

    rotated = call_api("POST", f"/admin/keys/{first['key_id']}/rotate", {"grace_period_seconds": 0})
    assert rotated.status == 201
    assert rotated.body["key_id"] != first["key_id"]
    assert_openai_error(call_api("POST", f"/admin/keys/{first['key_id']}/rotate"), 409, "conflict")

    revoked = call_api("DELETE", f"/admin/keys/{rotated.body['key_id']}")
    assert revoked.status == 200
    assert revoked.body["status"] == "revoked"
    statuses = {k["key_id"]: k["status"] for k in call_api("GET", "/admin/tenants/acme/keys").body["data"]}
    assert statuses == {first["key_id"]: "expired", rotated.body["key_id"]: "revoked"}


@pytest.fixture
def key_index_reads(monkeypatch: pytest.MonkeyPatch, cloud: dict[str, str]) -> list[str]:
    """`KeyIdIndex` as AWS has it right after a write: a GSI is eventually consistent, and moto's is
    not, so its first read answers no items (the key is in the table, not in the index yet).
    Returns the key ids the index was asked for, one per read."""
    client = aws.dynamodb()
    query = client.query
    reads: list[str] = []

    def lagging_query(**kwargs: Any) -> Any:
        if kwargs.get("IndexName") != KEY_ID_INDEX:
            return query(**kwargs)
        reads.append(kwargs["ExpressionAttributeValues"][":key_id"]["S"])
        answer = query(**kwargs)
        return {**answer, "Items": [], "Count": 0} if len(reads) == 1 else answer

    monkeypatch.setattr(client, "query", lagging_query)
    return reads


def test_a_key_revoked_right_after_it_was_issued_is_revoked_not_404(call_api: Api, key_index_reads: list[str]) -> None:
    # GIVEN a key just issued, not yet in the key-id index
    call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Acme"})
    issued = call_api("POST", "/admin/tenants/acme/keys", {"scopes": ["inference"]}).body

    # WHEN the operator revokes it at once
    revoked = call_api("DELETE", f"/admin/keys/{issued['key_id']}")

    # THEN the index is read again until it has the key, and the key is revoked
    assert revoked.status == 200, revoked.body
    assert (revoked.body["key_id"], revoked.body["status"]) == (issued["key_id"], "revoked")
    assert key_index_reads == [issued["key_id"], issued["key_id"]]
    with pytest.raises(Unauthenticated, match="revoked"):
        Services().keys.authenticate(issued["api_key"])


def test_an_unknown_key_id_is_404_after_a_bounded_wait(call_api: Api, key_index_reads: list[str]) -> None:
    started = time.monotonic()
    missing = call_api("DELETE", "/admin/keys/key_0000000000000000")
    waited = time.monotonic() - started

    assert_openai_error(missing, 404, "not_found")
    assert key_index_reads == ["key_0000000000000000"] * (1 + len(INDEX_MISS_BACKOFF_SECONDS))
    assert sum(INDEX_MISS_BACKOFF_SECONDS) <= waited < sum(INDEX_MISS_BACKOFF_SECONDS) + 5


def test_key_expiry_must_be_future_and_zoned(call_api: Api) -> None:
    call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Acme"})
    past = call_api("POST", "/admin/tenants/acme/keys", {"scopes": ["usage"], "expires_at": "2020-01-01T00:00:00Z"})
    assert_openai_error(past, 400, "invalid_value")
    assert past.body["error"]["param"] == "expires_at"
    naive = call_api("POST", "/admin/tenants/acme/keys", {"scopes": ["usage"], "expires_at": "2999-01-01T00:00:00"})
    assert_openai_error(naive, 400, "invalid_value")


def test_admin_routes_refuse_keys_without_the_admin_scope(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    tenant_key = make_tenant("acme", scopes=[Scope.INFERENCE, Scope.USAGE, Scope.BATCH])
    caller = principal_of(tenant_key)

    for method, path in [
        ("GET", "/admin/tenants"),
        ("POST", "/admin/tenants"),
        ("GET", "/admin/tenants/acme"),
        ("PATCH", "/admin/tenants/acme"),
        ("POST", "/admin/tenants/acme/keys"),
        ("GET", "/admin/tenants/acme/keys"),
        ("DELETE", f"/admin/keys/{tenant_key.key_id}"),
        ("POST", f"/admin/keys/{tenant_key.key_id}/rotate"),
        ("GET", "/admin/tenants/acme/usage"),
        ("GET", "/admin/invoices/2026-11"),
    ]:
        body = {"tenant_id": "x", "name": "x"} if path == "/admin/tenants" and method == "POST" else {}
        if path.endswith("/keys") and method == "POST":
            body = {"scopes": ["admin"]}
        response = call_api(method, path, body, principal=caller)
        assert_openai_error(response, 403, "insufficient_scope")


def test_usage_needs_the_usage_scope(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    key = make_tenant("acme", scopes=[Scope.INFERENCE])
    assert_openai_error(call_api("GET", "/v1/usage", principal=principal_of(key)), 403, "insufficient_scope")


def test_a_request_without_authorizer_context_is_401(call_api: Api) -> None:
    assert_openai_error(call_api("GET", "/v1/models", principal=None), 401, "invalid_api_key")


def test_models_lists_what_the_tenant_may_use(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    caller = principal_of(make_tenant("acme", scopes=[Scope.INFERENCE]))

    listed = call_api("GET", "/v1/models", principal=caller)

    assert listed.status == 200
    assert listed.body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in listed.body["data"]] == [(MODEL, "model", "stratus")]
    call_api("PATCH", "/admin/tenants/acme", {"allowed_models": []})
    assert call_api("GET", "/v1/models", principal=caller).body["data"] == []


def test_usage_shows_only_the_callers_own_tenant(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    acme = principal_of(make_tenant("acme"))
    globex = principal_of(make_tenant("globex"))
    for tenant, usage in [("acme", (100, 20)), ("acme", (7, 3)), ("globex", (5000, 5000))]:
        bill(tenant, *usage)
    today = datetime.now(UTC).date().isoformat()

    # The query cannot name another tenant: the tenant comes from the key only.
    response = call_api("GET", "/v1/usage", principal=acme, query={"start": today, "end": today, "tenant_id": "globex"})

    assert response.status == 200
    assert response.body["tenant_id"] == "acme"
    assert response.body["data"] == [
        {
            "date": today,
            "model": MODEL,
            "requests": 2,
            "prompt_tokens": 107,
            "completion_tokens": 23,
            "total_tokens": 130,
            "prompt_cost": "0.00000535",
            "completion_cost": "0.00000345",
            "cost": "0.0000088",
        }
    ]
    assert response.body["totals"]["total_tokens"] == 130
    assert Decimal(response.body["totals"]["cost"]) == Decimal("0.0000088")
    assert call_api("GET", "/v1/usage", principal=globex).body["totals"]["total_tokens"] == 10_000


def test_usage_range_is_validated(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    caller = principal_of(make_tenant("acme"))
    backwards = call_api("GET", "/v1/usage", principal=caller, query={"start": "2026-11-02", "end": "2026-11-01"})
    assert_openai_error(backwards, 400, "invalid_value")
    assert backwards.body["error"]["param"] == "end"
    not_a_date = call_api("GET", "/v1/usage", principal=caller, query={"start": "yesterday"})
    assert_openai_error(not_a_date, 400, "invalid_value")
    assert not_a_date.body["error"]["param"] == "start"


def test_admin_sees_every_tenants_invoice_for_a_month(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    make_tenant("acme")
    make_tenant("globex")
    bill("acme", 1_000_000, 1_000_000)
    month = datetime.now(UTC).strftime("%Y-%m")

    invoices = call_api("GET", f"/admin/invoices/{month}")

    assert invoices.status == 200
    by_tenant = {invoice["tenant_id"]: invoice for invoice in invoices.body["data"]}
    assert set(by_tenant) == {"acme"}  # globex used nothing: no invoice
    assert by_tenant["acme"]["amount_due"] == "0.20"
    assert by_tenant["acme"]["lines"][0]["total_tokens"] == 2_000_000
    assert Decimal(invoices.body["amount_due"]) == Decimal("0.20")
    assert_openai_error(call_api("GET", "/admin/invoices/2026-13"), 400, "invalid_value")
    acme_usage = call_api("GET", "/admin/tenants/acme/usage")
    assert acme_usage.body["totals"]["total_tokens"] == 2_000_000


def test_principal_not_in_tenants_table_cannot_read_models(call_api: Api) -> None:
    ghost = Principal(tenant_id="ghost", key_id="key_1", scopes=frozenset({Scope.INFERENCE}))
    assert_openai_error(call_api("GET", "/v1/models", principal=ghost), 404, "not_found")
