"""`stratus tenants|keys|usage|invoice`: the operator's commands, through the admin API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from stratus.admin_client import AdminApi

api_options = [
    click.option(
        "--api-url",
        envvar="STRATUS_API_URL",
        default="http://127.0.0.1:8000",
        show_default=True,
        help="The Stratus API (the local cloud's by default). Also STRATUS_API_URL.",
    ),
    click.option(
        "--admin-key", envvar="STRATUS_ADMIN_KEY", required=True, help="An admin key. Also STRATUS_ADMIN_KEY."
    ),
    click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts."),
]


def _limits(rpm: int | None, tpm: int | None, monthly: int | None, in_flight: int | None) -> dict[str, int]:
    given = {
        "requests_per_minute": rpm,
        "tokens_per_minute": tpm,
        "tokens_per_month": monthly,
        "max_in_flight": in_flight,
    }
    return {name: value for name, value in given.items() if value is not None}


def with_api(function: Any) -> Any:
    for option in reversed(api_options):
        function = option(function)
    return function


def show(data: Any, as_json: bool, columns: list[str], rows: list[dict[str, Any]], title: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(column, "")) for column in columns))
    Console().print(table)


def tenant_rows(tenants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": t["tenant_id"],
            "name": t["name"],
            "status": t["status"],
            "in_flight": t["in_flight"],
            **t["limits"],
        }
        for t in tenants
    ]


TENANT_COLUMNS = [
    "tenant_id",
    "name",
    "status",
    "requests_per_minute",
    "tokens_per_minute",
    "tokens_per_month",
    "max_in_flight",
    "in_flight",
]


@click.group()
def tenants() -> None:
    """Create, list, show and update tenants."""


@tenants.command("create")
@click.argument("tenant_id")
@click.option("--name", required=True)
@click.option("--rpm", type=int, default=None, help="requests_per_minute")
@click.option("--tpm", type=int, default=None, help="tokens_per_minute")
@click.option("--monthly-tokens", type=int, default=None, help="tokens_per_month")
@click.option("--max-in-flight", type=int, default=None)
@with_api
def create_tenant(
    tenant_id: str,
    name: str,
    rpm: int | None,
    tpm: int | None,
    monthly_tokens: int | None,
    max_in_flight: int | None,
    api_url: str,
    admin_key: str,
    as_json: bool,
) -> None:
    limits = _limits(rpm, tpm, monthly_tokens, max_in_flight)
    tenant = AdminApi(api_url, admin_key).call(
        "POST", "/admin/tenants", {"tenant_id": tenant_id, "name": name, "limits": limits}
    )
    show(tenant, as_json, TENANT_COLUMNS, tenant_rows([tenant]), "tenant created")


@tenants.command("list")
@with_api
def list_tenants(api_url: str, admin_key: str, as_json: bool) -> None:
    pages = AdminApi(api_url, admin_key).every("/admin/tenants")  # every page; each is sorted on its own
    tenants = sorted(pages, key=lambda tenant: tenant["tenant_id"])
    data = {"object": "list", "data": tenants}
    show(data, as_json, TENANT_COLUMNS, tenant_rows(tenants), "tenants")


@tenants.command("show")
@click.argument("tenant_id")
@with_api
def show_tenant(tenant_id: str, api_url: str, admin_key: str, as_json: bool) -> None:
    tenant = AdminApi(api_url, admin_key).call("GET", f"/admin/tenants/{tenant_id}")
    show(tenant, as_json, TENANT_COLUMNS, tenant_rows([tenant]), tenant_id)


@tenants.command("update")
@click.argument("tenant_id")
@click.option("--name", default=None)
@click.option("--status", type=click.Choice(["active", "suspended"]), default=None)
@click.option("--rpm", type=int, default=None)
@click.option("--tpm", type=int, default=None)
@click.option("--monthly-tokens", type=int, default=None)
@click.option("--max-in-flight", type=int, default=None)
@with_api
def update_tenant(
    tenant_id: str,
    name: str | None,
    status: str | None,
    rpm: int | None,
    tpm: int | None,
    monthly_tokens: int | None,
    max_in_flight: int | None,
    api_url: str,
    admin_key: str,
    as_json: bool,
) -> None:
    limits = _limits(rpm, tpm, monthly_tokens, max_in_flight)
    body: dict[str, Any] = {k: v for k, v in {"name": name, "status": status}.items() if v is not None}
    if limits:
        body["limits"] = limits
    tenant = AdminApi(api_url, admin_key).call("PATCH", f"/admin/tenants/{tenant_id}", body)
    show(tenant, as_json, TENANT_COLUMNS, tenant_rows([tenant]), "tenant updated")


def _key_row(key: dict[str, Any]) -> dict[str, Any]:
    return {**key, "scopes": ",".join(key["scopes"])}


KEY_COLUMNS = ["key_id", "prefix", "scopes", "status", "created_at", "expires_at"]


@click.group()
def keys() -> None:
    """Create, list, revoke and rotate API keys."""


@keys.command("create")
@click.argument("tenant_id")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["inference", "batch", "usage", "admin"]),
    default=["inference", "usage"],
    show_default=True,
)
@click.option("--expires-at", default=None, help="ISO-8601 with a time zone.")
@with_api
def create_key(
    tenant_id: str, scopes: tuple[str, ...], expires_at: str | None, api_url: str, admin_key: str, as_json: bool
) -> None:
    body: dict[str, Any] = {"scopes": list(scopes)}
    if expires_at:
        body["expires_at"] = expires_at
    issued = AdminApi(api_url, admin_key).call("POST", f"/admin/tenants/{tenant_id}/keys", body)
    show(issued, as_json, [*KEY_COLUMNS[:3], "api_key"], [_key_row(issued)], "key issued (shown once)")


@keys.command("list")
@click.argument("tenant_id")
@with_api
def list_keys(tenant_id: str, api_url: str, admin_key: str, as_json: bool) -> None:
    data = AdminApi(api_url, admin_key).call("GET", f"/admin/tenants/{tenant_id}/keys")
    show(data, as_json, KEY_COLUMNS, [_key_row(k) for k in data["data"]], tenant_id)


@keys.command("revoke")
@click.argument("key_id")
@with_api
def revoke_key(key_id: str, api_url: str, admin_key: str, as_json: bool) -> None:
    key = AdminApi(api_url, admin_key).call("DELETE", f"/admin/keys/{key_id}")
    show(key, as_json, KEY_COLUMNS, [_key_row(key)], "key revoked")


@keys.command("rotate")
@click.argument("key_id")
@click.option("--grace-seconds", type=int, default=86_400, show_default=True)
@with_api
def rotate_key(key_id: str, grace_seconds: int, api_url: str, admin_key: str, as_json: bool) -> None:
    issued = AdminApi(api_url, admin_key).call(
        "POST", f"/admin/keys/{key_id}/rotate", {"grace_period_seconds": grace_seconds}
    )
    show(issued, as_json, [*KEY_COLUMNS[:3], "api_key"], [_key_row(issued)], "replacement key (shown once)")


@click.command("usage")
@click.argument("tenant_id")
@click.option("--start", default=None, help="YYYY-MM-DD (default: first of this month)")
@click.option("--end", default=None, help="YYYY-MM-DD (default: today)")
@with_api
def usage(tenant_id: str, start: str | None, end: str | None, api_url: str, admin_key: str, as_json: bool) -> None:
    """A tenant's usage and cost by day and model."""
    query = {k: v for k, v in {"start": start, "end": end}.items() if v}
    data = AdminApi(api_url, admin_key).call("GET", f"/admin/tenants/{tenant_id}/usage", query=query)
    rows = [*data["data"], {"date": "TOTAL", **data["totals"]}]
    show(
        data,
        as_json,
        ["date", "model", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost"],
        rows,
        f"{tenant_id} usage ({data['currency']})",
    )


@click.command("invoice")
@click.argument("month", default=lambda: datetime.now(UTC).strftime("%Y-%m"))
@with_api
def invoice(month: str, api_url: str, admin_key: str, as_json: bool) -> None:
    """The invoice of every tenant with usage in MONTH (YYYY-MM, default: this month)."""
    data = AdminApi(api_url, admin_key).call("GET", f"/admin/invoices/{month}")
    rows = [
        {
            "tenant_id": i["tenant_id"],
            "total_tokens": i["total_tokens"],
            "subtotal": i["subtotal"],
            "amount_due": i["amount_due"],
        }
        for i in data["data"]
    ]
    show(
        data,
        as_json,
        ["tenant_id", "total_tokens", "subtotal", "amount_due"],
        rows,
        f"invoices {month} ({data['currency']}), due {data['amount_due']}",
    )
