"""Usage a tenant can see: by day and model, with exact cost."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel, Field

from stratus_core.errors import InvalidRequest
from stratus_core.pricing import Money

MAX_RANGE_DAYS = 366


class UsageRow(BaseModel):
    date: date
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_cost: Money
    completion_cost: Money
    cost: Money


class UsageTotals(BaseModel):
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Money = Field(default=Decimal(0))

    @classmethod
    def of(cls, rows: list[UsageRow]) -> UsageTotals:
        return cls(
            requests=sum(row.requests for row in rows),
            prompt_tokens=sum(row.prompt_tokens for row in rows),
            completion_tokens=sum(row.completion_tokens for row in rows),
            total_tokens=sum(row.total_tokens for row in rows),
            cost=sum((row.cost for row in rows), Decimal(0)),
        )


class UsageReport(BaseModel):
    object: str = "usage"
    tenant_id: str
    start: date
    end: date
    currency: str
    data: list[UsageRow]
    totals: UsageTotals


class UsageStore(Protocol):
    def daily(self, tenant_id: str, start: date, end: date) -> list[UsageRow]:
        """Settled usage per day and model, both ends inclusive, ordered by day then model."""
        ...


def check_range(start: date, end: date) -> None:
    """A usage range: both ends inclusive, at most `MAX_RANGE_DAYS`."""
    if end < start:
        raise InvalidRequest("end must not be before start", param="end")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise InvalidRequest(f"a usage range spans at most {MAX_RANGE_DAYS} days", param="start")


class UsageService:
    def __init__(self, store: UsageStore, currency: str) -> None:
        self._store = store
        self._currency = currency

    @property
    def currency(self) -> str:
        return self._currency

    def report(self, tenant_id: str, start: date, end: date) -> UsageReport:
        check_range(start, end)
        rows = self._store.daily(tenant_id, start, end)
        return UsageReport(
            tenant_id=tenant_id,
            start=start,
            end=end,
            currency=self._currency,
            data=rows,
            totals=UsageTotals.of(rows),
        )
