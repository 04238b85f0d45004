"""The daily billing function writes each tenant's final invoice (JSON and CSV) to the data bucket,
once every reservation the tenant was admitted in the month has ended, and never rewrites it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from billing import app as billing_app
from stratus_core.batches.models import COMPLETION_WINDOW
from stratus_core.billing import invoice_csv
from stratus_core.clock import month_bounds
from stratus_core.contract import Usage
from stratus_core.jobs import Job
from stratus_core.keys import IssuedKey
from stratus_core.services import Services
from tests.helpers import FakeContext, bill, completion_request

MODEL = "smollm2-135m-instruct"
OCTOBER_FIRST = datetime(2026, 10, 1, tzinfo=UTC)


def run_billing_at(
    at: datetime, monkeypatch: pytest.MonkeyPatch, event: dict[str, Any] | None = None
) -> dict[str, Any]:
    monkeypatch.setattr(billing_app, "services", Services(clock=lambda: at))
    return billing_app.lambda_handler(event or {}, FakeContext())


def batch_request(tenant_id: str, at: datetime) -> Job:
    """A batch-lane request admitted at `at`, still running (its window is 24 h)."""
    request = completion_request(tenant_id, MODEL)
    return Services(clock=lambda: at).intake.accept(request, "batch", deadline=at + COMPLETION_WINDOW)


def stored_invoices(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="invoices/").get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_schedule_invoices_the_month_that_just_ended(
    cloud: dict[str, str],
    make_tenant: Callable[..., IssuedKey],
    load_event: Callable[[str], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_tenant("acme", tokens_per_minute=10**7, tokens_per_month=10**9, created=OCTOBER_FIRST)
    make_tenant("globex", created=OCTOBER_FIRST)
    bill("acme", 1_000_000, 2_000_000, at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC))
    bill("acme", 3_000_000, 1, at=datetime(2026, 11, 1, 0, 0, tzinfo=UTC))

    result = run_billing_at(datetime(2026, 11, 1, 2, 0, tzinfo=UTC), monkeypatch, load_event("billing_schedule"))

    # globex used nothing in October: its month is closed with no invoice
    assert result == {
        "month": "2026-10",
        "invoices": 1,
        "amount_due": "0.35",
        "final": 0,
        "nothing_due": 1,
        "open": [],
    }
    s3 = boto3.client("s3")
    bucket = cloud["DATA_BUCKET"]
    assert sorted(stored_invoices(bucket)) == ["invoices/2026-10/acme.csv", "invoices/2026-10/acme.json"]
    invoice = json.loads(s3.get_object(Bucket=bucket, Key="invoices/2026-10/acme.json")["Body"].read())
    assert invoice["subtotal"] == "0.35"
    assert invoice["lines"][0]["prompt_tokens"] == 1_000_000
    assert invoice["lines"][0]["completion_tokens"] == 2_000_000
    csv_text = s3.get_object(Bucket=bucket, Key="invoices/2026-10/acme.csv")["Body"].read().decode()
    assert csv_text.splitlines()[-1] == "inv_acme_202610,acme,2026-10,USD,AMOUNT DUE,,,,,,,0.35"


def test_a_request_settled_after_the_billing_run_is_on_its_months_invoice_written_once(
    cloud: dict[str, str],
    make_tenant: Callable[..., IssuedKey],
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Admitted at October's last instant, settled on November 1st after the 02:00 run: the run
    leaves acme's October open, the next day's run writes it, and the S3 invoices' tokens are the
    tokens billed in the usage table."""
    make_tenant("acme", tokens_per_minute=10**7, tokens_per_month=10**9, created=OCTOBER_FIRST)
    make_tenant("globex", tokens_per_minute=10**7, tokens_per_month=10**9, created=OCTOBER_FIRST)
    bill("acme", 1_000, 2_000, at=datetime(2026, 10, 30, 12, 0, tzinfo=UTC))
    bill("globex", 300, 400, at=datetime(2026, 10, 31, 8, 0, tzinfo=UTC))
    late = batch_request("acme", datetime(2026, 10, 31, 23, 59, 59, 999_999, tzinfo=UTC))
    batch_request("globex", datetime(2026, 11, 1, 0, 0, tzinfo=UTC))  # November's: holds nothing of October

    first = run_billing_at(datetime(2026, 11, 1, 2, 0, tzinfo=UTC), monkeypatch)

    bucket = cloud["DATA_BUCKET"]
    assert sorted(stored_invoices(bucket)) == ["invoices/2026-10/globex.csv", "invoices/2026-10/globex.json"]
    assert (first["invoices"], first["final"], first["open"]) == (1, 0, ["acme"])

    settled_at = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert Services(clock=lambda: settled_at).settlement.complete(late, Usage.of(50_000, 7), {"object": "x"})
    second = run_billing_at(datetime(2026, 11, 2, 2, 0, tzinfo=UTC), monkeypatch)
    after_second = stored_invoices(bucket)
    third = run_billing_at(datetime(2026, 11, 3, 2, 0, tzinfo=UTC), monkeypatch)

    assert (second["invoices"], second["final"], second["open"]) == (1, 1, [])
    assert (third["invoices"], third["final"], third["open"]) == (0, 2, [])
    assert stored_invoices(bucket) == after_second  # byte for byte: nothing rewritten
    assert sorted(after_second) == [
        "invoices/2026-10/acme.csv",
        "invoices/2026-10/acme.json",
        "invoices/2026-10/globex.csv",
        "invoices/2026-10/globex.json",
    ]
    for tenant_id, expected in (("acme", 53_007), ("globex", 700)):
        invoice = json.loads(after_second[f"invoices/2026-10/{tenant_id}.json"])
        billed = services.usage.report(tenant_id, *month_bounds("2026-10")).totals.total_tokens
        assert invoice["total_tokens"] == billed == expected


