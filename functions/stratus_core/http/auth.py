"""Bearer keys in, principals out: the authorizer's logic and the API's scope checks."""

from __future__ import annotations

from collections.abc import Mapping

from stratus_core.errors import Forbidden, MissingScope, Unauthenticated
from stratus_core.keys import KeyService, Principal, Scope


def bearer_key(authorization: str | None) -> str:
    """The key in `Authorization: Bearer sk-…`; `Unauthenticated` for anything else."""
    if not authorization:
        raise Unauthenticated("missing Authorization header")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthenticated("Authorization must be 'Bearer <API key>'")
    return credentials.strip()


def authorize(authorization: str | None, keys: KeyService) -> Principal:
    return keys.authenticate(bearer_key(authorization))


def denial_context(code: str, reason: str) -> dict[str, str]:
    """What the authorizer passes on for a key it refuses (the API answers it before any route)."""
    return {"denied": code, "reason": reason}


def principal_from_authorizer(authorizer_context: Mapping[str, object] | None) -> Principal:
    """The caller as the authorizer described it; the only source of a request's tenant. A refused
    key raises its refusal (401 `invalid_api_key`, or 403 for a suspended tenant)."""
    if authorizer_context and "denied" in authorizer_context:
        code, reason = str(authorizer_context["denied"]), str(authorizer_context.get("reason", "access denied"))
        if code == "invalid_api_key":
            raise Unauthenticated(f"Incorrect API key provided: {reason}")
        raise Forbidden(reason, code)
    if not authorizer_context or "tenant_id" not in authorizer_context:
        raise Unauthenticated("request reached the API without an authorizer context")
    return Principal.from_context(dict(authorizer_context))


def require_scope(principal: Principal, scope: Scope) -> Principal:
    if scope not in principal.scopes:
        raise MissingScope(scope.value)
    return principal
