"""Reads of the daily usage items that settlement writes (see `admission_store`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.admission_store import tenant_pk
from stratus_core.adapters.dynamo.codec import from_item
from stratus_core.usage import UsageRow


class DynamoUsageStore:
    def __init__(self, usage_table: str) -> None:
        self._table = usage_table

    def daily(self, tenant_id: str, start: date, end: date) -> list[UsageRow]:
        rows: list[UsageRow] = []
        paginator = aws.dynamodb().get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": tenant_pk(tenant_id),
                ":first": {"S": f"DAY#{start.isoformat()}"},
                ":last": {"S": f"DAY#{end.isoformat()}#~"},
            },
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                values = from_item(item)
                prompt_tokens = int(values["prompt_tokens"])
                completion_tokens = int(values["completion_tokens"])
                prompt_cost = Decimal(values["prompt_cost"])
                completion_cost = Decimal(values["completion_cost"])
                rows.append(
                    UsageRow(
                        date=date.fromisoformat(str(values["day"])),
                        model=str(values["model"]),
                        requests=int(values["requests"]),
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens,
                        prompt_cost=prompt_cost,
                        completion_cost=completion_cost,
                        cost=prompt_cost + completion_cost,
                    )
                )
        return rows
