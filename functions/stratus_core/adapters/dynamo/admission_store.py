"""Limit counters and reservations.

**Interactive and flex requests** (`layout` `held`): the reservation and every counter it moves live
on the tenant's own item, written with one conditional `UpdateItem` to admit and one to settle
(`tenant_counters.py` has the layout and why it is exact). The retry claim, when the client can
retry, is one more `PutItem`, written after the admission and before the job.

**Batch chunks** (`layout` `row`): a `RESV#` item per chunk of lines (`batches/chunks.py`), for
the lines the month admits and their summed bound (`lines`), written in one transaction with the
tenant item's month counter (a batch counts against the month only); settling it moves the `RESV#`
item, the month and the usage (a request per completed line) on the tenant item in one transaction
with the job. A batch started before chunks has one per line, settled the same way.

Usage table layout (partition `pk`, sort `sk`):

| pk             | sk                          | what                                                  |
| -------------- | --------------------------- | ----------------------------------------------------- |
| TENANT#<id>    | RESV#<job id>               | one batch chunk: reserved bound, then its real usage  |
| TENANT#<id>    | DAY#YYYY-MM-DD#MODEL#<name> | billable usage and cost per day and model (days over) |
| TENANT#<id>    | CLAIM#<fingerprint>         | the job a retried request attaches to (TTL 1 h / 24 h) |
| TENANT#<id>    | MONTH#…, MINUTE#…           | the previous layout's counters (read once: see below) |

The previous layout's `MONTH#` and `MINUTE#` items are read once per tenant, by the first admission
that finds the tenant item without counters, which starts from them.

A `RESV#` item still `reserved` carries `pending`, which puts it in the sparse
`PendingReservationsIndex`; its value is the job's index shard (`sparse_index.shard_of`), so held
reservations spread over 16 index partitions. Reservations written before sharding carry "1",
one of the shards, and are still found. `RESV#` items without a `layout` were written by the
previous layout (every lane, with the `MONTH#`/`MINUTE#` counters and the tenant's `in_flight`), and
settle as they were admitted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo import tenant_counters as tc
from stratus_core.adapters.dynamo.codec import from_item, to_attr, to_item
from stratus_core.adapters.dynamo.sparse_index import SHARDS, entries_before, shard_of
from stratus_core.adapters.dynamo.transactions import Cancelled, TransactionContended, transact
from stratus_core.adapters.dynamo.usage_rows import day_row_update
from stratus_core.admission import (
    Claim,
    ClaimedJob,
    ClaimTaken,
    LimitHit,
    Reservation,
    ReservationState,
    RetryableConflict,
    TenantInactive,
    TenantItemThrottled,
    fit_lines,
)
from stratus_core.clock import day_key, minute_key, month_key
from stratus_core.contract import Usage
from stratus_core.errors import Limit
from stratus_core.pricing import Cost
from stratus_core.settlement import Release, Settle
from stratus_core.tenants import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    Items = dict[str, TransactWriteItemTypeDef]

logger = logging.getLogger(__name__)

MINUTE_COUNTER_TTL_SECONDS = 2 * 86_400
PENDING_INDEX = "PendingReservationsIndex"
"""Sparse index of `RESV#` reservations still `reserved` (the `pending` attribute goes when they finish)."""
ATTEMPTS = 6
"""Writes to the tenant item built on a snapshot that turned out stale (a new minute, another
writer's counts) before giving up with `RetryableConflict`: each failed attempt returns the item as
it is, so the next one is built on the truth."""


def tenant_pk(tenant_id: str) -> dict[str, Any]:
    return {"S": f"TENANT#{tenant_id}"}


def _key(tenant_id: str, sk: str) -> dict[str, Any]:
    return {"pk": tenant_pk(tenant_id), "sk": {"S": sk}}


def _num(value: int) -> dict[str, Any]:
    return {"N": str(value)}


def usage_amounts(usage: Usage, cost: Cost, requests: int = 1) -> dict[str, int | Decimal]:
    """What settled requests (one, or a batch chunk's completed lines) add to their day's usage
    (`tenant_counters.USAGE_FIELDS`)."""
    return {
        "requests": requests,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "prompt_cost": cost.prompt_cost,
        "completion_cost": cost.completion_cost,
    }


THROTTLED = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
"""DynamoDB's throttling codes ("Error handling with DynamoDB"): on the tenant item, the item's
partition is over its write ceiling, or the table over its throughput."""


class TenantItemBusy(Exception):
    """The tenant item kept changing under a settlement through every attempt; retried by redelivery."""


class DynamoAdmissionStore:
    def __init__(self, usage_table: str, tenants_table: str) -> None:
        self._usage = usage_table
        self._tenants = tenants_table

    # -- admission -------------------------------------------------------------------------------
    def reserve(
        self, tenant: Tenant, reservation: Reservation, expires_at: int, claim: Claim | None = None
    ) -> Reservation:
        """Count the request on the tenant item (one conditional write), then write its claim."""
        admitted = self._admit(tenant, reservation)
        if claim is not None:  # also when the admission had landed on an attempt answered 500
            try:
                self.put_claim(tenant.tenant_id, reservation.job_id, claim, reservation.created_at)
            except ClaimTaken:
                self.settle_held(
                    admitted, Release("claim taken by an earlier request"), reservation.created_at, undo=True
                )
                raise
            except Exception:
                self.settle_held(
                    admitted, Release("the retry claim could not be written"), reservation.created_at, undo=True
                )
                raise
        return admitted

    def _admit(self, tenant: Tenant, reservation: Reservation) -> Reservation:
        snapshot: dict[str, Any] | None = None
        for _ in range(ATTEMPTS):
            update = self._admission_update(tenant, reservation, snapshot)
            try:
                old = self._apply(update.params(self._tenants, {"tenant_id": {"S": tenant.tenant_id}}))
            except ClientError as error:
                if aws.error_code(error) in THROTTLED:  # still, after botocore's retries: the item is hot
                    raise TenantItemThrottled() from error
                if aws.error_code(error) == "ValidationException" and "size" in str(error).lower():
                    raise TenantItemThrottled() from error  # 400 KB: about 8,000 held at once (the ceilings doc)
                raise
            if old is None:
                return reservation.model_copy(update={"layout": "held"})
            entry = tc.held_entries(old).get(reservation.job_id)
            if entry is not None:  # admitted before: a retried write that had landed
                stored = self._from_held(tenant.tenant_id, entry)
                return stored.model_copy(update={"model": reservation.model, "lane": reservation.lane})
            self._refuse(tenant, reservation, old)
            snapshot = old
        raise RetryableConflict()

    def reserve_batch(
        self, tenant: Tenant, reservation: Reservation, expires_at: int, bounds: dict[int, int] | None = None
    ) -> Reservation:
        """Tenant active and month within quota on the tenant item, and the `RESV#` item (a line's,
        or a chunk's with `bounds`), in one transaction: nothing per-minute, no in-flight slot.

        A chunk's first attempt asks for all its lines. When the month cannot take them, the
        tenant item as it was (returned by the failed condition) gives the month's room, and the
        next attempt asks for the lines that fit it (`fit_lines`): the month is never read apart
        from the write that counts it."""
        row = reservation.model_copy(update={"layout": "row"})
        snapshot: dict[str, Any] | None = None
        for _ in range(ATTEMPTS):
            try:
                update = self._admission_update(tenant, row, snapshot)
            except LimitHit as hit:  # the item's first count, from the previous layout's month
                row = self._fitted(tenant, row, hit, bounds, snapshot or {})
                continue
            tenant_update: Any = update.params(self._tenants, {"tenant_id": {"S": tenant.tenant_id}})
            tenant_update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            items: Items = {"tenant": {"Update": tenant_update}, "reservation": self._reservation_item(row, expires_at)}
            cancelled = self._transact(items)
            if cancelled is None:
                return row
            if cancelled.failed("reservation"):
                return self._existing(tenant.tenant_id, reservation.job_id)
            old = cancelled.old_items.get("tenant") or {}
            try:
                self._refuse(tenant, row, old)
            except LimitHit as hit:
                row = self._fitted(tenant, row, hit, bounds, old)
            snapshot = old
        raise RetryableConflict()

    def _fitted(
        self, tenant: Tenant, row: Reservation, hit: LimitHit, bounds: dict[int, int] | None, old: dict[str, Any]
    ) -> Reservation:
        """A chunk's reservation cut to the lines that fit the month's room as `old` shows it; the
        refusal itself for a single line, or when no line fits."""
        if bounds is None or hit.limit is not Limit.TOKENS_PER_MONTH:
            raise hit
        if old.get(tc.MONTH) is None:  # no counters on the item yet: the previous layout's month item
            used = self._legacy_counts(tenant.tenant_id, "MONTH#" + row.month)["tokens"]
        else:
            used = int(old.get(tc.MONTH_TOKENS, 0)) if old[tc.MONTH] >= row.month else 0
        fitted = fit_lines(bounds, tenant.limits.tokens_per_month - used)
        if not fitted:
            raise hit
        return row.model_copy(update={"tokens": sum(fitted.values()), "lines": sorted(fitted)})

    def _admission_update(self, tenant: Tenant, reservation: Reservation, snapshot: dict[str, Any] | None) -> tc.Update:
        """The write that counts `reservation`, built on `snapshot` (the tenant item as last seen),
        or, first, on the steady state: the item counting this minute and month already."""
        u = tc.Update()
        u.conditions.append(f"{u.name('status')} = {u.value({'S': 'active'})}")
        u.conditions.append(f"{u.name('updated_at')} = {u.value(to_attr(tenant.updated_at))}")
        limits, tokens = tenant.limits, reservation.tokens
        if reservation.lane != "batch":
            legacy = int((snapshot or {}).get(tc.LEGACY_IN_FLIGHT) or 0)
            legacy_name = u.name(tc.LEGACY_IN_FLIGHT)
            u.conditions.append(f"attribute_not_exists({legacy_name}) OR {legacy_name} <= {u.value(_num(legacy))}")
            entry = {"M": {"t": _num(tokens), "at": _num(tc.epoch_us(reservation.created_at))}}
            held = u.name(tc.HELD)
            if snapshot is None or tc.HELD in snapshot:
                job = f"{held}.{u.name(reservation.job_id)}"
                u.sets.append(f"{job} = {u.value(entry)}")
                u.conditions.append(f"attribute_not_exists({job})")
                slots = u.value(_num(limits.max_in_flight - legacy))
                u.conditions.append(f"attribute_exists({held}) AND size({held}) < {slots}")
            else:
                if legacy >= limits.max_in_flight:
                    raise LimitHit(Limit.MAX_IN_FLIGHT)
                u.sets.append(f"{held} = {u.value({'M': {reservation.job_id: entry}})}")
                u.conditions.append(f"attribute_not_exists({held})")
            minute_counts = [
                (tc.MINUTE_REQUESTS, "requests", 1, limits.requests_per_minute, Limit.REQUESTS_PER_MINUTE),
                (tc.MINUTE_TOKENS, "tokens", tokens, limits.tokens_per_minute, Limit.TOKENS_PER_MINUTE),
            ]
            self._window(u, tenant.tenant_id, tc.MINUTE, reservation.minute, "MINUTE#", minute_counts, snapshot)
        month_counts = [(tc.MONTH_TOKENS, "tokens", tokens, limits.tokens_per_month, Limit.TOKENS_PER_MONTH)]
        self._window(u, tenant.tenant_id, tc.MONTH, reservation.month, "MONTH#", month_counts, snapshot)
        return u

    def _window(
        self,
        u: tc.Update,
        tenant_id: str,
        key_attribute: str,
        current: str,
        legacy_prefix: str,
        counts: list[tuple[str, str, int, int, Limit]],
        snapshot: dict[str, Any] | None,
    ) -> None:
        """Add to one window's counts (the minute's or the month's), each within its limit."""
        key = u.name(key_attribute)
        stored = current if snapshot is None else snapshot.get(key_attribute)
        if stored is None:  # this item's first count: start from the previous layout's counter item
            legacy = self._legacy_counts(tenant_id, legacy_prefix + current)
            u.sets.append(f"{key} = {u.value({'S': current})}")
            u.conditions.append(f"attribute_not_exists({key})")
            for attribute, legacy_name, amount, limit, which in counts:
                start = legacy.get(legacy_name, 0) + amount
                if start > limit:
                    raise LimitHit(which)
                u.sets.append(f"{u.name(attribute)} = {u.value(_num(start))}")
        elif stored >= current:  # this window (or a later one, counted by a clock ahead of this one)
            u.conditions.append(f"{key} = {u.value({'S': stored})}")
            for attribute, _, amount, limit, _which in counts:
                name = u.name(attribute)
                u.sets.append(f"{name} = {name} + {u.value(_num(amount))}")
                u.conditions.append(f"{name} <= {u.value(_num(limit - amount))}")
        else:  # a new window: its counts start from this request
            u.sets.append(f"{key} = {u.value({'S': current})}")
            u.conditions.append(f"{key} = {u.value({'S': stored})}")
            for attribute, _, amount, _limit, _which in counts:
                u.sets.append(f"{u.name(attribute)} = {u.value(_num(amount))}")

    def _legacy_counts(self, tenant_id: str, sk: str) -> dict[str, int]:
        item = aws.dynamodb().get_item(TableName=self._usage, Key=_key(tenant_id, sk), ConsistentRead=True).get("Item")
        values = from_item(item) if item else {}
        return {name: int(values.get(name, 0)) for name in ("requests", "tokens")}

    @staticmethod
    def _refuse(tenant: Tenant, reservation: Reservation, old: dict[str, Any]) -> None:
        """Why a write to the tenant item failed its condition, from the item as it was: raise the
        refusal, or return when the item merely moved on (a new minute) and the write is rebuilt."""
        if not old or old.get("status") != "active":
            raise TenantInactive()
        if old.get("updated_at") != tenant.updated_at.isoformat():
            raise RetryableConflict()  # limits edited meanwhile: read them again
        limits, tokens = tenant.limits, reservation.tokens
        if reservation.lane != "batch":
            if tc.in_flight(old) >= limits.max_in_flight:
                raise LimitHit(Limit.MAX_IN_FLIGHT)
            if old.get(tc.MINUTE) is not None and old[tc.MINUTE] >= reservation.minute:
                if int(old.get(tc.MINUTE_REQUESTS, 0)) + 1 > limits.requests_per_minute:
                    raise LimitHit(Limit.REQUESTS_PER_MINUTE)
                if int(old.get(tc.MINUTE_TOKENS, 0)) + tokens > limits.tokens_per_minute:
                    raise LimitHit(Limit.TOKENS_PER_MINUTE)
        same_month = old.get(tc.MONTH) is not None and old[tc.MONTH] >= reservation.month
        if same_month and int(old.get(tc.MONTH_TOKENS, 0)) + tokens > limits.tokens_per_month:
            raise LimitHit(Limit.TOKENS_PER_MONTH)

    @staticmethod
    def _apply(params: dict[str, Any]) -> dict[str, Any] | None:
        """One conditional `UpdateItem`: None when applied; the item as it was (plain values, `{}` if
        there is none) when its condition failed."""
        try:
            aws.dynamodb().update_item(**params, ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as error:
            if aws.error_code(error) != "ConditionalCheckFailedException":
                raise
            item: Any = error.response.get("Item")
            return from_item(item) if item else {}
        return None

    def put_claim(self, tenant_id: str, job_id: str, claim: Claim, now: datetime) -> None:
        """Point the claim at this job, or any object a create makes (only if no live claim holds
        it, when it is exclusive; `ClaimTaken` then)."""
        put = self._claim_item(tenant_id, job_id, claim, now)["Put"]
        try:
            aws.dynamodb().put_item(**put)
        except ClientError as error:
            if aws.error_code(error) != "ConditionalCheckFailedException":
                raise
            old: Any = error.response.get("Item") or {}
            held = from_item(old)
            if held.get("job_id") == job_id:  # this very put landed before (answered 500)
                return
            raise ClaimTaken(ClaimedJob(str(held.get("job_id", "")), str(held.get("body_hash", "")))) from None

    # -- settlement of a held reservation ------------------------------------------------------------
    def settle_held(
        self, reservation: Reservation, billing: Settle | Release, at: datetime, *, undo: bool = False
    ) -> bool:
        """Take a held reservation off the tenant item, correct the minute's and month's counts to
        what was used (nothing for a release) and add the usage billing reads, in one conditional
        write; False if it was no longer held. `undo` also takes the request back out of the
        minute's count (an admission whose claim was refused: as if it had never been counted)."""
        snapshot: dict[str, Any] | None = None
        delta = (billing.usage.total_tokens if isinstance(billing, Settle) else 0) - reservation.tokens
        for _ in range(ATTEMPTS):
            u = tc.Update()
            job = f"{u.name(tc.HELD)}.{u.name(reservation.job_id)}"
            u.removes.append(job)
            u.conditions.append(f"attribute_exists({job})")
            minute = minute_key(at) if snapshot is None else snapshot.get(tc.MINUTE)
            if minute == reservation.minute:  # a past minute's count no longer limits anything
                u.conditions.append(f"{u.name(tc.MINUTE)} = {u.value({'S': minute})}")
                tokens = u.name(tc.MINUTE_TOKENS)
                u.sets.append(f"{tokens} = {tokens} + {u.value(_num(delta))}")
                if undo:
                    requests = u.name(tc.MINUTE_REQUESTS)
                    u.sets.append(f"{requests} = {requests} - {u.value(_num(1))}")
            month = month_key(at) if snapshot is None else snapshot.get(tc.MONTH)
            if month == reservation.month:
                u.conditions.append(f"{u.name(tc.MONTH)} = {u.value({'S': month})}")
                tokens = u.name(tc.MONTH_TOKENS)
                u.sets.append(f"{tokens} = {tokens} + {u.value(_num(delta))}")
            if isinstance(billing, Settle):
                self._add_usage(u, reservation, billing.usage, billing.cost)
            old = self._apply(u.params(self._tenants, {"tenant_id": {"S": reservation.tenant_id}}))
            if old is None:
                return True
            if reservation.job_id not in (old.get(tc.HELD) or {}):
                return False
            snapshot = old
        raise TenantItemBusy(f"tenant {reservation.tenant_id}: settling {reservation.job_id} kept conflicting")

    @staticmethod
    def _add_usage(u: tc.Update, reservation: Reservation, usage: Usage, cost: Cost, requests: int = 1) -> None:
        for field_name, amount in usage_amounts(usage, cost, requests).items():
            attribute = tc.usage_attribute(reservation.day, reservation.model, field_name)
            u.adds.append(f"{u.name(attribute)} {u.value(tc.num(amount))}")

    # -- reading ---------------------------------------------------------------------------------------
    def _from_held(self, tenant_id: str, entry: tc.Held) -> Reservation:
        """A held entry as a reservation; its model and lane are the job's (`Settlement` fills them in)."""
        return Reservation(
            job_id=entry.job_id,
            tenant_id=tenant_id,
            model="",
            tokens=entry.tokens,
            minute=entry.minute,
            day=day_key(entry.at),
            month=entry.month,
            created_at=entry.at,
            layout="held",
        )

    @staticmethod
    def _transact(items: Items) -> Cancelled | None:
        try:
            return transact(items)
        except TransactionContended:
            raise RetryableConflict() from None

    def _existing(self, tenant_id: str, job_id: str) -> Reservation:
        existing = self.get(tenant_id, job_id)
        if existing is None:  # pragma: no cover - the condition failed because it exists
            raise RetryableConflict()
        return existing

    def _reservation_item(self, reservation: Reservation, expires_at: int) -> TransactWriteItemTypeDef:
        """Record the reservation under its job id, once (in its shard of the pending index)."""
        pending = shard_of(reservation.job_id)
        return {
            "Put": {
                "TableName": self._usage,
                "Item": {
                    **_key(reservation.tenant_id, f"RESV#{reservation.job_id}"),
                    **to_item({**reservation.model_dump(), "expires_at": expires_at, "pending": pending}),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _claim_item(self, tenant_id: str, job_id: str, claim: Claim, now: datetime) -> TransactWriteItemTypeDef:
        """Point the claim at this job: only if no live claim exists, when it is exclusive."""
        put: Any = {
            "TableName": self._usage,
            "Item": {
                **_key(tenant_id, f"CLAIM#{claim.fingerprint}"),
                "job_id": {"S": job_id},
                "body_hash": {"S": claim.body_hash},
                "expires_at": _num(claim.expires_at),
            },
        }
        if claim.exclusive:
            put["ConditionExpression"] = "attribute_not_exists(pk) OR expires_at < :now"
            put["ExpressionAttributeValues"] = {":now": _num(int(now.timestamp()))}
            put["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            if claim.replaces is not None:  # the claim of a dead attempt may be taken, and only that one
                put["ConditionExpression"] += " OR job_id = :dead"
                put["ExpressionAttributeValues"][":dead"] = {"S": claim.replaces}
        return {"Put": put}

    def find_claim(self, tenant_id: str, fingerprint: str, now: datetime) -> ClaimedJob | None:
        """The job a live claim points at (expired claims, which TTL removes late, are ignored)."""
        item = (
            aws.dynamodb()
            .get_item(TableName=self._usage, Key=_key(tenant_id, f"CLAIM#{fingerprint}"), ConsistentRead=True)
            .get("Item")
        )
        if not item or int(item["expires_at"]["N"]) < now.timestamp():
            return None
        return ClaimedJob(item["job_id"]["S"], item["body_hash"]["S"])

    def minute_counts(self, tenant_id: str, minute: str) -> tuple[int, int]:
        item = self._tenant_item(tenant_id, tc.MINUTE, tc.MINUTE_REQUESTS, tc.MINUTE_TOKENS)
        if item.get(tc.MINUTE) != minute:
            return 0, 0
        return int(item.get(tc.MINUTE_REQUESTS, 0)), int(item.get(tc.MINUTE_TOKENS, 0))

    def _tenant_item(self, tenant_id: str, *attributes: str) -> dict[str, Any]:
        """The tenant item, or some of its attributes (a strongly consistent read)."""
        extra: dict[str, Any] = {}
        if attributes:
            names = {f"#p{i}": attribute for i, attribute in enumerate(attributes)}
            extra = {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
        response = aws.dynamodb().get_item(
            TableName=self._tenants, Key={"tenant_id": {"S": tenant_id}}, ConsistentRead=True, **extra
        )
        return from_item(response.get("Item") or {})

    def tenant_items(self) -> Iterator[dict[str, Any]]:
        """Every tenant item, whole (a scan: the sweeper's and the billing run's, not a request's)."""
        for page in aws.dynamodb().get_paginator("scan").paginate(TableName=self._tenants, ConsistentRead=True):
            yield from (from_item(item) for item in page.get("Items", []))

    def _held_everywhere(self) -> Iterator[Reservation]:
        for item in self.tenant_items():
            for entry in tc.held_entries(item).values():
                yield self._from_held(str(item["tenant_id"]), entry)

    def pending_before(self, before: datetime, limit: int) -> list[Reservation]:
        """Reservations still held that were made before `before`, oldest first: those on tenant
        items, and `RESV#` items (over every shard of their index)."""
        entries = entries_before(self._usage, PENDING_INDEX, "pending", "created_at", to_attr(before), limit)
        found = [
            self.get(item["pk"]["S"].removeprefix("TENANT#"), item["sk"]["S"].removeprefix("RESV#")) for item in entries
        ]
        rows = [r for r in found if r is not None and r.state is ReservationState.RESERVED and r.layout != "held"]
        held = [r for r in self._held_everywhere() if r.created_at < before]
        return sorted(rows + held, key=lambda r: r.created_at)[:limit]

    def tenants_holding(self, start: datetime, end: datetime) -> set[str]:
        """Tenants with a reservation admitted in `[start, end)` still held: on their own item, or
        as a `RESV#` item in the sparse index.

        The index is eventually consistent, but only in the safe direction for closing a month:
        `pending` goes away once and never comes back, so a stale entry can only name a tenant whose
        reservation has just ended (its month closes at the next run); and a past month's
        reservations were indexed long before the billing run asks. `created_at` is ISO 8601 text
        in UTC, which sorts as time does, so the month is one key range.
        """
        last = end - timedelta(microseconds=1)
        tenants = {r.tenant_id for r in self._held_everywhere() if start <= r.created_at < end}
        paginator = aws.dynamodb().get_paginator("query")
        for shard in SHARDS:  # every shard of the index (sparse_index.py)
            for page in paginator.paginate(
                TableName=self._usage,
                IndexName=PENDING_INDEX,
                KeyConditionExpression="pending = :pending AND created_at BETWEEN :start AND :last",
                ExpressionAttributeValues={":pending": {"S": shard}, ":start": to_attr(start), ":last": to_attr(last)},
            ):
                tenants.update(item["pk"]["S"].removeprefix("TENANT#") for item in page.get("Items", []))
        return tenants

    def get(self, tenant_id: str, job_id: str) -> Reservation | None:
        """The reservation of `job_id`: held on the tenant item, else its `RESV#` item (settled,
        released or still reserved), else None."""
        held = self._tenant_item_entry(tenant_id, job_id)
        if held is not None:
            return self._from_held(tenant_id, held)
        response = aws.dynamodb().get_item(
            TableName=self._usage, Key=_key(tenant_id, f"RESV#{job_id}"), ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return None
        values = from_item(item)
        for attribute in ("pk", "sk", "expires_at", "pending"):
            values.pop(attribute, None)
        return Reservation.model_validate(values)

    def _tenant_item_entry(self, tenant_id: str, job_id: str) -> tc.Held | None:
        response = aws.dynamodb().get_item(
            TableName=self._tenants,
            Key={"tenant_id": {"S": tenant_id}},
            ConsistentRead=True,
            ProjectionExpression="#held.#job",
            ExpressionAttributeNames={"#held": tc.HELD, "#job": job_id},
        )
        return tc.held_entries(from_item(response.get("Item") or {})).get(job_id)

    # -- usage: from the tenant items to the DAY rows -------------------------------------------------
    def roll_usage(self, today: str) -> int:
        """Move every tenant item's usage of days before `today` to the usage table's `DAY#` rows:
        one transaction per tenant, conditional on the amounts being the ones read (a settlement that
        adds to them meanwhile fails it, and the next run moves them). Returns the rows written."""
        moved = 0
        for item in self.tenant_items():
            past = {key: amounts for key, amounts in tc.open_usage(item).items() if key[0] < today}
            if not past:
                continue
            tenant_id = str(item["tenant_id"])
            u = tc.Update()
            items: Items = {}
            for (day, model), amounts in sorted(past.items())[:90]:  # a transaction holds 100 items
                items[f"{day}#{model}"] = {"Update": day_row_update(self._usage, tenant_id, day, model, amounts)}
                for field_name, amount in amounts.items():
                    name = u.name(tc.usage_attribute(day, model, field_name))
                    u.removes.append(name)
                    u.conditions.append(f"{name} = {u.value(tc.num(amount))}")
            items["tenant"] = {"Update": u.params(self._tenants, {"tenant_id": {"S": tenant_id}})}  # type: ignore[typeddict-item]
            try:
                if self._transact(items) is None:
                    moved += len(items) - 1
            except RetryableConflict:
                logger.warning("usage not moved this run: the tenant item is busy", extra={"tenant_id": tenant_id})
        return moved

    # -- settlement of RESV# reservations (batch lines, and the previous layout's) ----------------------
    def settle_items(
        self,
        reservation: Reservation,
        usage: Usage,
        cost: Cost,
        at: datetime,
        *,
        correct_month: bool = True,
        requests: int = 1,
    ) -> Items:
        """The items that settle a `RESV#` reservation; its own item is conditional on it being reserved."""
        delta = usage.total_tokens - reservation.tokens
        expression = (
            "SET #state = :state, prompt_tokens = :prompt, completion_tokens = :completion, cost = :cost,"
            " finished_at = :at"
        )
        values = {
            ":state": {"S": ReservationState.SETTLED.value},
            ":prompt": _num(usage.prompt_tokens),
            ":completion": _num(usage.completion_tokens),
            ":cost": to_attr(cost.total),
            ":at": to_attr(at),
        }
        items, counters = self._finish_items(reservation, expression, values, delta, at, correct_month)
        if counters is None:  # the previous layout: its DAY row, as it was
            amounts = usage_amounts(usage, cost, requests)
            update = day_row_update(self._usage, reservation.tenant_id, reservation.day, reservation.model, amounts)
            items["day"] = {"Update": update}
        else:
            self._add_usage(counters, reservation, usage, cost, requests)
        return self._with_tenant(items, reservation, counters)

    def release_items(
        self, reservation: Reservation, reason: str, at: datetime, *, correct_month: bool = True
    ) -> Items:
        values = {
            ":state": {"S": ReservationState.RELEASED.value},
            ":reason": {"S": reason[:1000]},
            ":at": to_attr(at),
        }
        expression = "SET #state = :state, release_reason = :reason, finished_at = :at"
        items, counters = self._finish_items(reservation, expression, values, -reservation.tokens, at, correct_month)
        return self._with_tenant(items, reservation, counters)

    def _with_tenant(self, items: Items, reservation: Reservation, counters: tc.Update | None) -> Items:
        if counters is not None and (counters.sets or counters.adds):
            update = counters.params(self._tenants, {"tenant_id": {"S": reservation.tenant_id}})
            items["tenant"] = {"Update": update}  # type: ignore[typeddict-item]
        return items

    def _finish_items(
        self,
        reservation: Reservation,
        expression: str,
        values: dict[str, Any],
        token_delta: int,
        at: datetime,
        correct_month: bool,
    ) -> tuple[Items, tc.Update | None]:
        """Move the `RESV#` item out of `reserved` and adjust the counters it touched, atomically.

        The condition on the reservation's state makes a second settle or release a no-op. A
        batch line's month is on the tenant item, corrected only while the item still counts that
        month (`correct_month`, conditional on it: the caller retries without when the month
        moved on). The previous layout's counters are corrected as they always were: its minute
        only while that minute is still the current one.
        """
        tenant = reservation.tenant_id
        items: Items = {
            "reservation": {
                "Update": {
                    "TableName": self._usage,
                    "Key": _key(tenant, f"RESV#{reservation.job_id}"),
                    "UpdateExpression": expression + " REMOVE pending",
                    "ConditionExpression": "#state = :reserved",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {**values, ":reserved": {"S": ReservationState.RESERVED.value}},
                }
            },
        }
        if reservation.layout != "legacy":
            u = tc.Update()
            u.conditions.append(f"attribute_exists({u.name('tenant_id')})")
            if correct_month and month_key(at) == reservation.month:
                u.conditions.append(f"{u.name(tc.MONTH)} = {u.value({'S': reservation.month})}")
                tokens = u.name(tc.MONTH_TOKENS)
                u.sets.append(f"{tokens} = {tokens} + {u.value(_num(token_delta))}")
            return items, u
        minute_expiry = int(reservation.created_at.timestamp()) + MINUTE_COUNTER_TTL_SECONDS
        items["month"] = {
            "Update": {
                "TableName": self._usage,
                "Key": _key(tenant, f"MONTH#{reservation.month}"),
                "UpdateExpression": "ADD tokens :delta",
                "ExpressionAttributeValues": {":delta": _num(token_delta)},
            }
        }
        if reservation.lane == "batch":
            return items, None  # batch requests hold no in-flight slot and count in no minute
        items["in_flight"] = {
            "Update": {
                "TableName": self._tenants,
                "Key": {"tenant_id": {"S": tenant}},
                "UpdateExpression": "ADD in_flight :minus_one",
                "ExpressionAttributeValues": {":minus_one": _num(-1)},
            }
        }
        if minute_key(at) == reservation.minute:  # a past minute's count no longer limits anything
            items["minute"] = {
                "Update": {
                    "TableName": self._usage,
                    "Key": _key(tenant, f"MINUTE#{reservation.minute}"),
                    "UpdateExpression": "ADD tokens :delta SET expires_at = if_not_exists(expires_at, :expires_at)",
                    "ExpressionAttributeValues": {":delta": _num(token_delta), ":expires_at": _num(minute_expiry)},
                }
            }
        return items, None
