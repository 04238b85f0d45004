"""Admin routes: tenants, keys, usage, batches and invoices of every tenant (admin scope only)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from api.caller import caller, create_id, services
from stratus_core.billing import MONTH_PATTERN, ListedInvoices
from stratus_core.clock import utcnow
from stratus_core.errors import Conflict
from stratus_core.keys import ApiKeyView, IssuedKey, KeyCreate, KeyList, KeyRotate, Scope, new_key_id
from stratus_core.overview import AdminBatchList, TenantList, UsageAcrossTenants
from stratus_core.tenants import TENANT_ID_PATTERN, Tenant, TenantCreate, TenantUpdate
from stratus_core.usage import UsageReport

router = Router()

TenantId = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]
KeyId = Annotated[str, Path(pattern=r"^key_[0-9a-f]{16}$")]


def _admin() -> None:
    caller(router, Scope.ADMIN)


@router.post("/admin/tenants", status_code=201, summary="Create a tenant", tags=["admin"])
def create_tenant(body: TenantCreate) -> Tenant:
    """A client's retry of a create that landed (`creates.py`) returns the tenant, not a 409."""
    principal = caller(router, Scope.ADMIN)
    _, retried = create_id(router, principal, "POST /admin/tenants", lambda: body.tenant_id)
    try:
        return services(router).tenants.create(body)
    except Conflict:
        if not retried:
            raise
        return services(router).tenants.get(body.tenant_id)


@router.get("/admin/tenants", summary="A page of tenants, each with its month's usage", tags=["admin"])
def list_tenants(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(pattern=TENANT_ID_PATTERN, description="The previous page's `last_id`")] = None,
) -> TenantList:
    """Read in the tenants table's order, each page sorted by tenant_id (`stratus_core.overview`)."""
    _admin()
    return services(router).overview.tenants(limit, after)


@router.get("/admin/tenants/<tenant_id>", summary="Show a tenant", tags=["admin"])
def get_tenant(tenant_id: TenantId) -> Tenant:
    _admin()
    return services(router).tenants.get(tenant_id)


@router.patch("/admin/tenants/<tenant_id>", summary="Change a tenant's name, status, limits or models", tags=["admin"])
def update_tenant(tenant_id: TenantId, body: TenantUpdate) -> Tenant:
    _admin()
    return services(router).tenants.update(tenant_id, body)


@router.post("/admin/tenants/<tenant_id>/keys", status_code=201, summary="Issue an API key", tags=["admin"])
def create_key(tenant_id: TenantId, body: KeyCreate) -> IssuedKey:
    """The response is the only place the key ever appears; it is stored as a SHA-256 hash."""
    principal = caller(router, Scope.ADMIN)
    key_id, retried = create_id(router, principal, f"POST /admin/tenants/{tenant_id}/keys", new_key_id)
    return services(router).keys.create(tenant_id, body, key_id, retried=retried)


@router.get("/admin/tenants/<tenant_id>/keys", summary="List a tenant's keys (never the secrets)", tags=["admin"])
def list_keys(tenant_id: TenantId) -> KeyList:
    _admin()
    return KeyList(data=services(router).keys.list(tenant_id))


@router.delete("/admin/keys/<key_id>", summary="Revoke an API key", tags=["admin"])
def revoke_key(key_id: KeyId) -> ApiKeyView:
    _admin()
    return services(router).keys.revoke(key_id)


@router.post("/admin/keys/<key_id>/rotate", status_code=201, summary="Rotate an API key", tags=["admin"])
def rotate_key(key_id: KeyId, body: KeyRotate | None = None) -> IssuedKey:
    """Issues a replacement; the old key keeps working for the grace period, then expires."""
    _admin()
    return services(router).keys.rotate(key_id, body or KeyRotate())


@router.get("/admin/tenants/<tenant_id>/usage", summary="A tenant's usage by day and model", tags=["admin"])
def tenant_usage(
    tenant_id: TenantId,
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
) -> UsageReport:
    _admin()
    services(router).tenants.get(tenant_id)
    today = utcnow().date()
    return services(router).usage.report(tenant_id, start or today.replace(day=1), end or today)


@router.get("/admin/usage", summary="Usage by day and model summed over every tenant, and per tenant", tags=["admin"])
def usage_across_tenants(
    start: Annotated[date | None, Query(description="First day, YYYY-MM-DD (default: first of this month)")] = None,
    end: Annotated[date | None, Query(description="Last day, inclusive (default: today)")] = None,
) -> UsageAcrossTenants:
    _admin()
    today = utcnow().date()
    return services(router).overview.usage(start or today.replace(day=1), end or today)


@router.get("/admin/batches", summary="Batches of every tenant (or one) with their progress", tags=["admin"])
def list_all_batches(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=200, description="The previous page's `last_id`")] = None,
    tenant_id: Annotated[str | None, Query(pattern=TENANT_ID_PATTERN)] = None,
) -> AdminBatchList:
    """With `tenant_id`, that tenant's batches newest first; without, every tenant's in the batches
    table's order, each page newest first, `last_id` an opaque cursor (`stratus_core.overview`)."""
    _admin()
    return services(router).overview.batches(limit, after, tenant_id)


@router.get("/admin/invoices/<month>", summary="Every tenant's invoice for a month (YYYY-MM)", tags=["admin"])
def month_invoices(month: Annotated[str, Path(pattern=MONTH_PATTERN)]) -> ListedInvoices:
    """The running figures; `final` says which the billing run has stored (and will not change)."""
    _admin()
    svc = services(router)
    return svc.billing.listed(month, svc.invoice_archive)
