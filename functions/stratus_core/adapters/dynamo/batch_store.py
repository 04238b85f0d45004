"""Batches table: keyed by tenant, so another tenant's batch id is never found."""

from __future__ import annotations

from typing import Any

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.codec import from_item, to_attr, to_item
from stratus_core.adapters.dynamo.paging import read_page
from stratus_core.adapters.dynamo.transactions import conditionally, created
from stratus_core.batches.models import BatchPage, BatchStatus, StoredBatch
from stratus_core.errors import Conflict


class DynamoBatchStore:
    def __init__(self, table: str) -> None:
        self._table = table

    def create(self, batch: StoredBatch) -> None:
        put = lambda: aws.dynamodb().put_item(  # noqa: E731
            TableName=self._table,
            Item=to_item({**batch.model_dump(mode="json"), "batch_id": batch.id}),
            ConditionExpression="attribute_not_exists(batch_id)",
        )
        if not created(put, lambda: self.get(batch.tenant_id, batch.id), batch):
            raise Conflict(f"batch {batch.id} exists")

    def get(self, tenant_id: str, batch_id: str) -> StoredBatch | None:
        item = (
            aws.dynamodb()
            .get_item(
                TableName=self._table,
                Key={"tenant_id": {"S": tenant_id}, "batch_id": {"S": batch_id}},
                ConsistentRead=True,
            )
            .get("Item")
        )
        return _batch(item) if item else None

    def list(self, tenant_id: str, limit: int, after: str | None) -> list[StoredBatch]:
        batches = [
            _batch(item)
            for page in aws.dynamodb()
            .get_paginator("query")
            .paginate(
                TableName=self._table,
                KeyConditionExpression="tenant_id = :tenant",
                ExpressionAttributeValues={":tenant": {"S": tenant_id}},
                ConsistentRead=True,
            )
            for item in page.get("Items", [])
        ]
        batches.sort(key=lambda batch: (batch.created_at, batch.id), reverse=True)
        if after is not None:
            ids = [batch.id for batch in batches]
            batches = batches[ids.index(after) + 1 :] if after in ids else []
        return batches[:limit]

    def page_all(self, limit: int, after: tuple[str, str] | None) -> BatchPage:
        """Up to `limit` batches of every tenant in the table's order (a `Scan`'s), after the batch
        `after` (tenant id, batch id) in that order: one bounded `Scan` (`paging.read_page`)."""
        start = None
        if after is not None:
            start = {"tenant_id": {"S": after[0]}, "batch_id": {"S": after[1]}}
        found = read_page("scan", {"TableName": self._table, "ConsistentRead": True}, limit, start)
        batches = [_batch(item) for item in found.items]
        last_read = None
        if found.last_key is not None:
            last_read = (found.last_key["tenant_id"]["S"], found.last_key["batch_id"]["S"])
        elif batches:
            last_read = (batches[-1].tenant_id, batches[-1].id)
        return BatchPage(batches, last_read, has_more=found.last_key is not None)

    def transition(
        self, batch: StoredBatch, to: BatchStatus, allowed_from: set[BatchStatus], sets: dict[str, Any]
    ) -> bool:
        """Move the batch to `to` if it is still in one of `allowed_from`; False otherwise.

        A condition that fails because this very update already landed (its first attempt was
        answered 500 and botocore's retry found the batch moved) counts as moved: the stored batch
        is at `to` with every value of `sets`. Otherwise a finalizer whose `in_progress ->
        finalizing` landed that way would stop there, and the batch would stay `finalizing`."""
        names = {"#status": "status", **{f"#{key}": key for key in sets}}
        values = {":to": {"S": to.value}, **{f":{key}": to_attr(value) for key, value in sets.items()}}
        allowed = {f":from{i}": {"S": status.value} for i, status in enumerate(sorted(allowed_from))}
        moved = conditionally(
            lambda: aws.dynamodb().update_item(
                TableName=self._table,
                Key={"tenant_id": {"S": batch.tenant_id}, "batch_id": {"S": batch.id}},
                UpdateExpression="SET #status = :to" + "".join(f", #{key} = :{key}" for key in sets),
                ConditionExpression=f"#status IN ({', '.join(allowed)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={**values, **allowed},
            )
        )
        if moved is not None:
            return True
        stored = (
            aws.dynamodb()
            .get_item(
                TableName=self._table,
                Key={"tenant_id": {"S": batch.tenant_id}, "batch_id": {"S": batch.id}},
                ConsistentRead=True,
            )
            .get("Item")
        )
        return (
            stored is not None
            and stored.get("status") == {"S": to.value}
            and all(stored.get(key) == value for key, value in ((key, to_attr(value)) for key, value in sets.items()))
        )


def _batch(item: dict[str, Any]) -> StoredBatch:
    values = from_item(item)
    values.pop("batch_id", None)
    return StoredBatch.model_validate(values)
