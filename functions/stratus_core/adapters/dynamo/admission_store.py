"""Limit counters and reservations, moved together in DynamoDB transactions.

Usage table layout (partition `pk`, sort `sk`):

| pk             | sk                          | what                                                  |
| -------------- | --------------------------- | ----------------------------------------------------- |
| TENANT#<id>    | MONTH#YYYY-MM               | `tokens` reserved + settled this month, `requests`    |
| TENANT#<id>    | MINUTE#YYYY-MM-DDTHH:MM     | `tokens`, `requests` in that minute (TTL 2 days)      |
| TENANT#<id>    | RESV#<job id>               | one request: reserved bound, then its real usage      |
| TENANT#<id>    | DAY#YYYY-MM-DD#MODEL#<name> | billable usage and cost per day and model             |
| TENANT#<id>    | CLAIM#<fingerprint>         | the job a retried request attaches to (TTL 1 h / 24 h) |

The in-flight count lives on the tenant's own item so that its condition reads the live limit.

A reservation still `reserved` carries `pending`, which puts it in the sparse
`PendingReservationsIndex`; its value is the job's index shard (`sparse_index.shard_of`), so held
reservations spread over 16 index partitions. Reservations written before sharding carry "1",
one of the shards, and are still found.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.codec import from_item, to_attr, to_item
from stratus_core.adapters.dynamo.sparse_index import SHARDS, entries_before, shard_of
from stratus_core.adapters.dynamo.transactions import Cancelled, TransactionContended, transact
from stratus_core.admission import (
    Claim,
    ClaimedJob,
    ClaimTaken,
    LimitHit,
    Reservation,
    ReservationState,
    RetryableConflict,
    TenantInactive,
)
from stratus_core.clock import minute_key
from stratus_core.contract import Usage
from stratus_core.errors import Limit
from stratus_core.pricing import Cost
from stratus_core.tenants import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    Items = dict[str, TransactWriteItemTypeDef]

MINUTE_COUNTER_TTL_SECONDS = 2 * 86_400
PENDING_INDEX = "PendingReservationsIndex"
"""Sparse index of reservations still `reserved` (the `pending` attribute goes when they finish)."""


def tenant_pk(tenant_id: str) -> dict[str, Any]:
    return {"S": f"TENANT#{tenant_id}"}


def _key(tenant_id: str, sk: str) -> dict[str, Any]:
    return {"pk": tenant_pk(tenant_id), "sk": {"S": sk}}


def _num(value: int) -> dict[str, Any]:
    return {"N": str(value)}


class DynamoAdmissionStore:
    def __init__(self, usage_table: str, tenants_table: str) -> None:
        self._usage = usage_table
        self._tenants = tenants_table

    def reserve(
        self, tenant: Tenant, reservation: Reservation, expires_at: int, claim: Claim | None = None
    ) -> Reservation:
        limits = tenant.limits
        minute_expiry = int(reservation.created_at.timestamp()) + MINUTE_COUNTER_TTL_SECONDS
        items: Items = {
            "tenant": {
                "Update": {
                    "TableName": self._tenants,
                    "Key": {"tenant_id": {"S": tenant.tenant_id}},
                    "UpdateExpression": "SET in_flight = if_not_exists(in_flight, :zero) + :one",
                    "ConditionExpression": "#status = :active AND #updated_at = :seen"
                    " AND (attribute_not_exists(in_flight) OR in_flight < #limits.max_in_flight)",
                    "ExpressionAttributeNames": {"#status": "status", "#updated_at": "updated_at", "#limits": "limits"},
                    "ExpressionAttributeValues": {
                        ":zero": _num(0),
                        ":one": _num(1),
                        ":active": {"S": "active"},
                        ":seen": to_attr(tenant.updated_at),
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            "month": self._month_item(tenant, reservation),
            "minute": {
                "Update": {
                    "TableName": self._usage,
                    "Key": _key(tenant.tenant_id, f"MINUTE#{reservation.minute}"),
                    "UpdateExpression": "ADD tokens :tokens, requests :one SET expires_at = :expires_at",
                    "ConditionExpression": "(attribute_not_exists(tokens) OR tokens <= :token_room)"
                    " AND (attribute_not_exists(requests) OR requests <= :request_room)",
                    "ExpressionAttributeValues": {
                        ":tokens": _num(reservation.tokens),
                        ":one": _num(1),
                        ":token_room": _num(limits.tokens_per_minute - reservation.tokens),
                        ":request_room": _num(limits.requests_per_minute - 1),
                        ":expires_at": _num(minute_expiry),
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            "reservation": self._reservation_item(tenant, reservation, expires_at),
        }
        if claim is not None:
            items["claim"] = self._claim_item(tenant.tenant_id, reservation, claim)
        cancelled = self._transact(items)
        if cancelled is None:
            return reservation
        if cancelled.failed("reservation"):  # this job was admitted before: a repeat changes nothing
            return self._existing(tenant.tenant_id, reservation.job_id)
        if cancelled.failed("claim"):  # an earlier request holds this Idempotency-Key
            held = cancelled.old_items.get("claim") or {}
            raise ClaimTaken(ClaimedJob(str(held.get("job_id", "")), str(held.get("body_hash", ""))))
        if cancelled.failed("tenant"):
            tenant_item = cancelled.old_items.get("tenant") or {}
            if tenant_item.get("status") != "active":
                raise TenantInactive()
            if tenant_item.get("updated_at") != tenant.updated_at.isoformat():
                raise RetryableConflict()  # limits edited meanwhile: read them again
            raise LimitHit(Limit.MAX_IN_FLIGHT)
        if cancelled.failed("month"):
            raise LimitHit(Limit.TOKENS_PER_MONTH)
        minute = cancelled.old_items.get("minute") or {}
        if int(minute.get("requests", 0)) + 1 > tenant.limits.requests_per_minute:
            raise LimitHit(Limit.REQUESTS_PER_MINUTE)
        raise LimitHit(Limit.TOKENS_PER_MINUTE)

    def reserve_batch(self, tenant: Tenant, reservation: Reservation, expires_at: int) -> Reservation:
        """Tenant active, month within quota, reservation recorded: nothing per-minute, no in-flight slot."""
        items: Items = {
            "tenant": {
                "ConditionCheck": {
                    "TableName": self._tenants,
                    "Key": {"tenant_id": {"S": tenant.tenant_id}},
                    "ConditionExpression": "#status = :active AND #updated_at = :seen",
                    "ExpressionAttributeNames": {"#status": "status", "#updated_at": "updated_at"},
                    "ExpressionAttributeValues": {":active": {"S": "active"}, ":seen": to_attr(tenant.updated_at)},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            "month": self._month_item(tenant, reservation),
            "reservation": self._reservation_item(tenant, reservation, expires_at),
        }
        cancelled = self._transact(items)
        if cancelled is None:
            return reservation
        if cancelled.failed("reservation"):
            return self._existing(tenant.tenant_id, reservation.job_id)
        if cancelled.failed("tenant"):
            if (cancelled.old_items.get("tenant") or {}).get("status") != "active":
                raise TenantInactive()
            raise RetryableConflict()  # limits edited meanwhile: read them again
        raise LimitHit(Limit.TOKENS_PER_MONTH)

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

    def _month_item(self, tenant: Tenant, reservation: Reservation) -> TransactWriteItemTypeDef:
        """Add the reserved tokens to the month, if they stay within `tokens_per_month`."""
        return {
            "Update": {
                "TableName": self._usage,
                "Key": _key(tenant.tenant_id, f"MONTH#{reservation.month}"),
                "UpdateExpression": "ADD tokens :tokens, requests :one",
                "ConditionExpression": "attribute_not_exists(tokens) OR tokens <= :room",
                "ExpressionAttributeValues": {
                    ":tokens": _num(reservation.tokens),
                    ":one": _num(1),
                    ":room": _num(tenant.limits.tokens_per_month - reservation.tokens),
                },
            }
        }

    def _reservation_item(self, tenant: Tenant, reservation: Reservation, expires_at: int) -> TransactWriteItemTypeDef:
        """Record the reservation under its job id, once (in its shard of the pending index)."""
        pending = shard_of(reservation.job_id)
        return {
            "Put": {
                "TableName": self._usage,
                "Item": {
                    **_key(tenant.tenant_id, f"RESV#{reservation.job_id}"),
                    **to_item({**reservation.model_dump(), "expires_at": expires_at, "pending": pending}),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _claim_item(self, tenant_id: str, reservation: Reservation, claim: Claim) -> TransactWriteItemTypeDef:
        """Point the claim at this job: only if no live claim exists, when it is exclusive."""
        put: Any = {
            "TableName": self._usage,
            "Item": {
                **_key(tenant_id, f"CLAIM#{claim.fingerprint}"),
                "job_id": {"S": reservation.job_id},
                "body_hash": {"S": claim.body_hash},
                "expires_at": _num(claim.expires_at),
            },
        }
        if claim.exclusive:
            put["ConditionExpression"] = "attribute_not_exists(pk) OR expires_at < :now"
            put["ExpressionAttributeValues"] = {":now": _num(int(reservation.created_at.timestamp()))}
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
        item = aws.dynamodb().get_item(TableName=self._usage, Key=_key(tenant_id, f"MINUTE#{minute}")).get("Item")
        if not item:
            return 0, 0
        return int(item.get("requests", {}).get("N", "0")), int(item.get("tokens", {}).get("N", "0"))

    def pending_before(self, before: datetime, limit: int) -> list[Reservation]:
        """Reservations still held that were made before `before` (oldest first, over every shard)."""
        entries = entries_before(self._usage, PENDING_INDEX, "pending", "created_at", to_attr(before), limit)
        found = [
            self.get(item["pk"]["S"].removeprefix("TENANT#"), item["sk"]["S"].removeprefix("RESV#")) for item in entries
        ]
        return [r for r in found if r is not None and r.state is ReservationState.RESERVED]

    def tenants_holding(self, start: datetime, end: datetime) -> set[str]:
        """Tenants with a reservation admitted in `[start, end)` still `reserved`, from the sparse index.

        The index is eventually consistent, but only in the safe direction for closing a month:
        `pending` goes away once and never comes back, so a stale entry can only name a tenant whose
        reservation has just ended (its month closes at the next run); and a past month's
        reservations were indexed long before the billing run asks. `created_at` is ISO 8601 text
        in UTC, which sorts as time does, so the month is one key range.
        """
        last = end - timedelta(microseconds=1)
        tenants: set[str] = set()
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

    def settle_items(self, reservation: Reservation, usage: Usage, cost: Cost, at: datetime) -> Items:
        """The items that settle `reservation`; `reservation` is conditional on it being reserved."""
        delta = usage.total_tokens - reservation.tokens
        day_item: TransactWriteItemTypeDef = {
            "Update": {
                "TableName": self._usage,
                "Key": _key(reservation.tenant_id, f"DAY#{reservation.day}#MODEL#{reservation.model}"),
                "UpdateExpression": "ADD requests :one, prompt_tokens :prompt, completion_tokens :completion,"
                " prompt_cost :prompt_cost, completion_cost :completion_cost SET #day = :day, #model = :model",
                "ExpressionAttributeNames": {"#day": "day", "#model": "model"},
                "ExpressionAttributeValues": {
                    ":one": _num(1),
                    ":prompt": _num(usage.prompt_tokens),
                    ":completion": _num(usage.completion_tokens),
                    ":prompt_cost": to_attr(cost.prompt_cost),
                    ":completion_cost": to_attr(cost.completion_cost),
                    ":day": {"S": reservation.day},
                    ":model": {"S": reservation.model},
                },
            }
        }
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
        return {**self._finish_items(reservation, expression, values, delta, at), "day": day_item}

    def release_items(self, reservation: Reservation, reason: str, at: datetime) -> Items:
        values = {
            ":state": {"S": ReservationState.RELEASED.value},
            ":reason": {"S": reason[:1000]},
            ":at": to_attr(at),
        }
        expression = "SET #state = :state, release_reason = :reason, finished_at = :at"
        return self._finish_items(reservation, expression, values, -reservation.tokens, at)

    def _finish_items(
        self, reservation: Reservation, expression: str, values: dict[str, Any], token_delta: int, at: datetime
    ) -> Items:
        """Move the reservation out of `reserved` and adjust the counters it touched, atomically.

        The condition on the reservation's state makes a second settle or release a no-op. The
        minute's counter is corrected only while that minute is still the current one: later it
        limits nothing, and skipping it saves two write units.
        """
        minute_expiry = int(reservation.created_at.timestamp()) + MINUTE_COUNTER_TTL_SECONDS
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
            "month": {
                "Update": {
                    "TableName": self._usage,
                    "Key": _key(tenant, f"MONTH#{reservation.month}"),
                    "UpdateExpression": "ADD tokens :delta",
                    "ExpressionAttributeValues": {":delta": _num(token_delta)},
                }
            },
        }
        if reservation.lane == "batch":
            return items  # batch requests hold no in-flight slot and count in no minute
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
        return items
