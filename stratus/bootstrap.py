"""The first admin key, made with direct DynamoDB access (before any admin key exists)."""

from __future__ import annotations

from dataclasses import dataclass

import boto3
import click

from stratus_core.adapters.dynamo.key_store import DynamoKeyStore
from stratus_core.adapters.dynamo.tenant_store import DynamoTenantStore
from stratus_core.errors import Conflict
from stratus_core.keys import IssuedKey, KeyCreate, KeyService, Scope
from stratus_core.tenants import TenantCreate, TenantLimits, TenantService

ADMIN_SCOPES = [Scope.ADMIN, Scope.USAGE]


@dataclass(frozen=True)
class Tables:
    tenants: str
    api_keys: str


@dataclass(frozen=True)
class BootstrapResult:
    key: IssuedKey
    tenant_created: bool


def resolve_tables(stack_name: str | None, tenants_table: str | None, api_keys_table: str | None) -> Tables:
    if stack_name:
        stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
        outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
        tenants_table = tenants_table or outputs.get("TenantsTableName")
        api_keys_table = api_keys_table or outputs.get("ApiKeysTableName")
    if not tenants_table or not api_keys_table:
        raise click.UsageError("give --stack-name, or --tenants-table and --api-keys-table (or their env variables)")
    return Tables(tenants=tenants_table, api_keys=api_keys_table)


def bootstrap_admin(tables: Tables, tenant_id: str, name: str) -> BootstrapResult:
    """Create the operators' tenant if missing, then issue it a key with the admin scope."""
    tenant_store = DynamoTenantStore(tables.tenants)
    tenant_created = True
    try:
        TenantService(tenant_store).create(
            TenantCreate(tenant_id=tenant_id, name=name, limits=TenantLimits(), allowed_models=[])
        )
    except Conflict:
        tenant_created = False
    keys = KeyService(DynamoKeyStore(tables.api_keys), tenant_store)
    return BootstrapResult(key=keys.create(tenant_id, KeyCreate(scopes=ADMIN_SCOPES)), tenant_created=tenant_created)
