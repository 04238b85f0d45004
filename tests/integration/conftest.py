"""Helpers to drive the real handlers with real event shapes on moto."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from stratus_core import wiring
from stratus_core.keys import IssuedKey, KeyCreate, Principal, Scope
from stratus_core.tenants import TenantCreate, TenantLimits
from tests.helpers import ADMIN, ApiResponse, FakeContext


@pytest.fixture
def call_api(cloud: dict[str, str], load_event: Callable[[str], dict[str, Any]]) -> Callable[..., ApiResponse]:
    """Invoke the API function as API Gateway would after the authorizer allowed `principal`."""
    from api.app import lambda_handler

    def call(
        method: str,
        path: str,
        body: Any = None,
        principal: Principal | None = ADMIN,
        query: dict[str, str] | None = None,
        raw_body: str | None = None,
    ) -> ApiResponse:
        event = load_event("api_request")
        event["rawPath"] = path
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["http"]["path"] = path
        event["rawQueryString"] = urlencode(query or {})
        event["queryStringParameters"] = query or None
        event["body"] = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
        if principal is None:
            event["requestContext"].pop("authorizer")
        else:
            event["requestContext"]["authorizer"]["lambda"] = principal.to_context()
        result = lambda_handler(event, FakeContext())
        text = result.get("body") or "null"
        return ApiResponse(result["statusCode"], result.get("headers", {}), json.loads(text))

    return call


@pytest.fixture
def make_tenant(cloud: dict[str, str]) -> Callable[..., IssuedKey]:
    """Create a tenant with limits and return a key for it with the given scopes."""

    def make(tenant_id: str, scopes: list[Scope] | None = None, **limits: int) -> IssuedKey:
        wiring.tenants().create(
            TenantCreate(tenant_id=tenant_id, name=tenant_id.title(), limits=TenantLimits(**limits))
        )
        return wiring.keys().create(tenant_id, KeyCreate(scopes=scopes or [Scope.INFERENCE, Scope.USAGE]))

    return make
