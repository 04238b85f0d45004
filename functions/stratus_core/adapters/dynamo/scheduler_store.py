"""Scheduler table: one item per endpoint, what one scheduler run leaves for the next.

| attribute | written by | meaning |
| --- | --- | --- |
| `endpoint` | both | the key: the endpoint's name |
| `last_work_at` | dispatcher | when it last sent a pack to the endpoint (ISO 8601) |
| `state` | scheduler | `SchedulerState` as JSON |
| `version` | scheduler | bumped by every save; a save is conditional on the version it read |
| `last_run` | scheduler | the last run written to the run history (`RunRecord` as JSON): is the next worth it? |

The dispatcher and the scheduler write different attributes with `UpdateItem`, so neither
overwrites the other's; only the scheduler's own saves race each other, and the version settles that.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.codec import to_attr
from stratus_core.adapters.dynamo.transactions import conditionally
from stratus_core.endpoint_history import RunRecord
from stratus_core.scheduler import Remembered
from stratus_core.scheduling import SchedulerState


class DynamoSchedulerMemory:
    def __init__(self, table: str, endpoint_name: str) -> None:
        self.table = table
        self._key = {"endpoint": {"S": endpoint_name}}

    def load(self) -> Remembered:
        item = aws.dynamodb().get_item(TableName=self.table, Key=self._key, ConsistentRead=True).get("Item", {})
        state = SchedulerState(**json.loads(item["state"]["S"])) if "state" in item else SchedulerState()
        last = datetime.fromisoformat(item["last_work_at"]["S"]) if "last_work_at" in item else None
        last_run = RunRecord.model_validate_json(item["last_run"]["S"]) if "last_run" in item else None
        return Remembered(state, last, int(item["version"]["N"]) if "version" in item else 0, last_run)

    def save(self, state: SchedulerState, version: int, last_run: RunRecord | None = None) -> bool:
        """One `UpdateItem`, as before the run history: `last_run` rides on it (about 200 bytes, the
        item stays one write unit)."""
        values: dict[str, Any] = {":state": {"S": json.dumps(asdict(state))}, ":next": {"N": str(version + 1)}}
        update = "SET #state = :state, version = :next"
        if last_run is not None:
            update += ", last_run = :last_run"
            values[":last_run"] = {"S": last_run.model_dump_json()}
        condition = "attribute_not_exists(version)"
        if version:
            condition = "version = :read"
            values[":read"] = {"N": str(version)}
        updated = conditionally(
            lambda: aws.dynamodb().update_item(
                TableName=self.table,
                Key=self._key,
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        )
        return updated is not None

    def work_sent(self, at: datetime) -> None:
        aws.dynamodb().update_item(
            TableName=self.table,
            Key=self._key,
            UpdateExpression="SET last_work_at = :at",
            ExpressionAttributeValues={":at": to_attr(at)},
        )
