"""Keep the local cloud's data between runs: a snapshot of every table, bucket and queue.

moto holds everything in memory. At a clean stop (Ctrl-C) the local cloud writes what the
template's resources hold into a directory, and the next `stratus local up` puts it back before
the gateway and the pollers start; `--fresh` throws the directory away instead. Resources are
named by their logical IDs in `template.yaml`, so a snapshot survives a changed name prefix.

    <dir>/state.json                    format version, when it was written, what it holds
    <dir>/dynamodb/<LogicalId>.jsonl    one item per line, in DynamoDB's typed JSON
    <dir>/s3/<LogicalId>/<key>          each object's bytes (+ .meta.json beside it in meta/)
    <dir>/sqs/<LogicalId>.jsonl         messages not yet consumed: body and attributes

A queued message is kept (not deleted from moto) so nothing is lost if saving fails half-way.
Messages in flight at the stop (received, not yet deleted) come back after their visibility
timeout, as on AWS: the handlers are idempotent.
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import boto3

from stratus.localcloud.resources import Created
from stratus.template import load_template, resources_of_type

FORMAT_VERSION = 1


@dataclass
class StateCounts:
    items: int = 0
    objects: int = 0
    messages: int = 0
    tables: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.items} items, {self.objects} objects, {self.messages} queued messages"


def save(directory: Path, created: Created) -> StateCounts:
    """Write everything the template's resources hold to `directory` (replacing what was there)."""
    template = load_template()
    scratch = directory.with_name(directory.name + ".saving")
    shutil.rmtree(scratch, ignore_errors=True)
    counts = StateCounts()
    _save_tables(template, created, scratch, counts)
    _save_buckets(template, created, scratch, counts)
    _save_queues(template, created, scratch, counts)
    manifest = {"format_version": FORMAT_VERSION, "saved_at": datetime.now(UTC).isoformat(), **counts.__dict__}
    (scratch / "state.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    scratch.rename(directory)  # the old snapshot is replaced only once the new one is whole
    return counts


def restore(directory: Path, created: Created) -> StateCounts | None:
    """Put a snapshot back into freshly created resources; None when there is none."""
    manifest_path = directory / "state.json"
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{manifest_path}: format {manifest.get('format_version')}, expected {FORMAT_VERSION}")
    counts = StateCounts()
    _restore_tables(directory, created, counts)
    _restore_buckets(directory, created, counts)
    _restore_queues(directory, created, counts)
    return counts


def _save_tables(template: dict[str, Any], created: Created, scratch: Path, counts: StateCounts) -> None:
    client = boto3.client("dynamodb")
    folder = scratch / "dynamodb"
    folder.mkdir(parents=True)
    for logical_id in resources_of_type(template, "AWS::DynamoDB::Table"):
        lines: list[str] = []
        for page in client.get_paginator("scan").paginate(TableName=created.refs[logical_id], ConsistentRead=True):
            lines.extend(json.dumps(_binary_as_text(item), sort_keys=True) for item in page["Items"])
        (folder / f"{logical_id}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        counts.items += len(lines)
        counts.tables[logical_id] = len(lines)


def _binary_as_text(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's JSON with its binary values (bytes from boto3) in base64, as DynamoDB's
    own JSON has them (a job's compressed answer is one)."""
    return {name: _attribute(value, lambda b: base64.b64encode(b).decode()) for name, value in item.items()}


def _binary_from_text(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _attribute(value, base64.b64decode) for name, value in item.items()}


def _attribute(value: dict[str, Any], convert: Any) -> dict[str, Any]:
    """One attribute value with `convert` applied to its binary parts, in maps and lists too."""
    kind, inner = next(iter(value.items()))
    if kind == "B":
        return {"B": convert(inner)}
    if kind == "BS":
        return {"BS": [convert(b) for b in inner]}
    if kind == "M":
        return {"M": {name: _attribute(v, convert) for name, v in inner.items()}}
    if kind == "L":
        return {"L": [_attribute(v, convert) for v in inner]}
    return value


def _restore_tables(directory: Path, created: Created, counts: StateCounts) -> None:
    client = boto3.client("dynamodb")
    for file in sorted((directory / "dynamodb").glob("*.jsonl")):
        table = created.refs.get(file.stem)
        if table is None:  # a table the template no longer declares
            continue
        lines = file.read_text(encoding="utf-8").splitlines()
        items = [_binary_from_text(json.loads(line)) for line in lines if line]
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            pending: dict[str, Any] = {table: requests}
            while pending:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        counts.items += len(items)
        counts.tables[file.stem] = len(items)


def _safe_key(key: str) -> PurePosixPath:
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not key:
        raise ValueError(f"refusing to write S3 key {key!r} outside the state directory")
    return path


def _save_buckets(template: dict[str, Any], created: Created, scratch: Path, counts: StateCounts) -> None:
    client = boto3.client("s3")
    for logical_id in resources_of_type(template, "AWS::S3::Bucket"):
        bucket = created.refs[logical_id]
        objects, meta = scratch / "s3" / logical_id, scratch / "s3-meta" / logical_id
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                relative = _safe_key(entry["Key"])
                got = client.get_object(Bucket=bucket, Key=entry["Key"])
                target = objects / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(got["Body"].read())
                info = {"key": entry["Key"], "ContentType": got.get("ContentType"), "Metadata": got.get("Metadata")}
                (meta / relative).parent.mkdir(parents=True, exist_ok=True)
                (meta / f"{relative}.json").write_text(json.dumps(info), encoding="utf-8")
                counts.objects += 1


def _restore_buckets(directory: Path, created: Created, counts: StateCounts) -> None:
    client = boto3.client("s3")
    for folder in sorted((directory / "s3-meta").glob("*")):
        bucket = created.refs.get(folder.name)
        if bucket is None:
            continue
        for meta_file in sorted(folder.rglob("*.json")):
            info = json.loads(meta_file.read_text(encoding="utf-8"))
            body = (directory / "s3" / folder.name / _safe_key(info["key"])).read_bytes()
            extra = {"ContentType": info["ContentType"]} if info.get("ContentType") else {}
            client.put_object(Bucket=bucket, Key=info["key"], Body=body, Metadata=info.get("Metadata") or {}, **extra)
            counts.objects += 1


def _save_queues(template: dict[str, Any], created: Created, scratch: Path, counts: StateCounts) -> None:
    client = boto3.client("sqs")
    folder = scratch / "sqs"
    folder.mkdir(parents=True)
    for logical_id in resources_of_type(template, "AWS::SQS::Queue"):
        url = created.refs[logical_id]
        seen: set[str] = set()
        lines: list[str] = []
        while True:  # received with a long visibility timeout, so each message is read once
            got = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600, MessageAttributeNames=["All"]
            ).get("Messages", [])
            fresh = [m for m in got if m["MessageId"] not in seen]
            if not fresh:
                break
            for message in fresh:
                seen.add(message["MessageId"])
                record = {"body": message["Body"], "attributes": message.get("MessageAttributes") or {}}
                lines.append(json.dumps(record))
        (folder / f"{logical_id}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        counts.messages += len(lines)


def _restore_queues(directory: Path, created: Created, counts: StateCounts) -> None:
    client = boto3.client("sqs")
    for file in sorted((directory / "sqs").glob("*.jsonl")):
        url = created.refs.get(file.stem)
        if url is None:
            continue
        for line in file.read_text(encoding="utf-8").splitlines():
            if not line:
                continue
            record = json.loads(line)
            client.send_message(QueueUrl=url, MessageBody=record["body"], MessageAttributes=record["attributes"])
            counts.messages += 1
