"""Invoices: one per tenant and month, from the settled usage, in JSON and CSV.

**An invoice is written once, when it is complete, and never rewritten.** Settlement bills a
request on the day it was *admitted* (`DAY#<admission day>` in the usage table), not the day it
settled: a batch request admitted at 23:59 on the 31st and settled on the 1st at 09:00 is October's
usage. So October's figures can still grow after October ends, until every reservation admitted in
October is settled or released. The billing run therefore *closes* a month per tenant, and only
once no reservation the tenant was admitted in that month is still held (`HeldReservations`);
a tenant that still holds one gets no invoice this run and is `open` in the answer. The billing
function runs daily, so the next run closes it.

Why close, rather than issue amendments for tokens settled after the invoice: a reservation's life
is bounded. No job outlives its deadline (a batch's 24 h completion window; an interactive request's
TTL, at most 6 h), the sweeper expires overdue jobs and releases orphaned reservations every few
minutes, so every reservation of a month is terminal within `CLOSE_BOUND` (25 h) of its end. So
a tenant's invoice waits at most one daily run, and there is one invoice per tenant and month,
final when it appears; amendments would make every reader (the tenant, accounting, an export) sum
documents for every month forever, to cover a window of one day. A tenant still open after
`CLOSE_BOUND` is an error (`MonthClose.overdue`: a reservation outlived every deadline, the sweeper
is not running, say); its invoice still waits, since an earlier one would be wrong.

**Who gets an invoice: a tenant with usage in the month, and no one else.** A tenant created after
the month ended cannot have any and is not even read. A tenant that existed but used nothing gets no
$0 invoice: an invoice asks for payment, and neither OpenAI nor AWS sends one for a month without
charges; a $0 document every month for the operators' own tenant (it holds the admin keys and may
run no model) and for every idle tenant would be noise for them and for accounting. The run still
closes such a tenant's month (`MonthClose.nothing_due`), by the same rule as an invoice: no
reservation of the month held, read before the usage. Tokens billed at a price of zero still make an
invoice: it has lines.

Why this is complete: reservations move one way only (reserved → settled or released), and a
month's reservations are all admitted before the month ends. The run reads who still holds one
*before* it reads the usage; a reservation not held at that moment has already written its usage
(in the same transaction that ended it), and none is added afterwards. The archive writes an
invoice only if none is stored under its key (`InvoiceArchive.put`), so a re-run, a retry or a
concurrent run leaves a written invoice as it is: the tokens in the archive equal the tokens billed
in the usage table for that month, at every run and after.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from pydantic import BaseModel, Field

from stratus_core.batches.models import COMPLETION_WINDOW
from stratus_core.clock import month_bounds, month_span, previous_month, utcnow
from stratus_core.pricing import Money, plain_decimal
from stratus_core.tenants import Tenant, TenantStore
from stratus_core.usage import UsageRow, UsageStore

CENT = Decimal("0.01")
MONTH_PATTERN = r"^([1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])-(0[1-9]|1[0-2])$"
CLOSE_GRACE = timedelta(hours=1)
"""Room after the last deadline for the sweeper (every 5 minutes; orphans after 15) to end what is left."""
CLOSE_BOUND = COMPLETION_WINDOW + CLOSE_GRACE
"""After a month's end, how long its reservations may still be held; a tenant open later is overdue."""


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


class ListedInvoice(Invoice):
    """An invoice as `GET /admin/invoices/{month}` lists it; the stored invoice has no `final`."""

    final: bool = Field(description="The billing run has stored this invoice: it is final and will not change.")


class ListedInvoices(BaseModel):
    object: str = "list"
    month: str
    currency: str
    data: list[ListedInvoice]
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
    def finalized(self, month: str) -> set[str]:
        """The tenants whose invoice for `month` is stored (and so final)."""
        ...

    def put(self, invoice: Invoice, csv_text: str) -> bool:
        """Store the invoice (JSON and CSV) unless one is stored under its key already; False then,
        and what is stored stays as it is."""
        ...


