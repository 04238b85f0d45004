"""What a tenant's limits leave it right now (`GET /v1/limits`), from the counters admission keeps.

Admission counts each request on the tenant's own item (`adapters/dynamo/tenant_counters.py`): the
minute and the month it counts, their requests and tokens, and the held reservations (in flight).
This reads them with one consistent read of that item, so `used` is what the next admission will
check against, at that moment. A minute or month the item no longer counts has passed: its counts
are 0 now.

`tokens_this_month` counts what admission counts: a request's worst case from the moment it is
admitted (prompt bound plus `max_tokens`), corrected to the model server's counts when it settles
(given back when it fails). So while requests are in flight it is above the month's usage in
`GET /v1/usage`, which shows settled usage only; once they have settled, the two are equal (a
request admitted in one month and settled in the next leaves its reservation in the old month's
counter, which limits nothing any more).

A tenant admitted only by the previous layout (its `MINUTE#` and `MONTH#` items in the usage table)
has no counters on its item yet: it shows 0 used until its first admission in this layout, which
starts the item's counters from those items (`tenant_counters.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from stratus_core.clock import minute_key, month_key, utcnow
from stratus_core.errors import NotFound
from stratus_core.tenants import Tenant, TenantLimits


@dataclass(frozen=True)
class WindowCounts:
    """The counters on the tenant item, as stored: each window with the key it counts."""

    minute: str | None = None
    minute_requests: int = 0
    minute_tokens: int = 0
    month: str | None = None
    month_tokens: int = 0


class CountedTenants(Protocol):
    def counted(self, tenant_id: str) -> tuple[Tenant, WindowCounts] | None:
        """The tenant and its counters, read together (None: no such tenant)."""
        ...


class LimitCounts(BaseModel):
    requests_this_minute: int = Field(ge=0)
    tokens_this_minute: int = Field(ge=0)
    tokens_this_month: int = Field(ge=0)
    in_flight: int = Field(ge=0)


class LimitsView(BaseModel):
    object: Literal["limits"] = "limits"
    tenant_id: str
    limits: TenantLimits
    used: LimitCounts = Field(description="Counted now; `tokens_this_month` includes reservations not yet settled.")
    remaining: LimitCounts = Field(description="The limit less what is used, never below 0.")
    minute_resets_at: int = Field(description="When the next minute's counts start (epoch seconds).")
    month: str = Field(description="The month counted, YYYY-MM (UTC).")


class LimitsService:
    def __init__(self, tenants: CountedTenants, clock: Callable[[], datetime] = utcnow) -> None:
        self._tenants = tenants
        self._clock = clock

    def now(self, tenant_id: str) -> LimitsView:
        found = self._tenants.counted(tenant_id)
        if found is None:
            raise NotFound("tenant", tenant_id)
        tenant, counts = found
        now = self._clock()
        this_minute, this_month = counts.minute == minute_key(now), counts.month == month_key(now)
        used = LimitCounts(
            requests_this_minute=max(0, counts.minute_requests) if this_minute else 0,
            tokens_this_minute=max(0, counts.minute_tokens) if this_minute else 0,
            tokens_this_month=max(0, counts.month_tokens) if this_month else 0,
            in_flight=max(0, tenant.in_flight),
        )
        limits = tenant.limits
        remaining = LimitCounts(
            requests_this_minute=max(0, limits.requests_per_minute - used.requests_this_minute),
            tokens_this_minute=max(0, limits.tokens_per_minute - used.tokens_this_minute),
            tokens_this_month=max(0, limits.tokens_per_month - used.tokens_this_month),
            in_flight=max(0, limits.max_in_flight - used.in_flight),
        )
        minute_start = now.replace(second=0, microsecond=0)
        return LimitsView(
            tenant_id=tenant_id,
            limits=limits,
            used=used,
            remaining=remaining,
            minute_resets_at=int((minute_start + timedelta(minutes=1)).timestamp()),
            month=month_key(now),
        )
