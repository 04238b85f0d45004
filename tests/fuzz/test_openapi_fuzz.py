"""schemathesis against the served OpenAPI document, through the gateway + authorizer + API on moto.

Every operation gets generated requests (valid and invalid bodies, parameters, headers) with a valid
key of the scopes it needs. No response may be a 5xx, and every error must be in OpenAI's shape.
`STRATUS_FUZZ_EXAMPLES` sets the examples per operation: CI's default run uses 8 (25 operations,
~200 cases); `make fuzz` uses 60 (≥ 1,000 cases).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from api.app import lambda_handler as api_handler
from authorizer.app import lambda_handler as authorizer_handler
from stratus.localcloud.cloud import LocalCloud
from stratus.localcloud.gateway import HttpApiGateway
from stratus_core.keys import KeyCreate, Scope
from stratus_core.services import Services
from stratus_core.tenants import TenantCreate
from tests.reliability.report import Section, write_section

EXAMPLES = int(os.environ.get("STRATUS_FUZZ_EXAMPLES", "8"))
APP = LocalCloud._gateway_app(HttpApiGateway(authorizer_handler, api_handler, cache_ttl_seconds=0))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
KEYS: dict[str, str] = {}
OPERATIONS = [(method, path) for path, ops in schema.raw_schema["paths"].items() for method in ops]
CASES: dict[str, int] = {"sent": 0, "5xx": 0}


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before or not CASES["sent"]:
        return
    write_section(
        Section(
            order=5,
            requests=CASES["sent"],
            title="Fuzzing the OpenAPI document",
            how=(
                f"schemathesis {schemathesis.__version__} over every operation of docs/openapi.json, "
                f"{EXAMPLES} examples per operation (valid and invalid bodies, parameters, headers, methods), "
                "through the local gateway, the authorizer and the API function on moto, with a valid key."
            ),
            injected={"generated requests": CASES["sent"], "operations": len(OPERATIONS)},
            outcome="0 responses with a 5xx status; every 4xx in the OpenAI error shape",
            invariants=["no 5xx", "every error in OpenAI's shape (message, type, param, code)"],
        )
    )


@pytest.fixture(autouse=True)
def tenants(services: Services, cloud: dict[str, str]) -> Iterator[None]:
    services.tenants.create(TenantCreate(tenant_id="operators", name="Operators"))
    services.tenants.create(TenantCreate(tenant_id="acme", name="Acme"))
    KEYS["admin"] = services.keys.create("operators", KeyCreate(scopes=[Scope.ADMIN, Scope.USAGE])).api_key
    KEYS["tenant"] = services.keys.create("acme", KeyCreate(scopes=[Scope.INFERENCE, Scope.BATCH, Scope.USAGE])).api_key
    yield


def openai_error_shape(body: bytes) -> bool:
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error) and bool(error["message"])


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_5xx_and_every_error_is_openai_shaped(case: schemathesis.Case) -> None:
    key = KEYS["admin"] if case.path.startswith("/admin/") else KEYS["tenant"]
    headers = {**(case.headers or {}), "authorization": f"Bearer {key}", "prefer": "respond-async"}
    case.headers = headers
    response = case.call()
    CASES["sent"] += 1
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.content[:300]!r}"
    assert response.status_code < 500, where
    documented = case.method.lower() in schema.raw_schema["paths"].get(case.path, {})
    if not documented and response.status_code == 405:
        return  # schemathesis also tries methods no route has (TRACE …): the local gateway's own 405
    if response.status_code >= 400:
        assert openai_error_shape(response.content), where
