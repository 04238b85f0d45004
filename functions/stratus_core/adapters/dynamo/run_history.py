"""The scheduler's run history in the Usage table: one item per recorded run.

| attribute | meaning |
| --- | --- |
| `pk` | `ENDPOINT#<endpoint name>` (no tenant's `TENANT#…` can collide with it) |
| `sk` | `RUN#<ISO 8601 UTC time, to the millisecond>`: sorts as the runs ran |
| `at`, `in_service`, `desired`, `interactive`, `released`, `waiting`, `release`, `reason` | `RunRecord` |
| `expires_at` | the table's TTL attribute: `at` + 7 days (`endpoint_history.RETENTION_S`) |

A record is an unconditional `PutItem`: written again (botocore's retry of one that landed) it is
the same item. A window is one `Query` on the key range, plus one more for the record just before it
(newest first, `Limit=1`), which tells a chart the value it starts with. Reads are eventually
consistent: a record a second old may be missing from a chart, which the next refresh shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.codec import from_item, to_item
from stratus_core.endpoint_history import RETENTION_S, RunRecord


def run_sort_key(at: float) -> str:
    return "RUN#" + datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class DynamoRunHistory:
    def __init__(self, table: str, endpoint_name: str, retention_s: int = RETENTION_S) -> None:
        self.table = table
        self._pk = {"S": f"ENDPOINT#{endpoint_name}"}
        self._retention_s = retention_s

    def record(self, run: RunRecord) -> None:
        item = to_item({**run.model_dump(), "expires_at": int(run.at) + self._retention_s})
        aws.dynamodb().put_item(TableName=self.table, Item={"pk": self._pk, "sk": {"S": run_sort_key(run.at)}, **item})

    def window(self, start: float, end: float) -> list[RunRecord]:
        first, last = run_sort_key(start), run_sort_key(end)
        before = aws.dynamodb().query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk < :first",
            ExpressionAttributeValues={":pk": self._pk, ":first": {"S": first}},
            ScanIndexForward=False,
            Limit=1,
        )
        runs = [_run(item) for item in before.get("Items", [])]
        for page in (
            aws.dynamodb()
            .get_paginator("query")
            .paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
                ExpressionAttributeValues={":pk": self._pk, ":first": {"S": first}, ":last": {"S": last}},
            )
        ):
            runs.extend(_run(item) for item in page.get("Items", []))
        return runs


def _run(item: dict[str, Any]) -> RunRecord:
    values = from_item(item)  # numbers come back as Decimal: the model takes them as its floats and ints
    return RunRecord.model_validate({name: values[name] for name in RunRecord.model_fields})
