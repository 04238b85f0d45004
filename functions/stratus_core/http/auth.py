"""Bearer keys in, principals out: the authorizer's logic and the API's scope checks."""

from __future__ import annotations

from collections.abc import Mapping

from stratus_core.errors import MissingScope, Unauthenticated
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


def principal_from_authorizer(authorizer_context: Mapping[str, object] | None) -> Principal:
    """The caller as the authorizer described it; the only source of a request's tenant."""
    if not authorizer_context or "tenant_id" not in authorizer_context:
        raise Unauthenticated("request reached the API without an authorizer context")
    return Principal.from_context(dict(authorizer_context))


def require_scope(principal: Principal, scope: Scope) -> Principal:
    if scope not in principal.scopes:
        raise MissingScope(scope.value)
    return principal
