"""Create the template's tables, buckets, queues, topics and subscriptions on whatever endpoint
boto3 points at (moto in process, moto's server, or a scratch account).

moto's CloudFormation skips SNS subscriptions (docs/platform-notes.md), so this reads the template
and makes each resource with the plain API instead; what the template declares is what exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3

from stratus.template import function_environment, load_template, resources_of_type

_TABLE_KEYS = ("AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")
_QUEUE_ATTRIBUTES = {"VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds"}


@dataclass
class Created:
    """What `!Ref` and `!GetAtt X.Arn` resolve to for each created resource."""

    refs: dict[str, str] = field(default_factory=dict)
    arns: dict[str, str] = field(default_factory=dict)

    def resolve(self, value: Any) -> str:
        if isinstance(value, dict) and "Ref" in value:
            return self.refs[value["Ref"]]
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if attribute != "Arn":
                raise KeyError(f"cannot resolve {logical_id}.{attribute}")
            return self.arns[logical_id]
        return str(value)


def create_tables(template: Mapping[str, Any], prefix: str, created: Created) -> None:
    client = boto3.client("dynamodb")
    for logical_id, props in resources_of_type(template, "AWS::DynamoDB::Table").items():
        name = f"{prefix}-{logical_id}"
        table = client.create_table(TableName=name, **{key: props[key] for key in _TABLE_KEYS if key in props})
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
        created.refs[logical_id] = name
        created.arns[logical_id] = table["TableDescription"]["TableArn"]


def create_buckets(template: Mapping[str, Any], prefix: str, created: Created) -> None:
    client = boto3.client("s3")
    for logical_id in resources_of_type(template, "AWS::S3::Bucket"):
        name = f"{prefix}-{logical_id}".lower()
        region = client.meta.region_name
        if region == "us-east-1":
            client.create_bucket(Bucket=name)
        else:
            client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]
        created.refs[logical_id] = name
        created.arns[logical_id] = f"arn:aws:s3:::{name}"


def create_queues(template: Mapping[str, Any], prefix: str, created: Created) -> None:
    """Queues first, then their redrive policies (a queue may name a dead-letter queue declared later)."""
    client = boto3.client("sqs")
    queues = resources_of_type(template, "AWS::SQS::Queue")
    for logical_id, props in queues.items():
        attributes = {key: str(value) for key, value in props.items() if key in _QUEUE_ATTRIBUTES}
        url = client.create_queue(QueueName=f"{prefix}-{logical_id}", Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        created.refs[logical_id] = url
        created.arns[logical_id] = arn
    for logical_id, props in queues.items():
        redrive = props.get("RedrivePolicy")
        if redrive:
            policy = {
                "deadLetterTargetArn": created.resolve(redrive["deadLetterTargetArn"]),
                "maxReceiveCount": str(redrive["maxReceiveCount"]),
            }
            client.set_queue_attributes(
                QueueUrl=created.refs[logical_id], Attributes={"RedrivePolicy": json.dumps(policy)}
            )


def create_topics(template: Mapping[str, Any], prefix: str, created: Created) -> None:
    client = boto3.client("sns")
    for logical_id in resources_of_type(template, "AWS::SNS::Topic"):
        arn = client.create_topic(Name=f"{prefix}-{logical_id}")["TopicArn"]
        created.refs[logical_id] = arn
        created.arns[logical_id] = arn
    for props in resources_of_type(template, "AWS::SNS::Subscription").values():
        if props["Protocol"] != "sqs":  # the alarm e-mail subscription is for a real account only
            continue
        attributes = {"RawMessageDelivery": "true"} if props.get("RawMessageDelivery") else {}
        client.subscribe(
            TopicArn=created.resolve(props["TopicArn"]),
            Protocol=props["Protocol"],
            Endpoint=created.resolve(props["Endpoint"]),
            Attributes=attributes,
        )


def create_all(prefix: str = "stratus") -> Created:
    template = load_template()
    created = Created()
    create_tables(template, prefix, created)
    create_buckets(template, prefix, created)
    create_queues(template, prefix, created)
    create_topics(template, prefix, created)
    return created


def create_resources(prefix: str = "stratus") -> dict[str, str]:
    """Create every resource above; return the functions' environment from the template's Globals."""
    return function_environment(load_template(), create_all(prefix).refs)
