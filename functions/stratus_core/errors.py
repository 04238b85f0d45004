"""Domain exceptions. The HTTP layer maps each class to a status in one place (`http/errors.py`)."""

from __future__ import annotations

from enum import StrEnum


class StratusError(Exception):
    """Base of every error the domain raises on purpose."""


class NotFound(StratusError):
    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} '{identifier}' not found")
        self.kind = kind
        self.identifier = identifier


class Conflict(StratusError):
    pass


class InvalidRequest(StratusError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Unauthenticated(StratusError):
    """The caller presented no usable key. The message never contains the key."""


class Forbidden(StratusError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class TenantSuspended(Forbidden):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant '{tenant_id}' is suspended", code="tenant_suspended")


class MissingScope(Forbidden):
    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the '{scope}' scope", code="insufficient_scope")


class Limit(StrEnum):
    REQUESTS_PER_MINUTE = "requests_per_minute"
    TOKENS_PER_MINUTE = "tokens_per_minute"
    TOKENS_PER_MONTH = "tokens_per_month"
    MAX_IN_FLIGHT = "max_in_flight"


class LimitExceeded(StratusError):
    """A limit refused the request; `retry_after` is whole seconds until it may pass."""

    def __init__(self, limit: Limit, retry_after: int, detail: str) -> None:
        super().__init__(f"{limit.value} limit reached: {detail}")
        self.limit = limit
        self.retry_after = retry_after


class RequestExceedsLimit(InvalidRequest):
    """The request could never be admitted: its worst case alone is above a limit."""

    def __init__(self, limit: Limit, needed: int, allowed: int) -> None:
        super().__init__(
            f"request needs up to {needed} tokens, more than the tenant's {limit.value} of {allowed}",
            param="max_tokens",
        )
        self.limit = limit


class Unavailable(StratusError):
    """A transient condition (e.g. sustained write contention); the client should retry."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(StratusError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"request body is larger than {limit_bytes} bytes")
        self.limit_bytes = limit_bytes
