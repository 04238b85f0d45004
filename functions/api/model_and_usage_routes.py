"""Routes any tenant key reaches: the models its tenant may use (`usage` scope: its own usage)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from api.caller import caller, services
from stratus_core.clock import utcnow
from stratus_core.keys import Scope
from stratus_core.usage import UsageReport

router = Router()


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


CATALOG_EPOCH = 1_764_547_200  # 2025-12-01: models in the catalog carry no creation date of their own


@router.get("/v1/models", summary="Models the caller's tenant may use", tags=["models"])
def list_models() -> ModelList:
    principal = caller(router, None)
    tenant = services(router).tenants.get(principal.tenant_id)
    catalog = services(router).catalog
    allowed = tenant.allowed_models
    names = sorted(name for name in catalog.models if allowed is None or name in allowed)
    return ModelList(
        data=[ModelCard(id=name, created=CATALOG_EPOCH, owned_by=catalog.models[name].owned_by) for name in names]
    )


@router.get("/v1/usage", summary="The caller's usage and cost by day and model", tags=["usage"])
def get_usage(
    start: Annotated[date | None, Query(description="First day, YYYY-MM-DD (default: first of this month)")] = None,
    end: Annotated[date | None, Query(description="Last day, inclusive (default: today)")] = None,
) -> UsageReport:
    principal = caller(router, Scope.USAGE)
    today = utcnow().date()
    return services(router).usage.report(principal.tenant_id, start or today.replace(day=1), end or today)
