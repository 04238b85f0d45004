"""`stratus model upload`: a verified artifact's model.tar.gz goes to S3 and the deploy parameters are printed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import boto3
from click.testing import CliRunner
from moto import mock_aws

from stratus.cli import main


def test_upload_puts_the_archive_under_its_hash_and_prints_the_parameters(tiny_artifact: Path) -> None:
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="my-models")
        result = CliRunner().invoke(
            main,
            ["model", "upload", str(tiny_artifact), "--bucket", "my-models", "--image-uri", "1.dkr.ecr/x:1", "--json"],
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
