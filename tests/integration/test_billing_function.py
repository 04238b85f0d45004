"""The scheduled billing function writes each tenant's invoice (JSON and CSV) to the data bucket."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from billing import app as billing_app
from stratus_core.keys import IssuedKey
from tests.helpers import FakeContext, bill

MODEL = "smollm2-135m-instruct"


def test_schedule_invoices_the_month_that_just_ended(
    cloud: dict[str, str],
    make_tenant: Callable[..., IssuedKey],
    load_event: Callable[[str], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_tenant("acme", tokens_per_minute=10**7, tokens_per_month=10**9)
    make_tenant("globex")
    bill("acme", 1_000_000, 2_000_000, at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC))
    bill("acme", 3_000_000, 1, at=datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
    monkeypatch.setattr(billing_app, "utcnow", lambda: datetime(2026, 11, 1, 2, 0, tzinfo=UTC))

    result = billing_app.lambda_handler(load_event("billing_schedule"), FakeContext())

    assert result == {"month": "2026-10", "invoices": 2, "amount_due": "0.35"}
    s3 = boto3.client("s3")
    bucket = cloud["DATA_BUCKET"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="invoices/")["Contents"])
    assert keys == [
        "invoices/2026-10/acme.csv",
        "invoices/2026-10/acme.json",
        "invoices/2026-10/globex.csv",
        "invoices/2026-10/globex.json",
    ]
    invoice = json.loads(s3.get_object(Bucket=bucket, Key="invoices/2026-10/acme.json")["Body"].read())
    assert invoice["subtotal"] == "0.35"
    assert invoice["lines"][0]["prompt_tokens"] == 1_000_000
    assert invoice["lines"][0]["completion_tokens"] == 2_000_000
    csv_text = s3.get_object(Bucket=bucket, Key="invoices/2026-10/acme.csv")["Body"].read().decode()
    assert csv_text.splitlines()[-1] == "inv_acme_202610,acme,2026-10,USD,AMOUNT DUE,,,,,,,0.35"


def test_a_month_can_be_rebilled_on_demand(cloud: dict[str, str], make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme", tokens_per_minute=10**7, tokens_per_month=10**9)
    bill("acme", 3_000_000, 1, at=datetime(2026, 11, 3, 12, 0, tzinfo=UTC))

    result = billing_app.lambda_handler({"month": "2026-11"}, FakeContext())

    assert result == {"month": "2026-11", "invoices": 1, "amount_due": "0.15"}
