"""The usage table's `DAY#<day>#MODEL#<model>` rows: billable usage per tenant, day and model."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from stratus_core.adapters.dynamo.tenant_counters import num


def day_row_key(tenant_id: str, day: str, model: str) -> dict[str, Any]:
    return {"pk": {"S": f"TENANT#{tenant_id}"}, "sk": {"S": f"DAY#{day}#MODEL#{model}"}}


def day_row_update(table: str, tenant_id: str, day: str, model: str, amounts: Mapping[str, int | Decimal]) -> Any:
    """An `Update` (for `UpdateItem` or a transaction) that adds `amounts` (`USAGE_FIELDS`) to the row."""
    names = {f"#f{i}": name for i, name in enumerate(amounts)}
    values: dict[str, Any] = {f":f{i}": num(amount) for i, amount in enumerate(amounts.values())}
    adds = ", ".join(f"#f{i} :f{i}" for i in range(len(amounts)))
    values.update({":day": {"S": day}, ":model": {"S": model}})
    return {
        "TableName": table,
        "Key": day_row_key(tenant_id, day, model),
        "UpdateExpression": f"ADD {adds} SET #day = :day, #model = :model",
        "ExpressionAttributeNames": {**names, "#day": "day", "#model": "model"},
        "ExpressionAttributeValues": values,
    }
