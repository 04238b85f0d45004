"""One page of a `Query` or `Scan`, read with `Limit` and `ExclusiveStartKey`: never more than the page.

DynamoDB stops a `Query` or `Scan` at `Limit` items or at 1 MB, whichever comes first, and answers
`LastEvaluatedKey` when it stopped before the end. So one call may return fewer items than asked
with more to come; `read_page` calls again from `LastEvaluatedKey`, asking each time only for the
items still missing, until it has `limit` items or the partition (the table) ends. It never reads
past the page: a list served this way costs what its page costs, whatever the table holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from stratus_core.adapters import aws


@dataclass(frozen=True)
class ItemPage:
    items: list[dict[str, Any]]
    last_key: dict[str, Any] | None
    """DynamoDB's `LastEvaluatedKey` after the last call: where the next page starts; None once the
    partition or table has ended. A page that ends exactly at the end still has one (DynamoDB only
    knows it has ended on the next call), so the next page may be empty."""


def read_page(
    operation: Literal["query", "scan"], params: dict[str, Any], limit: int, start: dict[str, Any] | None = None
) -> ItemPage:
    """Up to `limit` items of `operation` with `params`, from after the key `start`."""
    client = aws.dynamodb()
    call = client.query if operation == "query" else client.scan
    items: list[dict[str, Any]] = []
    last_key = start
    while len(items) < limit:
        extra: dict[str, Any] = {"Limit": limit - len(items)}
        if last_key is not None:
            extra["ExclusiveStartKey"] = last_key
        answer: Any = call(**params, **extra)
        items.extend(answer.get("Items", []))
        last_key = answer.get("LastEvaluatedKey")
        if last_key is None:
            break
    return ItemPage(items, last_key)
