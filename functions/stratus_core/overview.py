"""What operators see across tenants (the admin routes a console pages through): tenants with their
month's usage, every tenant's batches with their progress, and usage summed over tenants.

Lists page the way OpenAI's do (`limit`, `after` = the previous page's `last_id`, `has_more`), and
each page is one bounded read of its table (`adapters/dynamo/paging.py`): a `Scan` of the tenants or
the batches table in the table's own order (by hash of the key, which is no order a person would
choose), each page then sorted for reading. So `last_id` is where the next page starts in the
table's order, not necessarily the last item of `data`; and `has_more` is DynamoDB's "I stopped
before the end", so a page that ends exactly at the end says `has_more: true` and the next is empty.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from stratus_core.batches.models import Batch
from stratus_core.batches.service import BatchStore
from stratus_core.clock import month_bounds, month_key, utcnow
from stratus_core.errors import InvalidRequest
from stratus_core.pricing import Money
from stratus_core.tenants import TENANT_ID_PATTERN, Tenant, TenantService
from stratus_core.usage import UsageRow, UsageService, UsageTotals, check_range

BATCH_ID_PATTERN = r"^batch_[0-9a-f]{24}$"


class MonthUsage(BaseModel):
    month: str = Field(description="YYYY-MM (UTC)")
    requests: int
    total_tokens: int
    cost: Money


class TenantOverview(Tenant):
    month_usage: MonthUsage = Field(description="The current month's settled usage so far.")


class TenantList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TenantOverview] = Field(description="This page's tenants, sorted by tenant_id.")
    first_id: str | None = None
    last_id: str | None = Field(
        default=None, description="Pass as `after` for the next page: the page's last tenant in the table's order."
    )
    has_more: bool = False


class AdminBatch(Batch):
    tenant_id: str


class AdminBatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AdminBatch] = Field(description="This page's batches, newest first.")
    first_id: str | None = None
    last_id: str | None = Field(
        default=None,
        description="Pass as `after` for the next page: a batch id with `tenant_id`, else an opaque cursor.",
    )
    has_more: bool = False


class TenantUsage(BaseModel):
    tenant_id: str
    requests: int
    total_tokens: int
    cost: Money


class UsageAcrossTenants(BaseModel):
    object: Literal["usage"] = "usage"
    start: date
    end: date
    currency: str
    data: list[UsageRow] = Field(description="By day and model, summed over every tenant.")
    totals: UsageTotals
    tenants: list[TenantUsage] = Field(description="Each tenant with usage in the range, by tenant_id.")


def batch_cursor(tenant_id: str, batch_id: str) -> str:
    """The opaque `after` of the batches across tenants: base64url of `<tenant id>/<batch id>`."""
    return base64.urlsafe_b64encode(f"{tenant_id}/{batch_id}".encode()).decode().rstrip("=")


def read_batch_cursor(cursor: str) -> tuple[str, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    tenant_id, _, batch_id = text.partition("/")
    if not (re.match(TENANT_ID_PATTERN, tenant_id) and re.match(BATCH_ID_PATTERN, batch_id)):
        raise InvalidRequest("after is not a cursor this list gave (its last_id)", param="after")
    return tenant_id, batch_id


class Overview:
    def __init__(
        self,
        tenants: TenantService,
        usage: UsageService,
        batches: BatchStore,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._tenants = tenants
        self._usage = usage
        self._batches = batches
        self._clock = clock

    def tenants(self, limit: int, after: str | None) -> TenantList:
        """A page of tenants, each with its month's usage: one usage report per tenant of the page,
        here, so that a console never asks once per row."""
        page = self._tenants.page(limit, after)
        month = month_key(self._clock())
        first, last = month_bounds(month)
        listed = []
        for tenant in page.tenants:
            totals = self._usage.report(tenant.tenant_id, first, last).totals
            usage = MonthUsage(
                month=month, requests=totals.requests, total_tokens=totals.total_tokens, cost=totals.cost
            )
            listed.append(TenantOverview(**tenant.model_dump(), month_usage=usage))
        return TenantList(
            data=listed,
            first_id=listed[0].tenant_id if listed else None,
            last_id=page.last_read,
            has_more=page.has_more,
        )

    def batches(self, limit: int, after: str | None, tenant_id: str | None) -> AdminBatchList:
        """One tenant's batches, newest first (`after` a batch id), or every tenant's: a `Scan` in the
        table's order, each page newest first (`after` an opaque cursor, `batch_cursor`).

        One tenant's are `BatchStore.list`'s, as `GET /v1/batches` has them: batch ids are random, so
        that reads the tenant's whole partition (its batches) and sorts it; time-ordered batch ids,
        as jobs have, would bound it by the page."""
        if tenant_id is not None:
            self._tenants.get(tenant_id)
            if after is not None and not re.match(BATCH_ID_PATTERN, after):
                raise InvalidRequest("after must be a batch id (the previous page's last_id)", param="after")
            found = self._batches.list(tenant_id, limit + 1, after)
            page = [AdminBatch(**batch.model_dump()) for batch in found[:limit]]
            return AdminBatchList(
                data=page,
                first_id=page[0].id if page else None,
                last_id=page[-1].id if page else None,
                has_more=len(found) > limit,
            )
        scanned = self._batches.page_all(limit, read_batch_cursor(after) if after is not None else None)
        batches = sorted(scanned.batches, key=lambda batch: (batch.created_at, batch.id), reverse=True)
        listed = [AdminBatch(**batch.model_dump()) for batch in batches]
        return AdminBatchList(
            data=listed,
            first_id=listed[0].id if listed else None,
            last_id=batch_cursor(*scanned.last_read) if scanned.last_read else None,
            has_more=scanned.has_more,
        )

    def usage(self, start: date, end: date) -> UsageAcrossTenants:
        """Usage by day and model summed over every tenant, and each tenant's totals.

        Costs O(tenants): it lists every tenant (a whole `Scan` of the tenants table) and reads one
        usage report per tenant that existed by `end` (a tenant item read and a `Query` of its
        `DAY#` rows each). Fine for the tenants of one deployment; a deployment with many thousands
        would want a per-day rollup row instead."""
        check_range(start, end)
        ends = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        sums: dict[tuple[date, str], list[UsageRow]] = {}
        tenants: list[TenantUsage] = []
        for tenant in self._tenants.list():
            if tenant.created_at >= ends:
                continue  # created after the range: no usage in it
            report = self._usage.report(tenant.tenant_id, start, end)
            if not report.data:
                continue
            for row in report.data:
                sums.setdefault((row.date, row.model), []).append(row)
            totals = report.totals
            tenants.append(
                TenantUsage(
                    tenant_id=tenant.tenant_id,
                    requests=totals.requests,
                    total_tokens=totals.total_tokens,
                    cost=totals.cost,
                )
            )
        rows = [_summed(day, model, group) for (day, model), group in sorted(sums.items())]
        return UsageAcrossTenants(
            start=start,
            end=end,
            currency=self._usage.currency,
            data=rows,
            totals=UsageTotals.of(rows),
            tenants=tenants,
        )


def _summed(day: date, model: str, rows: list[UsageRow]) -> UsageRow:
    return UsageRow(
        date=day,
        model=model,
        requests=sum(row.requests for row in rows),
        prompt_tokens=sum(row.prompt_tokens for row in rows),
        completion_tokens=sum(row.completion_tokens for row in rows),
        total_tokens=sum(row.total_tokens for row in rows),
        prompt_cost=sum((row.prompt_cost for row in rows), Decimal(0)),
        completion_cost=sum((row.completion_cost for row in rows), Decimal(0)),
        cost=sum((row.cost for row in rows), Decimal(0)),
    )
