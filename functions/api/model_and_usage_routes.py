"""Routes any tenant key reaches: the models its tenant may use; with the `usage` scope, its own usage,
limits (what is left of them now) and keys (never their secrets)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel

from api.caller import caller, services
from stratus_core.clock import utcnow
from stratus_core.errors import NotFound
from stratus_core.keys import KeyList, Scope
from stratus_core.limits import LimitsView
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
    return ModelList(data=_visible_models())


@router.get("/v1/models/<model_id>", summary="One model the caller's tenant may use", tags=["models"])
def get_model(model_id: Annotated[str, Path(min_length=1, max_length=200)]) -> ModelCard:
    found = [card for card in _visible_models() if card.id == model_id]
    if not found:
        raise NotFound("model", model_id)
    return found[0]


def _visible_models() -> list[ModelCard]:
    """The catalog's models the caller's tenant may use, by name."""
    svc = services(router)
    allowed = svc.tenants.get(caller(router, None).tenant_id).allowed_models
    models = svc.catalog.models
    names = sorted(name for name in models if allowed is None or name in allowed)
    return [ModelCard(id=name, created=CATALOG_EPOCH, owned_by=models[name].owned_by) for name in names]


@router.get("/v1/usage", summary="The caller's usage and cost by day and model", tags=["usage"])
def get_usage(
    start: Annotated[date | None, Query(description="First day, YYYY-MM-DD (default: first of this month)")] = None,
    end: Annotated[date | None, Query(description="Last day, inclusive (default: today)")] = None,
) -> UsageReport:
    principal = caller(router, Scope.USAGE)
    today = utcnow().date()
    return services(router).usage.report(principal.tenant_id, start or today.replace(day=1), end or today)


@router.get("/v1/limits", summary="The caller's limits and what is left of them now", tags=["usage"])
def get_limits() -> LimitsView:
    """`used.tokens_this_month` counts reservations until they settle (`stratus_core.limits`)."""
    principal = caller(router, Scope.USAGE)
    return services(router).limits.now(principal.tenant_id)


@router.get("/v1/keys", summary="The caller's tenant's API keys (never the secrets)", tags=["usage"])
def list_own_keys() -> KeyList:
    principal = caller(router, Scope.USAGE)
    return KeyList(data=services(router).keys.list(principal.tenant_id))
