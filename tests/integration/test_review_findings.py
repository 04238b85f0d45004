"""Behaviours a review found missing: refusals before parsing, orphaned reservations, scopes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from stratus_core import wiring
from stratus_core.admission import AdmissionService
from stratus_core.config import get_settings
from stratus_core.dynamo.admission_store import DynamoAdmissionStore
from stratus_core.keys import IssuedKey, Scope
from stratus_core.pricing import load_catalog
from sweeper.app import job_is_live
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


def test_a_reservation_whose_job_was_never_recorded_is_released_by_the_sweep(
    make_tenant: Callable[..., IssuedKey],
) -> None:
    # GIVEN an admitted request whose API function died before writing its job row
    make_tenant("acme", max_in_flight=1)
    wiring.admission().reserve("acme", "job_" + "a" * 24, MODEL, prompt_tokens_bound=100, max_tokens=100)
    assert wiring.tenants().get("acme").in_flight == 1
    settings = get_settings()
    store = DynamoAdmissionStore(settings.usage_table, settings.tenants_table)
    soon = AdmissionService(wiring.tenant_store(), store, load_catalog(), clock=lambda: datetime.now(UTC))
    assert soon.release_orphans(job_is_live, timedelta(minutes=15)) == 0  # too recent: its job may still come

    later = AdmissionService(
        wiring.tenant_store(), store, load_catalog(), clock=lambda: datetime.now(UTC) + timedelta(hours=1)
    )

    # WHEN the sweep runs well after the grace period
    assert later.release_orphans(job_is_live, timedelta(minutes=15)) == 1

    # THEN the slot and the tokens are back, once
    assert wiring.tenants().get("acme").in_flight == 0
    assert later.release_orphans(job_is_live, timedelta(minutes=15)) == 0


def test_a_request_that_cannot_be_queued_fails_and_gives_its_slot_back(
    call_api: Api, make_tenant: Callable[..., IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratus_core.messaging import SqsQueue

    caller = principal_of(make_tenant("acme", max_in_flight=1))

    def broken(self: SqsQueue, message: object) -> None:
        raise ConnectionError("SQS unreachable")

    monkeypatch.setattr(SqsQueue, "send", broken)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    response = call_api("POST", "/v1/chat/completions", chat, principal=caller, headers={"prefer": "wait=0"})

    assert response.status == 500
    assert response.body["error"]["message"] == "internal error"
    assert wiring.tenants().get("acme").in_flight == 0