def test_a_tenant_created_after_the_month_gets_no_invoice_for_it_and_one_with_no_usage_gets_none(
    cloud: dict[str, str], make_tenant: Callable[..., IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only tenants with usage in a month are invoiced for it: none for a month before a tenant
    existed, none ($0) for a month it used nothing in; both months are closed all the same."""
    make_tenant("acme", tokens_per_minute=10**7, tokens_per_month=10**9, created=OCTOBER_FIRST)
    make_tenant("initech", created=datetime(2026, 11, 5, tzinfo=UTC))
    make_tenant("idle", created=OCTOBER_FIRST)
    bill("acme", 1_000, 2_000, at=datetime(2026, 10, 30, 12, 0, tzinfo=UTC))
    bill("initech", 5_000, 1, at=datetime(2026, 11, 6, 12, 0, tzinfo=UTC))

    october = run_billing_at(datetime(2026, 11, 6, 2, 0, tzinfo=UTC), monkeypatch, {"month": "2026-10"})
    november = run_billing_at(datetime(2026, 12, 1, 2, 0, tzinfo=UTC), monkeypatch)

    assert (october["invoices"], october["nothing_due"], october["open"]) == (1, 1, [])  # acme; idle
    assert (november["invoices"], november["nothing_due"], november["open"]) == (1, 2, [])  # initech; acme, idle
    assert sorted(stored_invoices(cloud["DATA_BUCKET"])) == [
        "invoices/2026-10/acme.csv",
        "invoices/2026-10/acme.json",
        "invoices/2026-11/initech.csv",
        "invoices/2026-11/initech.json",
    ]
    listed = Services(clock=lambda: datetime(2026, 11, 6, 3, 0, tzinfo=UTC)).billing.month("2026-10")
    assert [invoice.tenant_id for invoice in listed.data] == ["acme"]


def test_a_tenant_holding_a_reservation_past_every_deadline_fails_the_run_and_gets_no_invoice(
    cloud: dict[str, str], make_tenant: Callable[..., IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tenant("acme", tokens_per_minute=10**7, tokens_per_month=10**9, created=OCTOBER_FIRST)
    batch_request("acme", datetime(2026, 10, 31, 23, 0, tzinfo=UTC))

    with pytest.raises(billing_app.InvoicesOverdue):
        run_billing_at(datetime(2026, 11, 2, 2, 0, tzinfo=UTC), monkeypatch)

    assert stored_invoices(cloud["DATA_BUCKET"]) == {}


def test_a_month_is_closed_on_demand_once_and_left_as_written(
    cloud: dict[str, str], make_tenant: Callable[..., IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tenant("acme", tokens_per_minute=10**7, tokens_per_month=10**9, created=OCTOBER_FIRST)
    bill("acme", 3_000_000, 1, at=datetime(2026, 11, 3, 12, 0, tzinfo=UTC))
    running = run_billing_at(datetime(2026, 11, 20, tzinfo=UTC), monkeypatch, {"month": "2026-11"})

    result = run_billing_at(datetime(2026, 12, 5, tzinfo=UTC), monkeypatch, {"month": "2026-11"})
    written = stored_invoices(cloud["DATA_BUCKET"])
    again = run_billing_at(datetime(2026, 12, 6, tzinfo=UTC), monkeypatch, {"month": "2026-11"})

    assert running == {
        "month": "2026-11",
        "invoices": 0,
        "amount_due": "0",
        "final": 0,
        "nothing_due": 0,
        "open": ["acme"],
    }
    assert result == {"month": "2026-11", "invoices": 1, "amount_due": "0.15", "final": 0, "nothing_due": 0, "open": []}
    assert again == {"month": "2026-11", "invoices": 0, "amount_due": "0", "final": 1, "nothing_due": 0, "open": []}
    assert stored_invoices(cloud["DATA_BUCKET"]) == written


def test_the_archive_refuses_to_write_an_invoice_under_a_key_that_holds_one(
    cloud: dict[str, str], make_tenant: Callable[..., IssuedKey], services: Services
) -> None:
    """S3's conditional put (`If-None-Match: *`): a second run racing the first changes nothing."""
    make_tenant("acme", tokens_per_minute=10**7, tokens_per_month=10**9)
    tenant = services.tenants.get("acme")
    first = Services(clock=lambda: datetime(2026, 12, 1, 2, 0, tzinfo=UTC)).billing.invoice(tenant, "2026-11")
    other = first.model_copy(update={"tenant_name": "Renamed", "generated_at": datetime(2026, 12, 2, tzinfo=UTC)})

    assert services.invoice_archive.put(first, invoice_csv(first)) is True
    written = stored_invoices(cloud["DATA_BUCKET"])
    assert services.invoice_archive.put(other, invoice_csv(other) + "changed\n") is False

    assert stored_invoices(cloud["DATA_BUCKET"]) == written
    assert services.invoice_archive.finalized("2026-11") == {"acme"}
    assert services.invoice_archive.finalized("2026-10") == set()
