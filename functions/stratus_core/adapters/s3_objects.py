"""Request bodies, packs and endpoint outputs in the data bucket."""

from __future__ import annotations

from urllib.parse import urlparse

from botocore.exceptions import ClientError

from stratus_core.adapters import aws
from stratus_core.batches.chunks import ChunkBody
from stratus_core.contract import InferencePack, PackedRequest, PackResult


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def split_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path:
        raise ValueError(f"not an S3 URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def _read(bucket: str, key: str) -> bytes | None:
    try:
        return aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if aws.error_code(error) in ("NoSuchKey", "404"):
            return None
        raise


class S3Objects:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put(self, key: str, request: PackedRequest) -> None:
        self.put_bytes(key, request.model_dump_json().encode(), "application/json")

    def get(self, key: str) -> PackedRequest | None:
        body = _read(self.bucket, key)
        return PackedRequest.model_validate_json(body) if body is not None else None

    def put_chunk(self, key: str, body: ChunkBody) -> None:
        self.put_bytes(key, body.model_dump_json().encode(), "application/json")

    def get_chunk(self, key: str) -> ChunkBody | None:
        body = _read(self.bucket, key)
        return ChunkBody.model_validate_json(body) if body is not None else None

    def put_pack(self, pack: InferencePack) -> str:
        key = f"packs/{pack.pack_id}.json"
        aws.s3().put_object(
            Bucket=self.bucket, Key=key, Body=pack.model_dump_json().encode(), ContentType="application/json"
        )
        return s3_uri(self.bucket, key)

    @staticmethod
    def read_pack(uri: str) -> InferencePack | None:
        body = _read(*split_uri(uri))
        return InferencePack.model_validate_json(body) if body is not None else None

    @staticmethod
    def read_result(uri: str) -> PackResult | None:
        body = _read(*split_uri(uri))
        return PackResult.model_validate_json(body) if body is not None else None

    @staticmethod
    def read_text(uri: str) -> str | None:
        body = _read(*split_uri(uri))
        return body.decode("utf-8", errors="replace") if body is not None else None

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        aws.s3().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get_bytes(self, key: str) -> bytes | None:
        return _read(self.bucket, key)

    def size(self, key: str) -> int | None:
        try:
            return int(aws.s3().head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as error:
            if aws.error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def delete(self, key: str) -> None:
        aws.s3().delete_object(Bucket=self.bucket, Key=key)

    def presigned_put(self, key: str, expires_in: int) -> str:
        return aws.s3().generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": "application/jsonl"},
            ExpiresIn=expires_in,
        )