class HeldReservations(Protocol):
    def tenants_holding(self, start: datetime, end: datetime) -> set[str]:
        """Tenants with a reservation admitted in `[start, end)` that is neither settled nor released."""
        ...


class MonthClose(BaseModel):
    """What one billing run did for a month."""

    month: str
    written: list[Invoice] = Field(description="Invoices this run wrote: final from now on.")
    final: list[str] = Field(description="Tenants whose invoice an earlier run wrote (left unchanged).")
    open: list[str] = Field(description="Tenants with no invoice yet: the month runs, or they hold a reservation.")
    nothing_due: list[str] = Field(
        default_factory=list, description="Tenants whose month is closed with no usage in it: no invoice."
    )
    overdue: bool = Field(description=f"Tenants are open more than {CLOSE_BOUND} after the month's end.")

    @property
    def amount_due(self) -> Decimal:
        return sum((invoice.amount_due for invoice in self.written), Decimal(0))


class BillingService:
    def __init__(
        self,
        tenants: TenantStore,
        usage: UsageStore,
        reservations: HeldReservations,
        currency: str,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._tenants = tenants
        self._usage = usage
        self._currency = currency
        self._reservations = reservations
        self._clock = clock

    def month_just_ended(self) -> str:
        return previous_month(self._clock())

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
            generated_at=self._clock(),
        )

    def _tenants_of(self, month: str) -> list[Tenant]:
        """The tenants that existed in `month`: those created before it ended."""
        _, end = month_span(month)
        return sorted((t for t in self._tenants.list() if t.created_at < end), key=lambda tenant: tenant.tenant_id)

    def month(self, month: str) -> MonthlyInvoices:
        """The month's invoices so far: one per tenant with usage in it (the module says why)."""
        invoices = [self.invoice(tenant, month) for tenant in self._tenants_of(month)]
        invoices = [invoice for invoice in invoices if invoice.lines]
        return MonthlyInvoices(
            month=month,
            currency=self._currency,
            data=invoices,
            amount_due=sum((invoice.amount_due for invoice in invoices), Decimal(0)),
        )

    def listed(self, month: str, archive: InvoiceArchive) -> ListedInvoices:
        """The month's invoices so far (`month`), each marked `final` once the archive stores it."""
        running = self.month(month)
        stored = archive.finalized(month)
        return ListedInvoices(
            month=running.month,
            currency=running.currency,
            data=[ListedInvoice(**invoice.model_dump(), final=invoice.tenant_id in stored) for invoice in running.data],
            amount_due=running.amount_due,
        )

    def close_month(self, month: str, archive: InvoiceArchive) -> MonthClose:
        """Write the final invoice of every tenant whose `month` is complete; the others stay open.

        A tenant gets its invoice once the month has ended and it holds no reservation admitted in
        the month. Who holds one is read before any usage: the module's docstring says why that
        order makes the invoice complete.
        """
        start, end = month_span(month)
        now = self._clock()
        tenants = self._tenants_of(month)
        if now < end:
            return MonthClose(month=month, written=[], final=[], open=[t.tenant_id for t in tenants], overdue=False)
        stored = archive.finalized(month)
        held = self._reservations.tenants_holding(start, end)
        written: list[Invoice] = []
        final: list[str] = []
        still_open: list[str] = []
        nothing_due: list[str] = []
        for tenant in tenants:
            if tenant.tenant_id in stored:
                final.append(tenant.tenant_id)
            elif tenant.tenant_id in held:
                still_open.append(tenant.tenant_id)
            else:
                invoice = self.invoice(tenant, month)
                if not invoice.lines:
                    nothing_due.append(tenant.tenant_id)
                elif archive.put(invoice, invoice_csv(invoice)):
                    written.append(invoice)
                else:  # a concurrent run wrote it first
                    final.append(tenant.tenant_id)
        overdue = bool(still_open) and now >= end + CLOSE_BOUND
        return MonthClose(
            month=month, written=written, final=final, open=still_open, overdue=overdue, nothing_due=nothing_due
        )
