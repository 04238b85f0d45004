"""The authorizer function, invoked with API Gateway's v2 REQUEST event.

A refused key is passed on with a denial and no identity (the API answers it with OpenAI's 401 or
403 before any route runs: `test_openai_client.py`, `tests/security/test_attacks.py`)."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from authorizer.app import lambda_handler
from stratus_core import keys as keys_module
from stratus_core.keys import IssuedKey, KeyCreate, Scope
from stratus_core.services import Services
from stratus_core.tenants import TenantStatus, TenantUpdate
from tests.helpers import FakeContext


@pytest.fixture
def authorize(load_event: Callable[[str], dict[str, Any]]) -> Callable[[str | None], dict[str, Any]]:
    def run(header: str | None) -> dict[str, Any]:
        event = load_event("authorizer_request")
        if header is None:
            del event["headers"]["authorization"]
            event["identitySource"] = []
        else:
            event["headers"]["authorization"] = header
            event["identitySource"] = [header]
        return lambda_handler(event, FakeContext())

    return run


def refusal(response: dict[str, Any]) -> str | None:
    """The denial code of an authorizer answer (None when it allowed the key); a denial never
    carries an identity."""
    context = response.get("context") or {}
    if "denied" in context:
        assert response["isAuthorized"] is True  # passed on, so that the API can answer in OpenAI's shape
        assert set(context) == {"denied", "reason"}
        return str(context["denied"])
    assert "tenant_id" in context
    return None


def test_valid_key_is_allowed_with_its_tenant_key_and_scopes(
    authorize: Callable[[str | None], dict[str, Any]], make_tenant: Callable[..., IssuedKey]
) -> None:
    key = make_tenant("acme", scopes=[Scope.USAGE, Scope.INFERENCE])

    response = authorize(f"Bearer {key.api_key}")

    assert response == {
        "isAuthorized": True,
        "context": {"tenant_id": "acme", "key_id": key.key_id, "scopes": "inference usage"},
    }


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer sk-short",
        "Bearer sk-" + "A" * 43,  # well-formed but unknown
        "Bearer " + "x" * 10_000,
    ],
)
def test_missing_malformed_or_unknown_keys_are_denied(
    authorize: Callable[[str | None], dict[str, Any]], make_tenant: Callable[..., IssuedKey], header: str | None
) -> None:
    make_tenant("acme")
    assert refusal(authorize(header)) == "invalid_api_key"


def test_a_key_one_character_off_is_denied(
    authorize: Callable[[str | None], dict[str, Any]], make_tenant: Callable[..., IssuedKey]
) -> None:
    key = make_tenant("acme").api_key
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert refusal(authorize(f"Bearer {wrong}")) == "invalid_api_key"


def test_revoked_key_is_denied(
    services: Services, authorize: Callable[[str | None], dict[str, Any]], make_tenant: Callable[..., IssuedKey]
) -> None:
    key = make_tenant("acme")
    assert refusal(authorize(f"Bearer {key.api_key}")) is None

    services.keys.revoke(key.key_id)

    assert refusal(authorize(f"Bearer {key.api_key}")) == "invalid_api_key"


def test_expired_key_is_denied(
    services: Services,
    authorize: Callable[[str | None], dict[str, Any]],
    make_tenant: Callable[..., IssuedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_tenant("acme")
    expires = datetime.now(UTC) + timedelta(hours=1)
    key = services.keys.create("acme", KeyCreate(scopes=[Scope.INFERENCE], expires_at=expires))
    assert refusal(authorize(f"Bearer {key.api_key}")) is None

    monkeypatch.setattr(keys_module, "utcnow", lambda: expires + timedelta(seconds=1))

    assert refusal(authorize(f"Bearer {key.api_key}")) == "invalid_api_key"


def test_suspended_tenant_is_denied_and_reinstated_tenant_allowed(
    services: Services, authorize: Callable[[str | None], dict[str, Any]], make_tenant: Callable[..., IssuedKey]
) -> None:
    key = make_tenant("acme")

    services.tenants.update("acme", TenantUpdate(status=TenantStatus.SUSPENDED))
    assert refusal(authorize(f"Bearer {key.api_key}")) == "tenant_suspended"

    services.tenants.update("acme", TenantUpdate(status=TenantStatus.ACTIVE))
    assert refusal(authorize(f"Bearer {key.api_key}")) is None


def test_rotated_key_works_through_the_grace_period_then_stops(
    services: Services,
    authorize: Callable[[str | None], dict[str, Any]],
    make_tenant: Callable[..., IssuedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stratus_core.keys import KeyRotate

    old = make_tenant("acme")
    new = services.keys.rotate(old.key_id, KeyRotate(grace_period_seconds=600))

    assert new.api_key != old.api_key
    assert new.scopes == old.scopes
    assert refusal(authorize(f"Bearer {old.api_key}")) is None
    assert refusal(authorize(f"Bearer {new.api_key}")) is None

    later = datetime.now(UTC) + timedelta(seconds=601)
    monkeypatch.setattr(keys_module, "utcnow", lambda: later)

    assert refusal(authorize(f"Bearer {old.api_key}")) == "invalid_api_key"
    assert refusal(authorize(f"Bearer {new.api_key}")) is None


def test_concurrent_invocations_each_log_their_own_callers_identity(
    authorize: Callable[[str | None], dict[str, Any]],
    make_tenant: Callable[..., IssuedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """acme's invocation is held between taking its identity and logging its line while globex's
    runs whole (events, not timing); acme's line must still name acme, globex's globex."""
    from authorizer import app

    acme, globex = make_tenant("acme"), make_tenant("globex")
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(app.logger.registered_formatter)
    app.logger._logger.addHandler(handler)
    acme_identified, globex_done = threading.Event(), threading.Event()
    add_metric = app.metrics.add_metric

    def held(**metric: Any) -> None:
        if metric["name"] == "AuthorizerAllowed" and threading.current_thread().name == "acme":
            acme_identified.set()
            assert globex_done.wait(30)
        add_metric(**metric)

    monkeypatch.setattr(app.metrics, "add_metric", held)
    first = threading.Thread(target=authorize, args=(f"Bearer {acme.api_key}",), name="acme")
    try:
        first.start()
        assert acme_identified.wait(30)
        authorize(f"Bearer {globex.api_key}")
        globex_done.set()
        first.join(30)
        app.logger.info("later, in the thread that ran globex's invocation")
    finally:
        app.logger._logger.removeHandler(handler)

    allowed = [json.loads(line) for line in lines.getvalue().splitlines() if '"allowed"' in line]
    assert [(line["tenant_id"], line["key_id"]) for line in allowed] == [
        ("globex", globex.key_id),
        ("acme", acme.key_id),
    ]
    later = json.loads(lines.getvalue().splitlines()[-1])
    assert later["message"].startswith("later") and "tenant_id" not in later and "key_id" not in later


def test_a_denial_and_the_next_functions_lines_never_carry_the_previous_callers_identity(
    authorize: Callable[[str | None], dict[str, Any]], make_tenant: Callable[..., IssuedKey]
) -> None:
    """Powertools' Logger keeps appended keys across warm invocations, and in the local cloud every
    function shares one process: after acme is allowed, the next invocation in the same thread (a
    denial, then a sweep) must log no tenant_id or key_id."""
    from authorizer import app
    from sweeper import app as sweeper_app

    acme = make_tenant("acme")
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    for logger in (app.logger, sweeper_app.logger):
        handler.setFormatter(logger.registered_formatter)
        logger._logger.addHandler(handler)
    try:
        assert refusal(authorize(f"Bearer {acme.api_key}")) is None
        assert refusal(authorize("Bearer sk-not-a-key")) == "invalid_api_key"
        sweeper_app.lambda_handler({}, FakeContext())
    finally:
        for logger in (app.logger, sweeper_app.logger):
            logger._logger.removeHandler(handler)

    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    allowed = [line for line in logged if line["message"] == "allowed"]
    assert [(line["tenant_id"], line["key_id"]) for line in allowed] == [("acme", acme.key_id)]
    after = logged[logged.index(allowed[0]) + 1 :]
    assert {line["message"] for line in after} >= {"denied", "sweep done"}
    assert all("tenant_id" not in line and "key_id" not in line for line in after), after
