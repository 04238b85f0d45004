"""Files table: keyed by tenant, so another tenant's file id is never found."""

from __future__ import annotations

from typing import Any

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.codec import from_item, to_item
from stratus_core.adapters.dynamo.transactions import conditionally
from stratus_core.files import StoredFile


class DynamoFileStore:
    def __init__(self, table: str) -> None:
        self._table = table

    def put(self, stored: StoredFile) -> bool:
        put = lambda: aws.dynamodb().put_item(  # noqa: E731
            TableName=self._table,
            Item=to_item({**stored.model_dump(), "file_id": stored.id}),
            ConditionExpression="attribute_not_exists(deleted_at)",
        )
        return conditionally(put) is not None

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
        return _file(item) if item and "deleted_at" not in item else None

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
            files.extend(_file(item) for item in page.get("Items", []) if "deleted_at" not in item)
        return files

    def delete(self, tenant_id: str, file_id: str, deleted_at: int, expires_at: int) -> None:
        """The tombstone: the key, when, and the TTL attribute (`expires_at`) that removes it."""
        tombstone = {"tenant_id": tenant_id, "file_id": file_id, "deleted_at": deleted_at, "expires_at": expires_at}
        aws.dynamodb().put_item(TableName=self._table, Item=to_item(tombstone))

    def mark_processed(self, tenant_id: str, file_id: str, size: int) -> None:
        """Record the uploaded size; nothing when the file was deleted meanwhile."""
        conditionally(
            lambda: aws.dynamodb().update_item(
                TableName=self._table,
                Key={"tenant_id": {"S": tenant_id}, "file_id": {"S": file_id}},
                UpdateExpression="SET #status = :processed, #bytes = :size",
                ConditionExpression="attribute_exists(file_id) AND attribute_not_exists(deleted_at)",
                ExpressionAttributeNames={"#status": "status", "#bytes": "bytes"},
                ExpressionAttributeValues={":processed": {"S": "processed"}, ":size": {"N": str(size)}},
            )
        )


def _file(item: dict[str, Any]) -> StoredFile:
    values = from_item(item)
    values.pop("file_id", None)
    return StoredFile.model_validate(values)
