"""Domain exceptions. The HTTP layer maps each class to a status in one place (`http/errors.py`)."""

from __future__ import annotations

from dataclasses import dataclass
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


class NotServed(StratusError):
    """An OpenAI endpoint this deployment does not serve (a 404 that says so)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidRequest(StratusError):
    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


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


@dataclass(frozen=True)
class RateWindow:
    """Where the caller stands in the current minute's limits (OpenAI's `x-ratelimit-*` headers)."""

    requests_limit: int
    requests_remaining: int
    tokens_limit: int
    tokens_remaining: int
    resets_in_seconds: int


class LimitExceeded(StratusError):
    """A limit refused the request; `retry_after` is whole seconds until it may pass."""

    def __init__(self, limit: Limit, retry_after: int, detail: str, window: RateWindow | None = None) -> None:
        super().__init__(f"{limit.value} limit reached: {detail}")
        self.limit = limit
        self.retry_after = retry_after
        self.window = window


class RequestExceedsLimit(StratusError):
    """The request can never be admitted, however long it waits: its worst case alone is above a
    limit, or the limit is zero. Retrying cannot help, and the client is told so."""

    def __init__(self, limit: Limit, needed: int, allowed: int) -> None:
        if allowed == 0:
            message = f"the tenant's {limit.value} is 0: no request can be admitted until it is raised; do not retry"
        else:
            message = f"request needs up to {needed} tokens, more than the tenant's {limit.value} of {allowed}"
        super().__init__(message)
        self.limit = limit
        self.needed = needed
        self.allowed = allowed


class LimitIsZero(RequestExceedsLimit):
    """The tenant's per-minute or in-flight limit is 0: no request is admitted until an operator
    raises it. No wait lifts it, so it is not answered like a rate limit (a 429, which many
    clients' retry helpers retry whatever the headers say) but as a permission the tenant lacks:
    403 `limit_zero`, `x-should-retry: false`, no `Retry-After`."""

    def __init__(self, limit: Limit) -> None:
        super().__init__(limit, 1, 0)


class JobNotReady(StratusError):
    """The request was admitted but its answer is not ready within the wait: the client retries and
    its retry attaches to the same job (`code`: `model_starting`, `still_running`, or `flex_waiting`
    for a flex request still held for a warm endpoint)."""

    def __init__(self, job_id: str, code: str, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.code = code
        self.retry_after = retry_after


class IdempotencyMismatch(Conflict):
    """The same idempotency key came with a different request body."""


class TenantBusy(StratusError):
    """The tenant's own item is taking more writes than DynamoDB gives one item (about 1,000 write
    units a second: `docs/dynamodb-ceilings.md`): a 429 that tells the client to slow down, as a rate
    limit does. Nothing was admitted, so nothing is over any limit."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("this tenant's requests arrive faster than its limit counters can take them; retry shortly")
        self.retry_after = retry_after


class Unavailable(StratusError):
    """A transient condition (e.g. sustained write contention); the client should retry."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(StratusError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"request body is larger than {limit_bytes} bytes")
        self.limit_bytes = limit_bytes
