"""`stratus`: the operator's command."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from stratus.bootstrap import BootstrapResult, bootstrap_admin, resolve_tables
from stratus.local_commands import demo, local
from stratus.model_commands import model
from stratus.operator_commands import invoice, keys, tenants, usage
from stratus.simulate_command import simulate_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoint-url",
    envvar="AWS_ENDPOINT_URL",
    default=None,
    help="AWS endpoint (e.g. the local cloud's moto server). Also read from AWS_ENDPOINT_URL.",
)
@click.option("--region", envvar="AWS_DEFAULT_REGION", default=None, help="AWS region.")
def main(endpoint_url: str | None, region: str | None) -> None:
    """Operate a Stratus deployment: tenants, keys, usage, the local cloud."""
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        os.environ["AWS_DEFAULT_REGION"] = region


@main.group()
def admin() -> None:
    """Operator tasks that need direct DynamoDB access."""


@admin.command()
@click.option("--stack-name", default=None, help="Read table names from this CloudFormation stack's outputs.")
@click.option("--tenants-table", envvar="TENANTS_TABLE", default=None, help="Tenants table (or TENANTS_TABLE).")
@click.option("--api-keys-table", envvar="API_KEYS_TABLE", default=None, help="API keys table (or API_KEYS_TABLE).")
@click.option("--tenant-id", default="operators", show_default=True, help="Tenant that owns the admin key.")
@click.option("--name", default="Operators", show_default=True, help="Name of that tenant if it is created.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def bootstrap(
    stack_name: str | None,
    tenants_table: str | None,
    api_keys_table: str | None,
    tenant_id: str,
    name: str,
    as_json: bool,
) -> None:
    """Create the first admin key (and its tenant), printing the key once.

    Talks to DynamoDB directly: run it with credentials that may write the tables.
    """
    tables = resolve_tables(stack_name, tenants_table, api_keys_table)
    result = bootstrap_admin(tables, tenant_id, name)
    _print_bootstrap(result, as_json)


def _print_bootstrap(result: BootstrapResult, as_json: bool) -> None:
    issued = result.key
    if as_json:
        payload: dict[str, Any] = json.loads(issued.model_dump_json())
        payload["tenant_created"] = result.tenant_created
        click.echo(json.dumps(payload, indent=2))
        return
    created = "created" if result.tenant_created else "existing"
    click.echo(f"tenant   {issued.tenant_id} ({created})")
    click.echo(f"key id   {issued.key_id}")
    click.echo(f"scopes   {', '.join(scope.value for scope in issued.scopes)}")
    click.echo(f"api key  {issued.api_key}")
    click.echo("This key is shown once and stored only as a hash. Keep it somewhere safe.", err=True)


main.add_command(model)
main.add_command(local)
main.add_command(demo)
main.add_command(simulate_command)
for command in (tenants, keys, usage, invoice):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
