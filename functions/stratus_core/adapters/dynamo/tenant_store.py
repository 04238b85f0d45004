"""Tenants table: one item per tenant, which also holds its limit counters, its held reservations
and its open usage (`tenant_counters.py`); a tenant's `in_flight` is the number of held ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo import tenant_counters as tc
from stratus_core.adapters.dynamo.codec import from_item, to_attr, to_item
from stratus_core.adapters.dynamo.paging import read_page
from stratus_core.adapters.dynamo.transactions import conditionally, created
from stratus_core.errors import Conflict, NotFound
from stratus_core.limits import WindowCounts
from stratus_core.tenants import Tenant, TenantPage, TenantUpdate


class DynamoTenantStore:
    def __init__(self, table: str) -> None:
        self._table = table

    def create(self, tenant: Tenant) -> None:
        put = lambda: aws.dynamodb().put_item(  # noqa: E731
            TableName=self._table,
            Item={**to_item(tenant.model_dump(exclude={"in_flight"})), tc.HELD: {"M": {}}},
            ConditionExpression="attribute_not_exists(tenant_id)",
        )
        if not created(put, lambda: self.get(tenant.tenant_id), tenant.model_copy(update={"in_flight": 0})):
            raise Conflict(f"tenant '{tenant.tenant_id}' already exists")

    def get(self, tenant_id: str) -> Tenant | None:
        item = self._item(tenant_id)
        return _tenant(item) if item else None

    def counted(self, tenant_id: str) -> tuple[Tenant, WindowCounts] | None:
        """The tenant and its limit counters, from one consistent read of its item."""
        item = self._item(tenant_id)
        if not item:
            return None
        values = from_item(item)
        counts = WindowCounts(
            minute=values.get(tc.MINUTE),
            minute_requests=int(values.get(tc.MINUTE_REQUESTS) or 0),
            minute_tokens=int(values.get(tc.MINUTE_TOKENS) or 0),
            month=values.get(tc.MONTH),
            month_tokens=int(values.get(tc.MONTH_TOKENS) or 0),
        )
        return _tenant(item), counts

    def _item(self, tenant_id: str) -> dict[str, Any] | None:
        response = aws.dynamodb().get_item(
            TableName=self._table, Key={"tenant_id": {"S": tenant_id}}, ConsistentRead=True
        )
        return response.get("Item")

    def list(self) -> list[Tenant]:
        tenants: list[Tenant] = []
        paginator = aws.dynamodb().get_paginator("scan")
        for page in paginator.paginate(TableName=self._table, ConsistentRead=True):
            tenants.extend(_tenant(item) for item in page.get("Items", []))
        return tenants

    def page(self, limit: int, after: str | None) -> TenantPage:
        """Up to `limit` tenants in the table's order (a `Scan`'s, by hash of the key), after the tenant
        `after` in that order: one bounded `Scan` (`paging.read_page`)."""
        start = {"tenant_id": {"S": after}} if after is not None else None
        found = read_page("scan", {"TableName": self._table, "ConsistentRead": True}, limit, start)
        tenants = [_tenant(item) for item in found.items]
        if found.last_key is not None:  # the last item read
            last_read: str | None = found.last_key["tenant_id"]["S"]
        else:
            last_read = tenants[-1].tenant_id if tenants else None
        return TenantPage(tenants, last_read, has_more=found.last_key is not None)

    def update(self, tenant_id: str, update: TenantUpdate, updated_at: datetime) -> Tenant:
        """Set only the fields given; `in_flight` and unset limits are left as they are."""
        sets = ["#updated_at = :updated_at"]
        removes: list[str] = []
        names = {"#updated_at": "updated_at"}
        values: dict[str, Any] = {":updated_at": to_attr(updated_at)}
        for field in sorted({"name", "status", "allowed_models"} & update.model_fields_set):
            value = getattr(update, field)
            if value is None and field != "allowed_models":
                continue  # name and status cannot be cleared; null means "leave as is"
            names[f"#{field}"] = field
            if value is None:
                removes.append(f"#{field}")  # allowed_models: null means every model
            else:
                sets.append(f"#{field} = :{field}")
                values[f":{field}"] = to_attr(value)
        if update.limits is not None:
            for limit, value in update.limits.model_dump(exclude_none=True).items():
                names["#limits"] = "limits"
                names[f"#{limit}"] = limit
                sets.append(f"#limits.#{limit} = :{limit}")
                values[f":{limit}"] = to_attr(value)
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        response = conditionally(
            lambda: aws.dynamodb().update_item(
                TableName=self._table,
                Key={"tenant_id": {"S": tenant_id}},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(tenant_id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        )
        if response is None:
            raise NotFound("tenant", tenant_id)
        return _tenant(response["Attributes"])


def _tenant(item: dict[str, Any]) -> Tenant:
    values = from_item(item)
    counted = tc.in_flight(values)
    profile = {k: v for k, v in values.items() if k not in tc.COUNTER_ATTRIBUTES and not k.startswith(tc.USAGE_PREFIX)}
    return Tenant.model_validate({**profile, "in_flight": counted})
