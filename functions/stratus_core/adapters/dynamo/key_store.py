"""API keys table: keyed by the key's SHA-256; GSIs by key id and by tenant. No plaintext, ever."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.codec import from_item, to_attr, to_item
from stratus_core.adapters.dynamo.transactions import conditionally, created, transact
from stratus_core.errors import Conflict, NotFound
from stratus_core.keys import ApiKey

KEY_ID_INDEX = "KeyIdIndex"
TENANT_INDEX = "TenantIndex"
INDEX_MISS_BACKOFF_SECONDS = (0.05, 0.1, 0.2, 0.4, 0.8)


class DynamoKeyStore:
    def __init__(self, table: str) -> None:
        self._table = table

    def put(self, key_hash: str, key: ApiKey) -> None:
        put = lambda: aws.dynamodb().put_item(  # noqa: E731
            TableName=self._table,
            Item=to_item({"key_hash": key_hash, **key.model_dump()}),
            ConditionExpression="attribute_not_exists(key_hash)",
        )
        if not created(put, lambda: self.get_by_hash(key_hash), (key_hash, key)):
            raise Conflict("an API key with this hash exists")

    def get_by_hash(self, key_hash: str) -> tuple[str, ApiKey] | None:
        response = aws.dynamodb().get_item(
            TableName=self._table, Key={"key_hash": {"S": key_hash}}, ConsistentRead=True
        )
        item = response.get("Item")
        return _split(item) if item else None

    def get_by_id(self, key_id: str) -> tuple[str, ApiKey] | None:
        """The key with this id, as `KeyIdIndex` has it (projected whole).

        `KeyIdIndex` is a global secondary index, and "all reads from GSIs and streams are
        eventually consistent" (the DynamoDB developer guide; "strongly consistent reads are not
        supported on global secondary indexes", says `Query`'s `ConsistentRead`). A key put a
        moment ago may not be in the index yet, so that a revoke or a rotate right after the key
        was issued would answer 404. A miss is read again after each of `INDEX_MISS_BACKOFF_SECONDS`
        (1.55 s in all: AWS says writes reach a GSI "within 1 second" and advises retrying the
        index's read with exponential backoff; re:Post, "dynamodb-missing-table-items-gsi") before
        it is reported: an unknown id costs that wait, a known one is found once the index has it. The
        copy may lag the table too (a rotation just made); the writes that follow are conditional
        on the table's item (`revoke`, `rotate`), so a stale copy never decides anything."""
        for delay in (0.0, *INDEX_MISS_BACKOFF_SECONDS):
            if delay:
                time.sleep(delay)
            response = aws.dynamodb().query(
                TableName=self._table,
                IndexName=KEY_ID_INDEX,
                KeyConditionExpression="key_id = :key_id",
                ExpressionAttributeValues={":key_id": {"S": key_id}},
            )
            items = response.get("Items", [])
            if items:
                return _split(items[0])
        return None

    def list_for_tenant(self, tenant_id: str) -> list[ApiKey]:
        keys: list[ApiKey] = []
        paginator = aws.dynamodb().get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            IndexName=TENANT_INDEX,
            KeyConditionExpression="tenant_id = :tenant_id",
            ExpressionAttributeValues={":tenant_id": {"S": tenant_id}},
        ):
            keys.extend(_split(item)[1] for item in page.get("Items", []))
        return keys

    def revoke(self, key_hash: str, at: datetime) -> ApiKey:
        """Revoking twice keeps the first revocation time."""
        response = conditionally(
            lambda: aws.dynamodb().update_item(
                TableName=self._table,
                Key={"key_hash": {"S": key_hash}},
                UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :at)",
                ConditionExpression="attribute_exists(key_hash)",
                ExpressionAttributeValues={":at": to_attr(at)},
                ReturnValues="ALL_NEW",
            )
        )
        if response is None:
            raise NotFound("API key", key_hash[:8])
        return _split(response["Attributes"])[1]

    def rotate(self, old_hash: str, new_hash: str, new_key: ApiKey, old_expires_at: datetime) -> None:
        cancelled = transact(
            {
                "old": {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"key_hash": {"S": old_hash}},
                        "UpdateExpression": "SET rotated_to = :new_id, expires_at = :expires_at",
                        "ConditionExpression": "attribute_exists(key_hash) AND attribute_not_exists(rotated_to)"
                        " AND attribute_not_exists(revoked_at)",
                        "ExpressionAttributeValues": {
                            ":new_id": {"S": new_key.key_id},
                            ":expires_at": to_attr(old_expires_at),
                        },
                    }
                },
                "new": {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_item({"key_hash": new_hash, **new_key.model_dump()}),
                        "ConditionExpression": "attribute_not_exists(key_hash)",
                    }
                },
            }
        )
        if cancelled is not None:
            if cancelled.failed("old"):
                raise Conflict("the API key was revoked or rotated concurrently")
            raise Conflict("a key with this hash exists already")

    def reissue(self, old_hash: str, new_hash: str, key: ApiKey) -> None:
        cancelled = transact(
            {
                "old": {
                    "Delete": {
                        "TableName": self._table,
                        "Key": {"key_hash": {"S": old_hash}},
                        "ConditionExpression": "key_id = :key_id AND attribute_not_exists(rotated_to)"
                        " AND attribute_not_exists(revoked_at)",
                        "ExpressionAttributeValues": {":key_id": {"S": key.key_id}},
                    }
                },
                "new": {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_item({"key_hash": new_hash, **key.model_dump()}),
                        "ConditionExpression": "attribute_not_exists(key_hash)",
                    }
                },
            }
        )
        if cancelled is not None:
            raise Conflict(f"API key {key.key_id} was revoked, rotated or issued again concurrently")


def _split(item: dict[str, Any]) -> tuple[str, ApiKey]:
    values = from_item(item)
    key_hash = str(values.pop("key_hash"))
    return key_hash, ApiKey.model_validate(values)
