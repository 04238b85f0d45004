"""The local cloud's saved state: tables, bucket objects and queued messages come back after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from stratus.localcloud import state
from stratus.localcloud.resources import Created, create_all


def test_a_snapshot_restores_items_objects_and_queued_messages(created: Created, tmp_path: Path) -> None:
    dynamodb, s3, sqs = boto3.client("dynamodb"), boto3.client("s3"), boto3.client("sqs")
    dynamodb.put_item(
        TableName=created.refs["TenantsTable"],
        Item={
            "tenant_id": {"S": "acme"},
            "name": {"S": "Acme"},
            "spent": {"N": "0.000125"},
            "B": {"M": {"answer": {"B": b"\x78\x9c\x00"}, "parts": {"L": [{"BS": [b"\x00", b"\xff"]}]}}},
        },
    )
    s3.put_object(Bucket=created.refs["DataBucket"], Key="files/acme/file_1/in.jsonl", Body=b'{"a": 1}\n')
    sqs.send_message(
        QueueUrl=created.refs["RequestsQueue"],
        MessageBody=json.dumps({"job_id": "job_1"}),
        MessageAttributes={"tenant": {"DataType": "String", "StringValue": "acme"}},
    )
    saved = state.save(tmp_path / "state", created)
    assert (saved.items, saved.objects, saved.messages) == (1, 1, 1)

    with mock_aws():  # a new, empty moto: what a restart of the local cloud starts from
        again = create_all("stratus")
        restored = state.restore(tmp_path / "state", again)
        assert restored is not None and (restored.items, restored.objects, restored.messages) == (1, 1, 1)
        item = boto3.client("dynamodb").get_item(
            TableName=again.refs["TenantsTable"], Key={"tenant_id": {"S": "acme"}}
        )["Item"]
        assert item["spent"] == {"N": "0.000125"}
        assert item["B"] == {"M": {"answer": {"B": b"\x78\x9c\x00"}, "parts": {"L": [{"BS": [b"\x00", b"\xff"]}]}}}
        body = boto3.client("s3").get_object(Bucket=again.refs["DataBucket"], Key="files/acme/file_1/in.jsonl")
        assert body["Body"].read() == b'{"a": 1}\n'
        (message,) = boto3.client("sqs").receive_message(
            QueueUrl=again.refs["RequestsQueue"], MessageAttributeNames=["All"]
        )["Messages"]
        assert json.loads(message["Body"]) == {"job_id": "job_1"}
        assert message["MessageAttributes"]["tenant"]["StringValue"] == "acme"


def test_no_snapshot_means_an_empty_start_and_a_traversing_key_is_refused(created: Created, tmp_path: Path) -> None:
    assert state.restore(tmp_path / "nothing", created) is None
    boto3.client("s3").put_object(Bucket=created.refs["DataBucket"], Key="a/../../escape", Body=b"x")
    with pytest.raises(ValueError, match="outside the state directory"):
        state.save(tmp_path / "state", created)
    assert not (tmp_path / "escape").exists()
