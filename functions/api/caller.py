"""The calling principal of the current request (with a scope check), and the process's services."""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.event_handler.api_gateway import Router

from stratus_core.http.auth import principal_from_authorizer, require_scope
from stratus_core.keys import Principal, Scope
from stratus_core.services import Services


def caller(router: Router, scope: Scope | None) -> Principal:
    """The principal the authorizer put on this request; `scope=None` accepts any valid key."""
    authorizer = router.current_event.request_context.authorizer  # type: ignore[attr-defined]
    principal = principal_from_authorizer(authorizer.get_lambda if authorizer else None)
    return principal if scope is None else require_scope(principal, scope)


def services(router: Router) -> Services:
    """The services `api.app` built for this process, handed to the routes in the resolver's context."""
    found = router.context["services"]
    assert isinstance(found, Services)
    return found


def create_id(
    router: Router, principal: Principal, route: str, new_id: Callable[[], str], body: str | None = None
) -> tuple[str, bool]:
    """The id a create makes its object under, the same for a client's retry of it (`creates.py`);
    and whether an earlier attempt claimed it. `body` identifies the request: its JSON body unless
    given (an upload gives a digest of its fields: a multipart body's boundary changes on every attempt)."""
    from stratus_core.inference import retry_identity

    event = router.current_event
    headers = {name.lower(): value for name, value in (event.headers or {}).items()}
    text = body if body is not None else event.decoded_body or ""
    identity = retry_identity(principal.tenant_id, principal.key_id, route, text, headers)
    return services(router).creates.object_id(identity, principal.tenant_id, new_id)
