"""Multi-item and conditional writes to DynamoDB, written once.

`transact({"reservation": …, "month": …, "job": …})` runs the named items as one
`TransactWriteItems` call. When DynamoDB cancels it, the reasons come back **by name**
(`cancelled.failed("job")`), so no caller depends on the order in which it listed its items; the
items' old values (`ReturnValuesOnConditionCheckFailure: ALL_OLD`) come back by name too.

A cancellation only because another transaction touched one of the items at that moment
(`TransactionConflict`) changed nothing and is retried here, with jittered exponential backoff;
if it persists, `TransactionContended` tells the caller to back off (a 503 for the API, a
redelivery for a queue). A cancellation for a reason that is neither a conflict nor a failed
condition (validation, an item's throughput) is raised as the original `ClientError`.

`conditionally(write)` is the same idea for one item: a write whose `ConditionExpression` fails
returns `None` instead of raising `ConditionalCheckFailedException`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.codec import from_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

T = TypeVar("T")
CONDITION_FAILED = "ConditionalCheckFailed"
CONFLICT = "TransactionConflict"
CONFLICT_ATTEMPTS = 4
CONFLICT_BACKOFF_SECONDS = 0.02


class TransactionContended(Exception):
    """The items stayed busy with other transactions through every retry; try again later."""


@dataclass(frozen=True)
class Cancelled:
    """Why DynamoDB cancelled a transaction, per item name."""

    reasons: Mapping[str, str]  # "None" where that item was fine
    old_items: Mapping[str, dict[str, Any] | None]

    def failed(self, name: str) -> bool:
        """Whether the item named `name` failed its condition."""
        return self.reasons.get(name) == CONDITION_FAILED

    @property
    def failed_names(self) -> set[str]:
        return {name for name, reason in self.reasons.items() if reason == CONDITION_FAILED}


def transact(
    items: Mapping[str, TransactWriteItemTypeDef],
    *,
    attempts: int = CONFLICT_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> Cancelled | None:
    """Write `items` atomically. `None` when the transaction committed; `Cancelled` (reasons by
    name) when a condition failed and nothing was written."""
    names = list(items)
    for attempt in range(attempts):
        try:
            aws.dynamodb().transact_write_items(TransactItems=[items[name] for name in names])
        except ClientError as error:
            if aws.error_code(error) != "TransactionCanceledException":
                raise
            cancelled = _cancellation(names, error)
            if CONFLICT in cancelled.reasons.values():
                sleep(random.uniform(0, CONFLICT_BACKOFF_SECONDS * 2**attempt))  # noqa: S311 - jitter, not a secret
                continue
            if not cancelled.failed_names or set(cancelled.reasons.values()) - {CONDITION_FAILED, "None"}:
                raise
            return cancelled
        return None
    raise TransactionContended(f"transaction on {', '.join(names)} kept conflicting with others")


def conditionally(write: Callable[[], T]) -> T | None:
    """Run one conditional write: its response when it was applied, `None` when its condition failed."""
    try:
        return write()
    except ClientError as error:
        if aws.error_code(error) == "ConditionalCheckFailedException":
            return None
        raise


def created(put: Callable[[], object], stored: Callable[[], T | None], written: T) -> bool:
    """Put an item that must not exist yet (`attribute_not_exists`). True when it was created, and
    also when its condition failed because the item stored is exactly the one written: an earlier
    attempt of this same put landed and its answer was lost. ("When you receive a status code 500 on
    a write operation, the operation may have succeeded or failed ... your application should read
    the state of the item before retrying", DynamoDB Developer Guide, "Error handling"; botocore
    retries the 500, and its retry then fails the condition.) False: another writer's item is there."""
    if conditionally(put) is not None:
        return True
    return stored() == written


def _cancellation(names: list[str], error: ClientError) -> Cancelled:
    """The per-item reasons DynamoDB lists, in the items' order, keyed by the items' names."""
    listed = error.response.get("CancellationReasons", [])
    reasons: dict[str, str] = {}
    old: dict[str, dict[str, Any] | None] = {}
    for name, reason in zip(names, listed, strict=False):
        reasons[name] = str(reason.get("Code", "None"))
        item = reason.get("Item")
        old[name] = from_item(item) if item else None
    return Cancelled(reasons, old)
