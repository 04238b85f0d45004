"""Reads of the usage that settlement writes: the `DAY#` rows of days whose usage has moved there
(`DynamoAdmissionStore.roll_usage`), plus what is still on the tenant item (`tenant_counters`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo import tenant_counters as tc
from stratus_core.adapters.dynamo.admission_store import tenant_pk
from stratus_core.adapters.dynamo.codec import from_item
from stratus_core.usage import UsageRow


class DynamoUsageStore:
    def __init__(self, usage_table: str, tenants_table: str) -> None:
        self._table = usage_table
        self._tenants = tenants_table

    def daily(self, tenant_id: str, start: date, end: date) -> list[UsageRow]:
        """Both sources, summed per day and model. A roll moves amounts from the tenant item to the
        rows with one transaction, but the rows are a query and the item a read: the item is read
        before and after the rows, and the three reads are taken again if it changed in between."""
        for _ in range(5):
            before = self._open(tenant_id, start, end)
            rows = self._rows(tenant_id, start, end)
            if self._open(tenant_id, start, end) == before:
                break
        for (day, model), amounts in before.items():
            total = rows.setdefault((day, model), dict.fromkeys(tc.USAGE_FIELDS, Decimal(0)))
            for name, amount in amounts.items():
                total[name] += amount
        return [_row(day, model, amounts) for (day, model), amounts in sorted(rows.items())]

    def _open(self, tenant_id: str, start: date, end: date) -> dict[tuple[str, str], dict[str, Decimal]]:
        response = aws.dynamodb().get_item(
            TableName=self._tenants, Key={"tenant_id": {"S": tenant_id}}, ConsistentRead=True
        )
        found = tc.open_usage(from_item(response.get("Item") or {}))
        return {key: amounts for key, amounts in found.items() if start.isoformat() <= key[0] <= end.isoformat()}

    def _rows(self, tenant_id: str, start: date, end: date) -> dict[tuple[str, str], dict[str, Decimal]]:
        rows: dict[tuple[str, str], dict[str, Decimal]] = {}
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
                amounts = {name: Decimal(values.get(name, 0)) for name in tc.USAGE_FIELDS}
                rows[(str(values["day"]), str(values["model"]))] = amounts
        return rows


def _row(day: str, model: str, amounts: dict[str, Decimal]) -> UsageRow:
    prompt_tokens, completion_tokens = int(amounts["prompt_tokens"]), int(amounts["completion_tokens"])
    prompt_cost, completion_cost = amounts["prompt_cost"], amounts["completion_cost"]
    return UsageRow(
        date=date.fromisoformat(day),
        model=model,
        requests=int(amounts["requests"]),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        prompt_cost=prompt_cost,
        completion_cost=completion_cost,
        cost=prompt_cost + completion_cost,
    )
