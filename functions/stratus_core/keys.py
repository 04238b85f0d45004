"""API keys: issued once, stored as a SHA-256 hash, scoped, expiring, revocable, rotatable.

A key is `sk-` followed by 43 URL-safe characters (256 random bits). Only its hash and a short,
non-secret display prefix are ever stored; the plaintext exists in one response and nowhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from stratus_core.clock import utcnow
from stratus_core.errors import Conflict, InvalidRequest, NotFound, TenantSuspended, Unauthenticated
from stratus_core.tenants import TenantStore

KEY_PATTERN = re.compile(r"^sk-[A-Za-z0-9_-]{43}$")
PREFIX_LENGTH = 9  # "sk-" and 6 characters: 36 of the 256 bits, too few to guess the rest from
DEFAULT_ROTATION_GRACE = timedelta(hours=24)


class Scope(StrEnum):
    INFERENCE = "inference"
    BATCH = "batch"
    USAGE = "usage"
    ADMIN = "admin"


class KeyStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ApiKey(BaseModel):
    """What is stored and shown about a key: never the key itself."""

    key_id: str
    tenant_id: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    rotated_to: str | None = Field(default=None, description="The key that replaces this one, if rotated.")

    def status_at(self, now: datetime) -> KeyStatus:
        if self.revoked_at is not None and self.revoked_at <= now:
            return KeyStatus.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyStatus.EXPIRED
        return KeyStatus.ACTIVE


class ApiKeyView(ApiKey):
    status: KeyStatus


class IssuedKey(ApiKey):
    """The one response that carries the plaintext key."""

    api_key: str


class KeyList(BaseModel):
    object: str = "list"
    data: list[ApiKeyView]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] = Field(min_length=1, max_length=4)
    expires_at: datetime | None = Field(default=None, description="ISO-8601 with a time zone; null never expires.")


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_period_seconds: int = Field(
        default=int(DEFAULT_ROTATION_GRACE.total_seconds()),
        ge=0,
        le=30 * 24 * 3600,
        description="How long the old key keeps working after the new one is issued.",
    )


class Principal(BaseModel):
    """Who is calling: built from the authorizer's context, never from the request."""

    tenant_id: str
    key_id: str
    scopes: frozenset[Scope]

    def to_context(self) -> dict[str, str]:
        return {
            "tenant_id": self.tenant_id,
            "key_id": self.key_id,
            "scopes": " ".join(sorted(scope.value for scope in self.scopes)),
        }

    @classmethod
    def from_context(cls, context: dict[str, object]) -> Principal:
        scopes = str(context.get("scopes", "")).split()
        return cls(
            tenant_id=str(context["tenant_id"]),
            key_id=str(context["key_id"]),
            scopes=frozenset(Scope(scope) for scope in scopes),
        )


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("ascii")).hexdigest()


def generate_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def _new_key(tenant_id: str, scopes: list[Scope], expires_at: datetime | None, now: datetime) -> IssuedKey:
    api_key = generate_key()
    return IssuedKey(
        key_id=new_key_id(),
        tenant_id=tenant_id,
        prefix=api_key[:PREFIX_LENGTH],
        scopes=scopes,
        created_at=now,
        expires_at=expires_at,
        api_key=api_key,
    )


class KeyStore(Protocol):
    def put(self, key_hash: str, key: ApiKey) -> None: ...

    def get_by_hash(self, key_hash: str) -> tuple[str, ApiKey] | None: ...

    def get_by_id(self, key_id: str) -> tuple[str, ApiKey] | None: ...

    def list_for_tenant(self, tenant_id: str) -> list[ApiKey]: ...

    def revoke(self, key_hash: str, at: datetime) -> ApiKey: ...

    def rotate(self, old_hash: str, new_hash: str, new_key: ApiKey, old_expires_at: datetime) -> None:
        """Store the new key and mark the old one rotated, atomically; `Conflict` if already rotated."""
        ...

    def reissue(self, old_hash: str, new_hash: str, key: ApiKey) -> None:
        """Replace the key's secret: the record under `old_hash` moves to `new_hash`, atomically;
        `Conflict` if it was revoked or rotated meanwhile."""
        ...


