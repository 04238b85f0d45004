"""`stratus model upload`: a verified artifact's model.tar.gz goes to S3 and the deploy parameters are printed."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from stratus.cli import main
from stratus.template import load_template


def test_upload_puts_the_archive_under_its_hash_and_prints_the_parameters(tiny_artifact: Path) -> None:
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="my-models")
        result = CliRunner().invoke(
            main,
            [
                *("model", "upload", str(tiny_artifact), "--bucket", "my-models"),
                *("--image-uri", "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1", "--json"),
            ],
        )
        assert result.exit_code == 0, result.output
        uploaded = json.loads(result.output.strip().splitlines()[-1])
        archive = (tiny_artifact / "model.tar.gz").read_bytes()
        assert uploaded["sha256"] == hashlib.sha256(archive).hexdigest()
        bucket, key = uploaded["model_data_url"].removeprefix("s3://").split("/", 1)
        assert bucket == "my-models" and key.endswith(f"{uploaded['sha256'][:16]}/model.tar.gz")
        assert boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == archive

        human = CliRunner().invoke(main, ["model", "upload", str(tiny_artifact), "--bucket", "my-models"])
        assert f"sam deploy --parameter-overrides ModelDataUrl={uploaded['model_data_url']}" in human.output


def test_a_corrupted_artifact_is_not_uploaded(tiny_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    shard = next(copy.glob("*.safetensors"))
    data = shard.read_bytes()
    shard.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="my-models")
        result = CliRunner().invoke(main, ["model", "upload", str(copy), "--bucket", "my-models"])
        assert result.exit_code == 1 and "not uploading" in result.output and shard.name in result.output
        assert boto3.client("s3").list_objects_v2(Bucket="my-models").get("KeyCount") == 0


@pytest.mark.parametrize(
    ("image_uri", "arn"),
    [
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/stratus-llm:0.1.0",
            "arn:aws:ecr:us-east-1:123456789012:repository/stratus-llm",
        ),
        (  # a namespaced repository: the whole path, not its first segment
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml-platform/stratus-llm:2026-12-01",
            "arn:aws:ecr:eu-west-1:123456789012:repository/ml-platform/stratus-llm",
        ),
        (  # another account and region than the stack's, pinned by digest
            "210987654321.dkr.ecr.us-west-2.amazonaws.com/stratus-llm@sha256:" + "ab" * 32,
            "arn:aws:ecr:us-west-2:210987654321:repository/stratus-llm",
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/stratus-llm:1",
            "arn:aws-cn:ecr:cn-north-1:123456789012:repository/stratus-llm",
        ),
    ],
)
def test_the_deploy_parameters_name_the_images_repository(image_uri: str, arn: str) -> None:
    from stratus.model_commands import repository_arn

    assert repository_arn(image_uri) == arn
    template = load_template()["Parameters"]
    assert re.match(template["ModelImageUri"]["AllowedPattern"], image_uri)
    assert re.match(template["ModelImageRepositoryArn"]["AllowedPattern"], arn)
