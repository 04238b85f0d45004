"""Invoices: one per tenant and month, from the settled usage, in JSON and CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from pydantic import BaseModel, Field

from stratus_core.clock import month_bounds, utcnow
from stratus_core.pricing import Money, plain_decimal
from stratus_core.tenants import Tenant, TenantStore
from stratus_core.usage import UsageRow, UsageStore

CENT = Decimal("0.01")
MONTH_PATTERN = r"^([1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])-(0[1-9]|1[0-2])$"


class InvoiceLine(BaseModel):
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_cost: Money
    completion_cost: Money
    cost: Money


class Invoice(BaseModel):
    object: str = "invoice"
    invoice_id: str
    tenant_id: str
    tenant_name: str
    month: str = Field(pattern=MONTH_PATTERN)
    currency: str
    lines: list[InvoiceLine]
    total_tokens: int
    subtotal: Money = Field(description="Exact sum of the lines' costs.")
    amount_due: Decimal = Field(description="The subtotal rounded half-up to the cent.")
    generated_at: datetime


class MonthlyInvoices(BaseModel):
    object: str = "list"
    month: str
    currency: str
    data: list[Invoice]
    amount_due: Decimal


def invoice_lines(rows: list[UsageRow]) -> list[InvoiceLine]:
    by_model: dict[str, list[UsageRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    return [
        InvoiceLine(
            model=model,
            requests=sum(row.requests for row in group),
            prompt_tokens=sum(row.prompt_tokens for row in group),
            completion_tokens=sum(row.completion_tokens for row in group),
            total_tokens=sum(row.total_tokens for row in group),
            prompt_cost=sum((row.prompt_cost for row in group), Decimal(0)),
            completion_cost=sum((row.completion_cost for row in group), Decimal(0)),
            cost=sum((row.cost for row in group), Decimal(0)),
        )
        for model, group in sorted(by_model.items())
    ]


def invoice_csv(invoice: Invoice) -> str:
    """One row per model, then the exact total and the amount due; amounts as exact decimals."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*_CSV_HEAD, *InvoiceLine.model_fields], lineterminator="\n")
    writer.writeheader()
    head = {field: getattr(invoice, field) for field in _CSV_HEAD}
    for line in invoice.lines:
        writer.writerow({**head, **line.model_dump(mode="json")})
    requests = sum(line.requests for line in invoice.lines)
    total = {"model": "TOTAL", "requests": requests, "total_tokens": invoice.total_tokens}
    writer.writerow({**head, **total, "cost": plain_decimal(invoice.subtotal)})
    writer.writerow({**head, "model": "AMOUNT DUE", "cost": str(invoice.amount_due)})
    return out.getvalue()


_CSV_HEAD = ("invoice_id", "tenant_id", "month", "currency")


class InvoiceArchive(Protocol):
    def put(self, invoice: Invoice, csv_text: str) -> None: ...


class BillingService:
    def __init__(self, tenants: TenantStore, usage: UsageStore, currency: str) -> None:
        self._tenants = tenants
        self._usage = usage
        self._currency = currency

    def invoice(self, tenant: Tenant, month: str) -> Invoice:
        start, end = month_bounds(month)
        lines = invoice_lines(self._usage.daily(tenant.tenant_id, start, end))
        subtotal = sum((line.cost for line in lines), Decimal(0))
        return Invoice(
            invoice_id=f"inv_{tenant.tenant_id}_{month.replace('-', '')}",
            tenant_id=tenant.tenant_id,
            tenant_name=tenant.name,
            month=month,
            currency=self._currency,
            lines=lines,
            total_tokens=sum(line.total_tokens for line in lines),
            subtotal=subtotal,
            amount_due=subtotal.quantize(CENT, rounding=ROUND_HALF_UP),
            generated_at=utcnow(),
        )

    def month(self, month: str) -> MonthlyInvoices:
        tenants = sorted(self._tenants.list(), key=lambda tenant: tenant.tenant_id)
        invoices = [self.invoice(tenant, month) for tenant in tenants]
        return MonthlyInvoices(
            month=month,
            currency=self._currency,
            data=invoices,
            amount_due=sum((invoice.amount_due for invoice in invoices), Decimal(0)),
        )

    def publish(self, month: str, archive: InvoiceArchive) -> MonthlyInvoices:
        """Write every tenant's invoice for `month` (JSON and CSV) to the archive."""
        invoices = self.month(month)
        for invoice in invoices.data:
            archive.put(invoice, invoice_csv(invoice))
        return invoices