class KeyService:
    def __init__(self, keys: KeyStore, tenants: TenantStore) -> None:
        self._keys = keys
        self._tenants = tenants

    def create(
        self, tenant_id: str, request: KeyCreate, key_id: str | None = None, *, retried: bool = False
    ) -> IssuedKey:
        """Issue a key (under `key_id` when given). `retried`: an earlier attempt of this create
        claimed `key_id` and may have stored the key, but its answer, the only place the secret ever
        appears, was lost. The key is then issued again under the same id with a new secret, and
        the secret nobody received stops working: one key, whose secret its creator holds."""
        if retried and key_id is not None:
            reissued = self._reissue(tenant_id, key_id)
            if reissued is not None:
                return reissued
        now = utcnow()
        if self._tenants.get(tenant_id) is None:
            raise NotFound("tenant", tenant_id)
        if request.expires_at is not None:
            if request.expires_at.tzinfo is None:
                raise InvalidRequest("expires_at must include a time zone", param="expires_at")
            if request.expires_at <= now:
                raise InvalidRequest("expires_at must be in the future", param="expires_at")
        issued = _new_key(tenant_id, sorted(set(request.scopes)), request.expires_at, now)
        if key_id is not None:
            issued = issued.model_copy(update={"key_id": key_id})
        self._keys.put(hash_key(issued.api_key), ApiKey(**issued.model_dump(exclude={"api_key"})))
        return issued

    def _reissue(self, tenant_id: str, key_id: str) -> IssuedKey | None:
        found = self._keys.get_by_id(key_id)
        if found is None:  # the first attempt stopped before storing it
            return None
        old_hash, key = found
        if key.tenant_id != tenant_id:
            raise Conflict(f"API key {key_id} belongs to another tenant")
        api_key = generate_key()
        issued = IssuedKey(**{**key.model_dump(), "prefix": api_key[:PREFIX_LENGTH], "api_key": api_key})
        self._keys.reissue(old_hash, hash_key(api_key), ApiKey(**issued.model_dump(exclude={"api_key"})))
        return issued

    def import_key(self, tenant_id: str, api_key: str, scopes: list[Scope]) -> IssuedKey:
        """Register a key the operator chose (e.g. `STRATUS_ADMIN_KEY` for scripts); stored hashed too.
        Importing the same key again returns it without a second record."""
        if not KEY_PATTERN.fullmatch(api_key):
            raise InvalidRequest("an API key is 'sk-' followed by 43 URL-safe characters", param="api_key")
        if self._tenants.get(tenant_id) is None:
            raise NotFound("tenant", tenant_id)
        found = self._keys.get_by_hash(hash_key(api_key))
        if found is not None:
            return IssuedKey(**found[1].model_dump(), api_key=api_key)
        issued = _new_key(tenant_id, sorted(set(scopes)), None, utcnow())
        issued = issued.model_copy(update={"api_key": api_key, "prefix": api_key[:PREFIX_LENGTH]})
        self._keys.put(hash_key(api_key), ApiKey(**issued.model_dump(exclude={"api_key"})))
        return issued

    def authenticate(self, api_key: str) -> Principal:
        """The principal behind a presented key, or `Unauthenticated`/`TenantSuspended`.

        The lookup is by hash; the stored hash is compared again in constant time so that no
        code path ever compares secrets with `==`.
        """
        if not KEY_PATTERN.fullmatch(api_key):
            raise Unauthenticated("malformed API key")
        presented_hash = hash_key(api_key)
        found = self._keys.get_by_hash(presented_hash)
        if found is None or not hmac.compare_digest(found[0], presented_hash):
            raise Unauthenticated("unknown API key")
        key = found[1]
        status = key.status_at(utcnow())
        if status is not KeyStatus.ACTIVE:
            raise Unauthenticated(f"API key {key.key_id} is {status.value}")
        tenant = self._tenants.get(key.tenant_id)
        if tenant is None:
            raise Unauthenticated(f"API key {key.key_id} belongs to no tenant")
        if not tenant.is_active:
            raise TenantSuspended(tenant.tenant_id)
        return Principal(tenant_id=key.tenant_id, key_id=key.key_id, scopes=frozenset(key.scopes))

    def list(self, tenant_id: str) -> list[ApiKeyView]:
        if self._tenants.get(tenant_id) is None:
            raise NotFound("tenant", tenant_id)
        now = utcnow()
        keys = sorted(self._keys.list_for_tenant(tenant_id), key=lambda key: key.created_at)
        return [ApiKeyView(**key.model_dump(), status=key.status_at(now)) for key in keys]

    def revoke(self, key_id: str) -> ApiKeyView:
        key_hash, _ = self._find(key_id)
        now = utcnow()
        key = self._keys.revoke(key_hash, now)
        return ApiKeyView(**key.model_dump(), status=key.status_at(now))

    def rotate(self, key_id: str, request: KeyRotate) -> IssuedKey:
        """Issue a replacement with the same tenant, scopes and expiry; the old key expires after the grace."""
        key_hash, old = self._find(key_id)
        now = utcnow()
        if old.status_at(now) is not KeyStatus.ACTIVE:
            raise Conflict(f"API key {key_id} is {old.status_at(now).value} and cannot be rotated")
        if old.rotated_to is not None:
            raise Conflict(f"API key {key_id} was already rotated to {old.rotated_to}")
        issued = _new_key(old.tenant_id, old.scopes, old.expires_at, now)
        grace_end = now + timedelta(seconds=request.grace_period_seconds)
        if old.expires_at is not None:
            grace_end = min(grace_end, old.expires_at)
        new_key = ApiKey(**issued.model_dump(exclude={"api_key"}))
        self._keys.rotate(key_hash, hash_key(issued.api_key), new_key, grace_end)
        return issued

    def _find(self, key_id: str) -> tuple[str, ApiKey]:
        found = self._keys.get_by_id(key_id)
        if found is None:
            raise NotFound("API key", key_id)
        return found
