"""Limit counters and reservations, moved together in DynamoDB transactions.

Usage table layout (partition `pk`, sort `sk`):

| pk             | sk                          | what                                                  |
| -------------- | --------------------------- | ----------------------------------------------------- |
| TENANT#<id>    | MONTH#YYYY-MM               | `tokens` reserved + settled this month, `requests`    |
| TENANT#<id>    | MINUTE#YYYY-MM-DDTHH:MM     | `tokens`, `requests` in that minute (TTL 2 days)      |
| TENANT#<id>    | RESV#<job id>               | one request: reserved bound, then its real usage      |
| TENANT#<id>    | DAY#YYYY-MM-DD#MODEL#<name> | billable usage and cost per day and model             |

The in-flight count lives on the tenant's own item so that its condition reads the live limit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from stratus_core import aws
from stratus_core.admission import (
    LimitHit,
    Outcome,
    Reservation,
    ReservationState,
    RetryableConflict,
    TenantInactive,
    TokenUsage,
)
from stratus_core.clock import minute_key
from stratus_core.dynamo.codec import cancellation_codes, cancellation_items, error_code, from_item, to_attr, to_item
from stratus_core.errors import Limit
from stratus_core.pricing import Cost
from stratus_core.tenants import Tenant

MINUTE_COUNTER_TTL_SECONDS = 2 * 86_400
PENDING = "1"
PENDING_INDEX = "PendingReservationsIndex"
"""Sparse index of reservations still `reserved` (the `pending` attribute goes when they finish)."""
CONDITION_FAILED = "ConditionalCheckFailed"


def tenant_pk(tenant_id: str) -> dict[str, Any]:
    return {"S": f"TENANT#{tenant_id}"}


def _key(tenant_id: str, sk: str) -> dict[str, Any]:
    return {"pk": tenant_pk(tenant_id), "sk": {"S": sk}}


def _num(value: int) -> dict[str, str]:
    return {"N": str(value)}


class DynamoAdmissionStore:
    def __init__(self, usage_table: str, tenants_table: str) -> None:
        self._usage = usage_table
        self._tenants = tenants_table

    def reserve(self, tenant: Tenant, reservation: Reservation, expires_at: int) -> Reservation:
        limits = tenant.limits
        if limits.requests_per_minute == 0:
            raise LimitHit(Limit.REQUESTS_PER_MINUTE)
        if limits.max_in_flight == 0:
            raise LimitHit(Limit.MAX_IN_FLIGHT)
        minute_expiry = int(reservation.created_at.timestamp()) + MINUTE_COUNTER_TTL_SECONDS
        items = [
            {
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
            self._month_item(tenant, reservation),
            {
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
            self._reservation_item(tenant, reservation, expires_at),
        ]
        try:
            aws.dynamodb().transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            self._classify_refusal(error, tenant, reservation)
            existing = self.get(tenant.tenant_id, reservation.job_id)
            if existing is None:  # pragma: no cover - _classify_refusal raised for every other reason
                raise
            return existing
        return reservation

    def reserve_batch(self, tenant: Tenant, reservation: Reservation, expires_at: int) -> Reservation:
        """Tenant active, month within quota, reservation recorded: nothing per-minute, no in-flight slot."""
        items = [
            {
                "ConditionCheck": {
                    "TableName": self._tenants,
                    "Key": {"tenant_id": {"S": tenant.tenant_id}},
                    "ConditionExpression": "#status = :active AND #updated_at = :seen",
                    "ExpressionAttributeNames": {"#status": "status", "#updated_at": "updated_at"},
                    "ExpressionAttributeValues": {":active": {"S": "active"}, ":seen": to_attr(tenant.updated_at)},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            self._month_item(tenant, reservation),
            self._reservation_item(tenant, reservation, expires_at),
        ]
        try:
            aws.dynamodb().transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            codes = cancellation_codes(error)
            if "TransactionConflict" in codes:
                raise RetryableConflict() from None
            if codes[2] == CONDITION_FAILED:
                existing = self.get(tenant.tenant_id, reservation.job_id)
                if existing is not None:
                    return existing
            if codes[0] == CONDITION_FAILED:
                tenant_item = cancellation_items(error)[0] or {}
                if tenant_item.get("status") != "active":
                    raise TenantInactive() from None
                raise RetryableConflict() from None  # limits edited meanwhile: read them again
            if codes[1] == CONDITION_FAILED:
                raise LimitHit(Limit.TOKENS_PER_MONTH) from None
            raise
        return reservation

    def _month_item(self, tenant: Tenant, reservation: Reservation) -> dict[str, Any]:
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

    def _reservation_item(self, tenant: Tenant, reservation: Reservation, expires_at: int) -> dict[str, Any]:
        """Record the reservation under its job id, once."""
        return {
            "Put": {
                "TableName": self._usage,
                "Item": {
                    **_key(tenant.tenant_id, f"RESV#{reservation.job_id}"),
                    **to_item({**reservation.model_dump(), "expires_at": expires_at, "pending": PENDING}),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    @staticmethod
    def _classify_refusal(error: ClientError, tenant: Tenant, reservation: Reservation) -> None:
        """Raise what refused the transaction; return only when the reservation already exists."""
        codes = cancellation_codes(error)
        if "TransactionConflict" in codes:
            raise RetryableConflict()
        if len(codes) > 3 and codes[3] == CONDITION_FAILED:
            return
        old = cancellation_items(error)
        if codes[0] == CONDITION_FAILED:
            tenant_item = old[0] or {}
            if tenant_item.get("status") != "active":
                raise TenantInactive()
            if tenant_item.get("updated_at") != tenant.updated_at.isoformat():
                raise RetryableConflict()
            raise LimitHit(Limit.MAX_IN_FLIGHT)
        if codes[1] == CONDITION_FAILED:
            raise LimitHit(Limit.TOKENS_PER_MONTH)
        if codes[2] == CONDITION_FAILED:
            minute = old[2] or {}
            if int(minute.get("requests", 0)) + 1 > tenant.limits.requests_per_minute:
                raise LimitHit(Limit.REQUESTS_PER_MINUTE)
            raise LimitHit(Limit.TOKENS_PER_MINUTE)
        raise error  # a cancellation for any other reason (validation, throttling) is not ours to retry

    def pending_before(self, before: datetime, limit: int) -> list[Reservation]:
        """Reservations still held that were made before `before` (oldest first)."""
        response = aws.dynamodb().query(
            TableName=self._usage,
            IndexName=PENDING_INDEX,
            KeyConditionExpression="pending = :pending AND created_at < :before",
            ExpressionAttributeValues={":pending": {"S": PENDING}, ":before": to_attr(before)},
            Limit=limit,
        )
        found = [
            self.get(item["pk"]["S"].removeprefix("TENANT#"), item["sk"]["S"].removeprefix("RESV#"))
            for item in response.get("Items", [])
        ]
        return [r for r in found if r is not None and r.state is ReservationState.RESERVED]

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

    def settle(self, reservation: Reservation, usage: TokenUsage, cost: Cost, at: datetime) -> Outcome:
        return run_finish(self.settle_items(reservation, usage, cost, at))

    def release(self, reservation: Reservation, reason: str, at: datetime) -> Outcome:
        return run_finish(self.release_items(reservation, reason, at))

    def settle_items(
        self, reservation: Reservation, usage: TokenUsage, cost: Cost, at: datetime
    ) -> list[dict[str, Any]]:
        """Transaction items that settle `reservation`; the first is conditional on it being reserved."""
        delta = usage.total_tokens - reservation.tokens
        day_item = {
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
        return self._finish_items(reservation, expression, values, delta, [day_item], at)

    def release_items(self, reservation: Reservation, reason: str, at: datetime) -> list[dict[str, Any]]:
        values = {
            ":state": {"S": ReservationState.RELEASED.value},
            ":reason": {"S": reason[:1000]},
            ":at": to_attr(at),
        }
        expression = "SET #state = :state, release_reason = :reason, finished_at = :at"
        return self._finish_items(reservation, expression, values, -reservation.tokens, [], at)

    def _finish_items(
        self,
        reservation: Reservation,
        expression: str,
        values: dict[str, Any],
        token_delta: int,
        extra: list[dict[str, Any]],
        at: datetime,
    ) -> list[dict[str, Any]]:
        """Move the reservation out of `reserved` and adjust the counters it touched, atomically.

        The condition on the reservation's state makes a second settle or release a no-op. The
        minute's counter is corrected only while that minute is still the current one: later it
        limits nothing, and skipping it saves two write units.
        """
        minute_expiry = int(reservation.created_at.timestamp()) + MINUTE_COUNTER_TTL_SECONDS
        tenant = reservation.tenant_id
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._usage,
                    "Key": _key(tenant, f"RESV#{reservation.job_id}"),
                    "UpdateExpression": expression + " REMOVE pending",
                    "ConditionExpression": "#state = :reserved",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {**values, ":reserved": {"S": ReservationState.RESERVED.value}},
                }
            },
            {
                "Update": {
                    "TableName": self._usage,
                    "Key": _key(tenant, f"MONTH#{reservation.month}"),
                    "UpdateExpression": "ADD tokens :delta",
                    "ExpressionAttributeValues": {":delta": _num(token_delta)},
                }
            },
            *extra,
        ]
        if reservation.lane == "batch":
            return items  # batch requests hold no in-flight slot and count in no minute
        items.append(
            {
                "Update": {
                    "TableName": self._tenants,
                    "Key": {"tenant_id": {"S": tenant}},
                    "UpdateExpression": "ADD in_flight :minus_one",
                    "ExpressionAttributeValues": {":minus_one": _num(-1)},
                }
            }
        )
        if minute_key(at) == reservation.minute:  # a past minute's count no longer limits anything
            items.append(
                {
                    "Update": {
                        "TableName": self._usage,
                        "Key": _key(tenant, f"MINUTE#{reservation.minute}"),
                        "UpdateExpression": "ADD tokens :delta SET expires_at = if_not_exists(expires_at, :expires_at)",
                        "ExpressionAttributeValues": {":delta": _num(token_delta), ":expires_at": _num(minute_expiry)},
                    }
                }
            )
        return items


def run_finish(items: list[dict[str, Any]]) -> Outcome:
    """Run a settle/release transaction; a failed condition on its first item means it already ran."""
    try:
        aws.dynamodb().transact_write_items(TransactItems=items)  # type: ignore[arg-type]
    except ClientError as error:
        codes = cancellation_codes(error)
        if error_code(error) == "TransactionCanceledException" and codes[:1] == [CONDITION_FAILED]:
            return Outcome.ALREADY_DONE
        raise
    return Outcome.APPLIED
