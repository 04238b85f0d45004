"""Files and Batches tables: both keyed by tenant, so another tenant's id is never found."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stratus_core import aws
from stratus_core.batches import BatchStatus, StoredBatch
from stratus_core.dynamo.codec import error_code, from_item, to_attr, to_item
from stratus_core.errors import Conflict
from stratus_core.files import StoredFile


class DynamoFileStore:
    def __init__(self, table: str) -> None:
        self._table = table

    def put(self, stored: StoredFile) -> None:
        aws.dynamodb().put_item(TableName=self._table, Item=to_item({**stored.model_dump(), "file_id": stored.id}))

    def get(self, tenant_id: str, file_id: str) -> StoredFile | None:
        item = (
            aws.dynamodb()
            .get_item(
                TableName=self._table,
                Key={"tenant_id": {"S": tenant_id}, "file_id": {"S": file_id}},
                ConsistentRead=True,
            )
            .get("Item")
        )
        return _file(item) if item else None

    def list(self, tenant_id: str) -> list[StoredFile]:
        files: list[StoredFile] = []
        for page in (
            aws.dynamodb()
            .get_paginator("query")
            .paginate(
                TableName=self._table,
                KeyConditionExpression="tenant_id = :tenant",
                ExpressionAttributeValues={":tenant": {"S": tenant_id}},
            )
        ):
            files.extend(_file(item) for item in page.get("Items", []))
        return files

    def delete(self, tenant_id: str, file_id: str) -> None:
        aws.dynamodb().delete_item(
            TableName=self._table, Key={"tenant_id": {"S": tenant_id}, "file_id": {"S": file_id}}
        )

    def mark_processed(self, tenant_id: str, file_id: str, size: int) -> None:
        aws.dynamodb().update_item(
            TableName=self._table,
            Key={"tenant_id": {"S": tenant_id}, "file_id": {"S": file_id}},
            UpdateExpression="SET #status = :processed, #bytes = :size",
            ExpressionAttributeNames={"#status": "status", "#bytes": "bytes"},
            ExpressionAttributeValues={":processed": {"S": "processed"}, ":size": {"N": str(size)}},
        )


def _file(item: dict[str, Any]) -> StoredFile:
    values = from_item(item)
    values.pop("file_id", None)
    return StoredFile.model_validate(values)


class DynamoBatchStore:
    def __init__(self, table: str) -> None:
        self._table = table

    def create(self, batch: StoredBatch) -> None:
        try:
            aws.dynamodb().put_item(
                TableName=self._table,
                Item=to_item({**batch.model_dump(mode="json"), "batch_id": batch.id}),
                ConditionExpression="attribute_not_exists(batch_id)",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise Conflict(f"batch {batch.id} exists") from None
            raise

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

    def transition(
        self, batch: StoredBatch, to: BatchStatus, allowed_from: set[BatchStatus], sets: dict[str, Any]
    ) -> bool:
        """Move the batch to `to` if it is still in one of `allowed_from`; False otherwise."""
        names = {"#status": "status", **{f"#{key}": key for key in sets}}
        values = {":to": {"S": to.value}, **{f":{key}": to_attr(value) for key, value in sets.items()}}
        allowed = {f":from{i}": {"S": status.value} for i, status in enumerate(sorted(allowed_from))}
        try:
            aws.dynamodb().update_item(
                TableName=self._table,
                Key={"tenant_id": {"S": batch.tenant_id}, "batch_id": {"S": batch.id}},
                UpdateExpression="SET #status = :to" + "".join(f", #{key} = :{key}" for key in sets),
                ConditionExpression=f"#status IN ({', '.join(allowed)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={**values, **allowed},
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _batch(item: dict[str, Any]) -> StoredBatch:
    values = from_item(item)
    values.pop("batch_id", None)
    return StoredBatch.model_validate(values)
