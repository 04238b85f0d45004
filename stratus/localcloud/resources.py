"""Create the template's DynamoDB tables and S3 buckets on whatever endpoint boto3 points at
(moto in process, moto's server, or a real account for a scratch test)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3

from stratus.template import function_environment, load_template, resources_of_type

_TABLE_KEYS = ("AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")


def create_tables(template: Mapping[str, Any], prefix: str) -> dict[str, str]:
    client = boto3.client("dynamodb")
    names: dict[str, str] = {}
    for logical_id, props in resources_of_type(template, "AWS::DynamoDB::Table").items():
        name = f"{prefix}-{logical_id}"
        client.create_table(TableName=name, **{key: props[key] for key in _TABLE_KEYS if key in props})
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
        names[logical_id] = name
    return names


def create_buckets(template: Mapping[str, Any], prefix: str) -> dict[str, str]:
    client = boto3.client("s3")
    names: dict[str, str] = {}
    for logical_id in resources_of_type(template, "AWS::S3::Bucket"):
        name = f"{prefix}-{logical_id}".lower()
        region = client.meta.region_name
        if region == "us-east-1":
            client.create_bucket(Bucket=name)
        else:
            client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]
        names[logical_id] = name
    return names


def create_resources(prefix: str = "stratus") -> dict[str, str]:
    """Create every table and bucket the template declares; return the functions' environment."""
    template = load_template()
    names = {**create_tables(template, prefix), **create_buckets(template, prefix)}
    return function_environment(template, names)
