"""Admission: reserve a request's worst-case tokens before it runs.

Every limit is enforced by DynamoDB conditions inside one transaction, never by reading a
counter and writing it back: 50 concurrent requests against a limit of 10 admit exactly 10.

The reserved amount is an upper bound found without a tokenizer. Byte-level BPE tokenizers
(the Llama/SmolLM family, GPT-2) never make more tokens than UTF-8 bytes, so the bound is the
prompt's bytes, plus the chat template's special tokens and default system prompt, plus
`max_tokens`. When the job ends, `settlement.Settlement` replaces the bound with the model
server's own counts, or gives it back: admission only ever adds.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from stratus_core.clock import day_key, minute_key, month_key, seconds_to_next_minute, seconds_to_next_month, utcnow
from stratus_core.errors import (
    Limit,
    LimitExceeded,
    LimitIsZero,
    NotFound,
    RateWindow,
    RequestExceedsLimit,
    TenantBusy,
    TenantSuspended,
    Unavailable,
)
from stratus_core.jobs import Lane
from stratus_core.pricing import Money, PriceCatalog
from stratus_core.tenants import Tenant, TenantStore

logger = logging.getLogger(__name__)

TEMPLATE_OVERHEAD_TOKENS = 128
"""Chat-template special tokens and the default system prompt a template may add (SmolLM2's is 36 tokens)."""
PER_MESSAGE_OVERHEAD_TOKENS = 8
"""Role name and the start/end markers around each message."""


def worst_case_prompt_tokens(texts: Iterable[str]) -> int:
    """An upper bound on the prompt's tokens: one per UTF-8 byte plus the template's overhead."""
    return TEMPLATE_OVERHEAD_TOKENS + sum(len(text.encode("utf-8")) + PER_MESSAGE_OVERHEAD_TOKENS for text in texts)


ReservationLayout = Literal["held", "row", "legacy"]


class ReservationState(StrEnum):
    RESERVED = "reserved"
    SETTLED = "settled"
    RELEASED = "released"


class Reservation(BaseModel):
    """One admitted request's claim on its tenant's limits; also its usage record once settled."""

    job_id: str
    tenant_id: str
    model: str
    tokens: int = Field(description="Worst-case tokens reserved at admission.")
    minute: str
    day: str
    month: str
    created_at: datetime
    state: ReservationState = ReservationState.RESERVED
    lane: Lane = Field(default="interactive", description="Batch reservations count against the month only.")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: Money | None = None
    finished_at: datetime | None = None
    release_reason: str | None = None
    lines: list[int] | None = Field(
        default=None, description="A batch chunk's reservation: the lines it admitted (`batches.chunks`)."
    )
    layout: ReservationLayout = Field(
        default="legacy",
        description="Where it is recorded: `held` on the tenant item (interactive and flex), `row` its own"
        " `RESV#` item (batch lines), `legacy` a `RESV#` item of the layout before (its own counters).",
    )


# What the store reports; the service turns these into the errors callers see.
class LimitHit(Exception):
    def __init__(self, limit: Limit) -> None:
        super().__init__(limit.value)
        self.limit = limit


class TenantInactive(Exception):
    pass


class TenantItemThrottled(Exception):
    """The tenant's own item cannot take this admission now: DynamoDB throttled the write through
    botocore's retries, or the item would pass DynamoDB's 400 KB (too many requests held at once)."""


class RetryableConflict(Exception):
    """Another writer got there first (limits edited, transaction conflict): read again and retry."""


@dataclass(frozen=True)
class Claim:
    """A request's claim to be the one job for its `fingerprint`, written in the same transaction as
    its reservation, so that a client's retry finds the job instead of admitting a second one.

    `exclusive` (an `Idempotency-Key`): the first request with the key wins, every later one
    attaches to it. Not exclusive (an SDK's first attempt, which a deliberate repeat of the same
    body also is): the claim points at the newest job with that body."""

    fingerprint: str
    body_hash: str
    exclusive: bool
    expires_at: int  # epoch seconds; an expired claim no longer holds
    replaces: str | None = None  # the job id of a dead earlier attempt whose claim this one may take


@dataclass(frozen=True)
class ClaimedJob:
    job_id: str
    body_hash: str


class ClaimTaken(Exception):
    """An exclusive claim is held by an earlier request: attach to its job."""

    def __init__(self, claimed: ClaimedJob) -> None:
        super().__init__(claimed.job_id)
        self.claimed = claimed


@dataclass(frozen=True)
class Admitted:
    reservation: Reservation
    window: RateWindow | None  # where the tenant stands in this minute (interactive requests only)


class AdmissionStore(Protocol):
    def reserve(
        self, tenant: Tenant, reservation: Reservation, expires_at: int, claim: Claim | None = None
    ) -> Reservation:
        """Atomically count the request against every limit, record it, and write its claim; if a
        reservation with this job id exists, return it unchanged. Raises `LimitHit`,
        `TenantInactive`, `ClaimTaken` or `RetryableConflict`."""
        ...

    def reserve_batch(
        self, tenant: Tenant, reservation: Reservation, expires_at: int, bounds: dict[int, int] | None = None
    ) -> Reservation:
        """Like `reserve`, against the monthly quota only. With `bounds` (a chunk's lines and their
        worst-case tokens, in order), the lines that fit the month's room, taken in order as if
        admitted one by one (`fit_lines`), are reserved together: the reservation's `lines` and
        `tokens`; `LimitHit` when none fits. A reservation under the same job id is returned as
        it is, with the lines it admitted."""
        ...

    def minute_counts(self, tenant_id: str, minute: str) -> tuple[int, int]:
        """Requests and tokens counted in `minute` so far (read without a lock: a snapshot)."""
        ...

    def find_claim(self, tenant_id: str, fingerprint: str, now: datetime) -> ClaimedJob | None: ...

    def get(self, tenant_id: str, job_id: str) -> Reservation | None: ...


def fit_lines(bounds: dict[int, int], room: int) -> dict[int, int]:
    """The lines a month with `room` tokens left admits, taken in order as if admitted one by one:
    a line that does not fit is refused and the next ones are still tried."""
    fitted: dict[int, int] = {}
    for line, tokens in sorted(bounds.items()):
        if tokens <= room:
            fitted[line] = tokens
            room -= tokens
    return fitted


@dataclass(frozen=True)
class ChunkAdmission:
    """A chunk's admission: its reservation (None when no line was admitted) and each refused line's reason."""

    reservation: Reservation | None
    refused: dict[int, LimitExceeded | RequestExceedsLimit | NotFound]


ABANDONED_AFTER = timedelta(seconds=60)
"""Longer than any API invocation (the API function's timeout is 29 s): an admission held this long
without its job was left by an invocation that is over."""


class AdmissionService:
    def __init__(
        self,
        tenants: TenantStore,
        store: AdmissionStore,
        catalog: PriceCatalog,
        *,
        clock: Callable[[], datetime] = utcnow,
        attempts: int = 8,
        retention_days: int = 400,
    ) -> None:
        self._tenants = tenants
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._attempts = attempts
        self._retention_seconds = retention_days * 86_400

    def reserve_batch(
        self, tenant_id: str, job_id: str, model: str, prompt_tokens_bound: int, max_tokens: int
    ) -> Reservation:
        """Admit one batch request against the monthly quota (not the per-minute limits or in-flight)."""
        return self.reserve(tenant_id, job_id, model, prompt_tokens_bound, max_tokens, lane="batch")

    def admit_chunk(self, tenant_id: str, chunk_id: str, model: str, bounds: dict[int, int]) -> ChunkAdmission:
        """Admit a batch chunk's lines (`bounds`: each line's worst-case tokens) against the month:
        one reservation for those that fit, in line order; the others are refused, each with the
        error a line admitted alone would have had (`model_not_found` for a model the tenant may
        not use, the month's quota otherwise). A redelivered start gets the reservation the first
        one made, with the same lines."""
        for attempt in range(self._attempts):
            tenant = self._active_tenant(tenant_id)
            try:
                self._check_model(tenant, model)
            except NotFound as not_found:
                return ChunkAdmission(None, dict.fromkeys(bounds, not_found))
            refused: dict[int, LimitExceeded | RequestExceedsLimit | NotFound] = {}
            candidates: dict[int, int] = {}
            for line, tokens in bounds.items():
                try:
                    self._check_fits_at_all(tenant, tokens, "batch")
                    candidates[line] = tokens
                except RequestExceedsLimit as too_big:
                    refused[line] = too_big
            now = self._clock()
            if not candidates:
                return ChunkAdmission(None, refused)
            reservation = Reservation(
                job_id=chunk_id,
                tenant_id=tenant_id,
                model=model,
                tokens=sum(candidates.values()),
                minute=minute_key(now),
                day=day_key(now),
                month=month_key(now),
                created_at=now,
                lane="batch",
                lines=sorted(candidates),
            )
            expires_at = int(now.timestamp()) + self._retention_seconds
            try:
                admitted = self._store.reserve_batch(tenant, reservation, expires_at, candidates)
            except LimitHit:
                admitted = None
            except TenantInactive:
                raise TenantSuspended(tenant_id) from None
            except RetryableConflict:
                time.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter, not a secret
                continue
            kept = set(admitted.lines or []) if admitted is not None else set()
            for line, tokens in candidates.items():
                if line not in kept:
                    refused[line] = self._refusal(Limit.TOKENS_PER_MONTH, tenant, tokens, now, None)
            return ChunkAdmission(admitted, refused)
        raise Unavailable("too much concurrent admission traffic for this tenant; retry shortly")

    def reserve(
        self,
        tenant_id: str,
        job_id: str,
        model: str,
        prompt_tokens_bound: int,
        max_tokens: int,
        lane: Lane = "interactive",
    ) -> Reservation:
        """Admit one request or raise the error that says which limit refused it."""
        return self.admit(tenant_id, job_id, model, prompt_tokens_bound, max_tokens, lane).reservation

    def admit(
        self,
        tenant_id: str,
        job_id: str,
        model: str,
        prompt_tokens_bound: int,
        max_tokens: int,
        lane: Lane = "interactive",
        claim: Claim | None = None,
    ) -> Admitted:
        """`reserve`, with the claim written in the same transaction, and where the tenant stands in
        this minute's limits afterwards."""
        tokens = prompt_tokens_bound + max_tokens
        for attempt in range(self._attempts):
            tenant = self._active_tenant(tenant_id)
            self._check_model(tenant, model)
            self._check_fits_at_all(tenant, tokens, lane)
            now = self._clock()
            reservation = Reservation(
                job_id=job_id,
                tenant_id=tenant_id,
                model=model,
                tokens=tokens,
                minute=minute_key(now),
                day=day_key(now),
                month=month_key(now),
                created_at=now,
                lane=lane,
            )
            expires_at = int(now.timestamp()) + self._retention_seconds
            try:
                if lane == "batch":
                    return Admitted(self._store.reserve_batch(tenant, reservation, expires_at), None)
                admitted = self._store.reserve(tenant, reservation, expires_at, claim)
            except LimitHit as hit:
                window = self.window(tenant, now, limit_hit=hit.limit) if lane != "batch" else None
                raise self._refusal(hit.limit, tenant, tokens, now, window) from None
            except TenantInactive:
                raise TenantSuspended(tenant_id) from None
            except TenantItemThrottled:  # retrying at once would only add to the hot item's load
                raise TenantBusy() from None
            except RetryableConflict:  # limits edited meanwhile, or a transaction conflict on a hot item
                time.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter, not a secret
                continue
            return Admitted(admitted, self.window(tenant, now))
        raise Unavailable("too much concurrent admission traffic for this tenant; retry shortly")

    def window(self, tenant: Tenant, now: datetime, limit_hit: Limit | None = None) -> RateWindow:
        """The tenant's standing in the minute of `now` (OpenAI's rate-limit headers): a snapshot of
        the minute's counter, read after this request was counted (or refused)."""
        limits = tenant.limits
        requests, tokens = self._store.minute_counts(tenant.tenant_id, minute_key(now))
        requests_left = 0 if limit_hit is Limit.REQUESTS_PER_MINUTE else limits.requests_per_minute - requests
        tokens_left = 0 if limit_hit is Limit.TOKENS_PER_MINUTE else limits.tokens_per_minute - tokens
        return RateWindow(
            requests_limit=limits.requests_per_minute,
            requests_remaining=max(0, requests_left),
            tokens_limit=limits.tokens_per_minute,
            tokens_remaining=max(0, tokens_left),
            resets_in_seconds=seconds_to_next_minute(now),
        )

    def current_window(self, tenant_id: str) -> RateWindow | None:
        """The tenant's standing now, for an answer that admitted nothing new (a retry that attached)."""
        tenant = self._tenants.get(tenant_id)
        return self.window(tenant, self._clock()) if tenant is not None else None

    def find_claim(self, tenant_id: str, fingerprint: str) -> ClaimedJob | None:
        return self._store.find_claim(tenant_id, fingerprint, self._clock())

    def attempt_is_dead(self, tenant_id: str, job_id: str) -> bool:
        """Whether the admission a claim points at will never get its job: it was given back (the
        job's put kept failing and intake released it), or it is still held but older than any API
        invocation lives (`ABANDONED_AFTER`; the invocation died between admission and the job's put,
        and the sweeper releases such orphans after 15 minutes). Its claim then holds nothing, and a
        retry with the same Idempotency-Key may take it (`Claim.replaces`) instead of hearing "being
        accepted" until the claim expires. A younger held one may still be on its way: not dead."""
        reservation = self._store.get(tenant_id, job_id)
        if reservation is None or reservation.state is not ReservationState.RESERVED:
            return True
        return self._clock() - reservation.created_at > ABANDONED_AFTER

    def _active_tenant(self, tenant_id: str) -> Tenant:
        """The tenant as stored now; `NotFound` or `TenantSuspended` when it cannot be admitted to."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise NotFound("tenant", tenant_id)
        if not tenant.is_active:
            raise TenantSuspended(tenant_id)
        return tenant

    def _check_model(self, tenant: Tenant, model: str) -> None:
        self._catalog.price(model)
        if tenant.allowed_models is not None and model not in tenant.allowed_models:
            raise NotFound("model", model)

    @staticmethod
    def _check_fits_at_all(tenant: Tenant, tokens: int, lane: str) -> None:
        """Refuse, once and for all, what no wait could ever admit."""
        limits = tenant.limits
        if lane != "batch":  # interactive and flex share the tenant's rate limits, as at OpenAI
            for limit, value in (
                (Limit.REQUESTS_PER_MINUTE, limits.requests_per_minute),
                (Limit.TOKENS_PER_MINUTE, limits.tokens_per_minute),
                (Limit.MAX_IN_FLIGHT, limits.max_in_flight),
            ):
                if value == 0:
                    raise LimitIsZero(limit)
        if lane != "batch" and tokens > limits.tokens_per_minute:
            raise RequestExceedsLimit(Limit.TOKENS_PER_MINUTE, tokens, limits.tokens_per_minute)
        if tokens > limits.tokens_per_month:
            raise RequestExceedsLimit(Limit.TOKENS_PER_MONTH, tokens, limits.tokens_per_month)

    @staticmethod
    def _refusal(limit: Limit, tenant: Tenant, tokens: int, now: datetime, window: RateWindow | None) -> LimitExceeded:
        limits = tenant.limits
        if limit is Limit.TOKENS_PER_MONTH:
            detail = f"{tokens} more tokens would pass this month's {limits.tokens_per_month}"
            return LimitExceeded(limit, seconds_to_next_month(now), detail, window)
        if limit is Limit.MAX_IN_FLIGHT:
            return LimitExceeded(limit, 1, f"{limits.max_in_flight} requests already in flight", window)
        if limit is Limit.TOKENS_PER_MINUTE:
            detail = f"{tokens} more tokens would pass this minute's {limits.tokens_per_minute}"
        else:
            detail = f"{limits.requests_per_minute} requests already made this minute"
        return LimitExceeded(limit, seconds_to_next_minute(now), detail, window)
