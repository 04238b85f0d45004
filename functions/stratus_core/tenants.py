"""Tenants and their limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from stratus_core.clock import utcnow
from stratus_core.errors import NotFound

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class TenantLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int = Field(default=60, ge=0, le=1_000_000)
    tokens_per_minute: int = Field(default=100_000, ge=0, le=1_000_000_000)
    tokens_per_month: int = Field(default=10_000_000, ge=0, le=1_000_000_000_000)
    max_in_flight: int = Field(default=16, ge=0, le=100_000)


class TenantLimitsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=0, le=1_000_000)
    tokens_per_minute: int | None = Field(default=None, ge=0, le=1_000_000_000)
    tokens_per_month: int | None = Field(default=None, ge=0, le=1_000_000_000_000)
    max_in_flight: int | None = Field(default=None, ge=0, le=100_000)


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN, description="Lowercase letters, digits and '-'.")
    name: str = Field(min_length=1, max_length=200)
    limits: TenantLimits = Field(default_factory=TenantLimits)
    allowed_models: list[str] | None = Field(
        default=None, max_length=100, description="Models the tenant may use; null means every model in the catalog."
    )


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    status: TenantStatus | None = None
    limits: TenantLimitsPatch | None = None
    allowed_models: list[str] | None = Field(default=None, max_length=100)


class Tenant(BaseModel):
    tenant_id: str
    name: str
    status: TenantStatus
    limits: TenantLimits
    allowed_models: list[str] | None = None
    in_flight: int = Field(default=0, description="Requests admitted and not yet settled or released.")
    created_at: datetime
    updated_at: datetime

    @property
    def is_active(self) -> bool:
        return self.status is TenantStatus.ACTIVE


@dataclass(frozen=True)
class TenantPage:
    """Up to a page of tenants in the store's own order (a `Scan`'s), and where the next page starts."""

    tenants: list[Tenant]
    last_read: str | None
    """The page's last tenant in the store's order: the next page is after it."""
    has_more: bool
    """Whether the store may hold tenants after `last_read` (a full page at the very end says so too:
    the next page is then empty)."""


class TenantStore(Protocol):
    def create(self, tenant: Tenant) -> None: ...  # raises Conflict when it exists

    def get(self, tenant_id: str) -> Tenant | None: ...

    def list(self) -> list[Tenant]: ...

    def page(self, limit: int, after: str | None) -> TenantPage:
        """Up to `limit` tenants after the tenant `after`, in the store's order, reading no more than that."""
        ...

    def update(self, tenant_id: str, update: TenantUpdate, updated_at: datetime) -> Tenant: ...  # raises NotFound


class TenantService:
    def __init__(self, store: TenantStore, clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._clock = clock

    def create(self, request: TenantCreate) -> Tenant:
        now = self._clock()
        tenant = Tenant(
            tenant_id=request.tenant_id,
            name=request.name,
            status=TenantStatus.ACTIVE,
            limits=request.limits,
            allowed_models=request.allowed_models,
            created_at=now,
            updated_at=now,
        )
        self._store.create(tenant)
        return tenant

    def get(self, tenant_id: str) -> Tenant:
        tenant = self._store.get(tenant_id)
        if tenant is None:
            raise NotFound("tenant", tenant_id)
        return tenant

    def list(self) -> list[Tenant]:
        return sorted(self._store.list(), key=lambda tenant: tenant.tenant_id)

    def page(self, limit: int, after: str | None) -> TenantPage:
        """A page of tenants, read in the store's order and sorted by id within the page."""
        found = self._store.page(limit, after)
        tenants = sorted(found.tenants, key=lambda tenant: tenant.tenant_id)
        return TenantPage(tenants, found.last_read, found.has_more)

    def update(self, tenant_id: str, update: TenantUpdate) -> Tenant:
        return self._store.update(tenant_id, update, self._clock())
