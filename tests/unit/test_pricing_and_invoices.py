from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from stratus_core.billing import BillingService, invoice_csv, invoice_lines
from stratus_core.errors import NotFound
from stratus_core.pricing import ModelPrice, PriceCatalog
from stratus_core.tenants import Tenant, TenantLimits, TenantStatus
from stratus_core.usage import UsageRow

CATALOG = PriceCatalog(
    models={
        "small": ModelPrice(prompt_per_million=Decimal("0.05"), completion_per_million=Decimal("0.15")),
        "large": ModelPrice(prompt_per_million=Decimal("3"), completion_per_million=Decimal("15")),
    }
)


def row(day: str, model: str, requests: int, prompt: int, completion: int) -> UsageRow:
    cost = CATALOG.cost(model, prompt, completion)
    return UsageRow(
        date=date.fromisoformat(day),
        model=model,
        requests=requests,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_cost=cost.prompt_cost,
        completion_cost=cost.completion_cost,
        cost=cost.total,
    )


def test_cost_is_exact_to_the_token() -> None:
    cost = CATALOG.cost("small", 1, 1)
    assert cost.prompt_cost == Decimal("0.00000005")
    assert cost.completion_cost == Decimal("0.00000015")
    assert CATALOG.cost("large", 1_234_567, 7).total == Decimal("3.703806")


def test_a_tier_scales_its_lanes_price_exactly_and_other_lanes_pay_in_full() -> None:
    tiered = CATALOG.model_copy(update={"tiers": {"batch": Decimal("0.5"), "flex": Decimal("0.25")}})

    # large: 1,234,567 prompt tokens at $3/M and 7 completion tokens at $15/M = $3.703806 in full
    assert tiered.cost("large", 1_234_567, 7).total == Decimal("3.703806")
    assert tiered.cost("large", 1_234_567, 7, "interactive").total == Decimal("3.703806")
    assert tiered.cost("large", 1_234_567, 7, "batch").total == Decimal("1.851903")
    assert tiered.cost("large", 1_234_567, 7, "flex").total == Decimal("0.9259515")
    # one small prompt token at a quarter of $0.05/M: exact, not rounded to a representable float
    assert tiered.cost("small", 1, 0, "flex").prompt_cost == Decimal("0.0000000125")


def test_the_shipped_catalog_halves_batch_and_flex_and_refuses_a_multiplier_above_one() -> None:
    from pydantic import ValidationError

    from stratus_core.pricing import load_catalog

    assert load_catalog().tiers == {"batch": Decimal("0.5"), "flex": Decimal("0.5")}
    with pytest.raises(ValidationError, match="between 0 and 1"):
        PriceCatalog.model_validate({"models": {}, "tiers": {"flex": "1.5"}})
    with pytest.raises(ValidationError):
        PriceCatalog.model_validate({"models": {}, "tiers": {"priority": "0.5"}})


def test_unknown_model_has_no_price() -> None:
    with pytest.raises(NotFound):
        CATALOG.cost("missing", 1, 1)


class FixedUsage:
    def __init__(self, rows: list[UsageRow]) -> None:
        self.rows = rows

    def daily(self, tenant_id: str, start: date, end: date) -> list[UsageRow]:
        return [r for r in self.rows if start <= r.date <= end]


class OneTenant:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant

    def list(self) -> list[Tenant]:
        return [self.tenant]


class NoneHeld:
    def tenants_holding(self, start: datetime, end: datetime) -> set[str]:
        return set()


ROWS = [
    row("2026-10-31", "small", 1, 999, 999),  # the month before: not on the invoice
    row("2026-11-01", "small", 3, 1_000, 2_000),
    row("2026-11-02", "small", 1, 333, 1),
    row("2026-11-02", "large", 2, 10_000, 5_000),
    row("2026-11-30", "large", 1, 1, 1),
    row("2026-12-01", "large", 1, 999, 999),  # the month after
]


def test_invoice_sums_a_month_per_model_exactly() -> None:
    tenant = Tenant(
        tenant_id="acme",
        name="Acme",
        status=TenantStatus.ACTIVE,
        limits=TenantLimits(),
        created_at="2026-01-01T00:00:00+00:00",  # type: ignore[arg-type]
        updated_at="2026-01-01T00:00:00+00:00",  # type: ignore[arg-type]
    )
    billing = BillingService(OneTenant(tenant), FixedUsage(ROWS), NoneHeld(), "USD")  # type: ignore[arg-type]

    invoice = billing.invoice(tenant, "2026-11")

    assert [line.model for line in invoice.lines] == ["large", "small"]
    large, small = invoice.lines
    assert (large.requests, large.prompt_tokens, large.completion_tokens) == (3, 10_001, 5_001)
    assert large.cost == Decimal("0.030003") + Decimal("0.075015")
    assert (small.requests, small.prompt_tokens, small.completion_tokens) == (4, 1_333, 2_001)
    assert small.cost == Decimal("0.00006665") + Decimal("0.00030015")
    assert invoice.subtotal == Decimal("0.1053848")
    assert invoice.amount_due == Decimal("0.11")
    assert invoice.total_tokens == 10_001 + 5_001 + 1_333 + 2_001


def test_invoice_csv_has_a_row_per_model_and_the_totals() -> None:
    tenant = Tenant(
        tenant_id="acme",
        name="Acme",
        status=TenantStatus.ACTIVE,
        limits=TenantLimits(),
        created_at="2026-01-01T00:00:00+00:00",  # type: ignore[arg-type]
        updated_at="2026-01-01T00:00:00+00:00",  # type: ignore[arg-type]
    )
    invoice = BillingService(OneTenant(tenant), FixedUsage(ROWS), NoneHeld(), "USD").invoice(tenant, "2026-11")  # type: ignore[arg-type]

    lines = invoice_csv(invoice).splitlines()

    assert lines[0].startswith("invoice_id,tenant_id,month,currency,model,requests")
    assert lines[1] == "inv_acme_202611,acme,2026-11,USD,large,3,10001,5001,15002,0.030003,0.075015,0.105018"
    assert lines[2] == "inv_acme_202611,acme,2026-11,USD,small,4,1333,2001,3334,0.00006665,0.00030015,0.0003668"
    assert lines[3] == "inv_acme_202611,acme,2026-11,USD,TOTAL,7,,,18336,,,0.1053848"
    assert lines[4] == "inv_acme_202611,acme,2026-11,USD,AMOUNT DUE,,,,,,,0.11"


def test_lines_of_no_usage_are_empty() -> None:
    assert invoice_lines([]) == []
