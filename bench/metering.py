"""Every AWS call the local cloud makes, attributed to the function that made it, in billing units.

`Meter.install()` wraps botocore's `BaseClient._make_api_call` (every client: the functions', the
event sources', the local endpoint's), each Lambda handler the local cloud invokes (to time it and to
know who is calling), the gateway (one API Gateway request per HTTP request) and stdout (the bytes
each function logs, as CloudWatch Logs would ingest them).

Billing units follow AWS's documented rules:
- DynamoDB writes: 1 write request unit per started KB of the larger of the item's before and after
  images, ×2 inside a transaction (`ConditionCheck` too), plus one unit per KB for every global
  secondary index whose entry the write creates, changes or removes (2 when its key changes);
  reads: 1 read unit per started 4 KB for a strongly consistent read, half for an eventually
  consistent one (every GSI query), ×2 in `TransactGetItems`. Item sizes by the item-size rules.
- SQS: one request per started 64 KB of payload; SNS: one publish per started 64 KB.
- S3: PUT, COPY, POST and LIST are tier 1; GET and HEAD tier 2; DELETE is free.
- Lambda: one request per invocation and GB-seconds of the duration rounded up to the millisecond,
  at the memory size `template.yaml` gives the function.
- Control-plane calls (DescribeTable, DescribeEndpoint, RegisterScalableTarget, GetQueueAttributes
  is not one: it is an SQS request) cost nothing per call.

To size DynamoDB writes the meter reads the item before and after each write with an unmetered
client; the time that takes is subtracted from the handler's measured duration.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

PRICES_AS_OF = "2026-12 (us-east-1 list prices as published; DynamoDB on-demand after its November 2024 cut)"
PRICES = {
    "dynamodb_write": Decimal("0.625") / 10**6,  # per write request unit, on-demand
    "dynamodb_read": Decimal("0.125") / 10**6,  # per read request unit, on-demand
    "s3_tier1": Decimal("0.005") / 1000,  # PUT, COPY, POST, LIST
    "s3_tier2": Decimal("0.0004") / 1000,  # GET, HEAD
    "sqs_request": Decimal("0.40") / 10**6,  # standard queue, per 64 KB chunk
    "sns_publish": Decimal("0.50") / 10**6,  # per 64 KB chunk (deliveries to SQS are free)
    "http_api_request": Decimal("1.00") / 10**6,  # HTTP API, first 300 million a month
    "lambda_request": Decimal("0.20") / 10**6,
    "lambda_gb_second": Decimal("0.0000133334"),  # arm64, first 7.5 billion GB-s a month
    "logs_gb": Decimal("0.50"),  # CloudWatch Logs ingestion (standard class)
    "xray_trace": Decimal("5.00") / 10**6,  # traces recorded
    "alarm_metric_month": Decimal("0.10"),  # standard-resolution alarm, per metric
    "dashboard_month": Decimal("3.00"),  # beyond the account's first three
    "custom_metric_month": Decimal("0.30"),  # first 10,000 metrics
    "kms_key_month": Decimal("1.00"),  # a customer managed key
    "provisioned_wcu_hour": Decimal("0.00065"),
    "provisioned_rcu_hour": Decimal("0.00013"),
}

SQS_CHUNK = 64 * 1024
S3_TIER1 = {
    "PutObject",
    "CopyObject",
    "PostObject",
    "ListObjects",
    "ListObjectsV2",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
}
S3_TIER2 = {"GetObject", "HeadObject"}
DYNAMO_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
DYNAMO_CONTROL = {"DescribeTable", "ListTables", "DescribeTimeToLive", "CreateTable", "UpdateTimeToLive"}


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value, by DynamoDB's documented item-size rules."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "B":
        return len(inner) if isinstance(inner, bytes) else len(str(inner))
    if kind == "N":
        digits = len(inner.lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(s).encode()) for s in inner)
    raise ValueError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in (item or {}).items())


def kb(size: int) -> int:
    return max(1, math.ceil(size / 1024))


@dataclass
class Units:
    """What one actor spent: billing units per service, calls per operation, Lambda time, logs."""

    calls: Counter[str] = field(default_factory=Counter)  # "dynamodb.PutItem" → count
    units: Counter[str] = field(default_factory=Counter)  # "dynamodb_write", "s3_tier1", … → units
    invocations: int = 0
    billed_ms: int = 0
    cpu_ms: float = 0.0  # the handler thread's own CPU time (this machine's core)
    call_ms: Counter[str] = field(default_factory=Counter)  # time inside AWS calls, per service (moto here)
    log_bytes: int = 0

    def add(self, other: Units) -> None:
        self.calls.update(other.calls)
        self.units.update(other.units)
        self.invocations += other.invocations
        self.billed_ms += other.billed_ms
        self.cpu_ms += other.cpu_ms
        self.call_ms.update(other.call_ms)
        self.log_bytes += other.log_bytes

    def minus(self, other: Units) -> Units:
        result = Units(
            invocations=self.invocations - other.invocations,
            billed_ms=self.billed_ms - other.billed_ms,
            cpu_ms=self.cpu_ms - other.cpu_ms,
            log_bytes=self.log_bytes - other.log_bytes,
        )
        result.calls = Counter({k: v - other.calls.get(k, 0) for k, v in self.calls.items()})
        result.units = Counter({k: v - other.units.get(k, 0) for k, v in self.units.items()})
        result.call_ms = Counter({k: v - other.call_ms.get(k, 0) for k, v in self.call_ms.items()})
        return result

    def copy(self) -> Units:
        result = Units()
        result.add(self)
        return result


IDLE = "(idle)"
"""The actor for what costs money with no work: empty receives of the event sources."""
RELEASES = "SchedulerFunction (releases)"
"""The scheduler's per-request calls (sending a held job to its queue, unmarking it): the rest of
each run is the same with or without work."""


def _releases(operation: str, params: dict[str, Any]) -> bool:
    return operation.startswith("SendMessage") or (
        operation == "UpdateItem" and "waiting" in params.get("UpdateExpression", "")
    )


class Meter:
    """Install once, before the local cloud imports its handlers (see the module docstring)."""

    def __init__(self) -> None:
        self.actors: dict[str, Units] = defaultdict(Units)
        self.gateway_requests = 0
        self.emf: list[str] = []  # the EMF documents written (custom metrics)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._tables: dict[str, dict[str, Any]] = {}
        self._raw_client: Any = None
        self._original_call: Any = None

    # --- who is calling -----------------------------------------------------------------------
    def actor(self) -> str:
        name = getattr(self._local, "actor", None)
        if name:
            return str(name)
        thread = threading.current_thread().name
        if thread.startswith("poller-"):
            return "event source mapping"
        if thread.startswith("endpoint"):
            return "SageMaker async endpoint"
        return "client"

    @contextlib.contextmanager
    def acting_as(self, name: str) -> Iterator[None]:
        previous = getattr(self._local, "actor", None)
        self._local.actor = name
        try:
            yield
        finally:
            self._local.actor = previous

    def snapshot(self) -> dict[str, Units]:
        with self._lock:
            return {name: units.copy() for name, units in self.actors.items()}

    # --- wrappers -----------------------------------------------------------------------------
    def install(self) -> None:
        import botocore.client

        self._original_call = original = botocore.client.BaseClient._make_api_call
        meter = self

        def metered(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if getattr(meter._local, "raw", False):
                return original(client, operation, params)
            return meter._call(original, client, operation, params)

        botocore.client.BaseClient._make_api_call = metered  # type: ignore[method-assign]
        sys.stdout = _CountingStream(sys.stdout, self)

        import stratus.localcloud.cloud as cloud
        from stratus.localcloud import functions
        from stratus.localcloud.gateway import HttpApiGateway

        original_handler = functions.handler

        def handler(template: Any, logical_id: str) -> Any:
            return meter.timed(logical_id, original_handler(template, logical_id))

        cloud.handler = handler  # type: ignore[attr-defined]
        original_handle = HttpApiGateway.handle

        def handle(gateway: Any, *args: Any, **kwargs: Any) -> Any:
            with meter._lock:
                meter.gateway_requests += 1
            return original_handle(gateway, *args, **kwargs)

        HttpApiGateway.handle = handle  # type: ignore[method-assign]

    def timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def invoke(event: Any, context: Any) -> Any:
            previous = getattr(self._local, "actor", None)
            self._local.actor = name
            self._local.overhead = 0.0
            self._local.overhead_cpu = 0.0
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return function(event, context)
            finally:
                elapsed = time.perf_counter() - start - self._local.overhead
                cpu = time.thread_time() - start_cpu - self._local.overhead_cpu
                self._local.actor = previous
                with self._lock:
                    units = self.actors[name]
                    units.invocations += 1
                    units.billed_ms += max(1, math.ceil(elapsed * 1000))
                    units.cpu_ms += cpu * 1000

        return invoke

    def log(self, size: int) -> None:
        name = getattr(self._local, "actor", None)
        if name:
            with self._lock:
                self.actors[name].log_bytes += size

    # --- one call -----------------------------------------------------------------------------
    def _call(self, original: Any, client: Any, operation: str, params: dict[str, Any]) -> Any:
        service = client.meta.service_model.service_name
        actor = self.actor()
        spent, spent_cpu = time.perf_counter(), time.thread_time()
        before = self._images(client, operation, params) if service == "dynamodb" else None
        spent, spent_cpu = time.perf_counter() - spent, time.thread_time() - spent_cpu
        error: Exception | None = None
        response: Any = None
        called = time.perf_counter()
        try:
            response = original(client, operation, params)
        except Exception as exc:  # noqa: BLE001 - re-raised below; a refused write still costs its units
            error = exc
        called = time.perf_counter() - called
        spent_after, spent_after_cpu = time.perf_counter(), time.thread_time()
        units: Counter[str] = Counter()
        if service == "dynamodb":
            after = self._images(client, operation, params)
            units = self._dynamo_units(operation, params, response, before or {}, after)
        else:
            units = self._other_units(service, operation, params, response)
        spent += time.perf_counter() - spent_after
        spent_cpu += time.thread_time() - spent_after_cpu
        if hasattr(self._local, "overhead"):
            self._local.overhead += spent
            self._local.overhead_cpu += spent_cpu
        if actor == "SchedulerFunction" and _releases(operation, params):
            actor = RELEASES
        if service == "sqs" and operation == "ReceiveMessage" and not (response or {}).get("Messages"):
            actor = IDLE if actor == "event source mapping" else actor
        with self._lock:
            record = self.actors[actor]
            record.calls[f"{service}.{operation}"] += 1
            record.units.update(units)
            record.call_ms[service] += called * 1000
        if error is not None:
            raise error
        return response

    def _other_units(self, service: str, operation: str, params: dict[str, Any], response: Any) -> Counter[str]:
        units: Counter[str] = Counter()
        if service == "sqs":
            if operation == "SendMessage":
                units["sqs_request"] += _chunks(len(params.get("MessageBody", "").encode()))
            elif operation == "SendMessageBatch":
                units["sqs_request"] += _chunks(sum(len(e["MessageBody"].encode()) for e in params["Entries"]))
            elif operation == "ReceiveMessage":
                messages = (response or {}).get("Messages") or []
                units["sqs_request"] += _chunks(sum(len(m.get("Body", "").encode()) for m in messages))
            elif operation not in ("GetQueueUrl", "CreateQueue", "ListQueues"):
                units["sqs_request"] += 1  # DeleteMessage(Batch), ChangeMessageVisibility, GetQueueAttributes
        elif service == "sns" and operation == "Publish":
            units["sns_publish"] += _chunks(len(params.get("Message", "").encode()))
        elif service == "s3":
            if operation in S3_TIER1:
                units["s3_tier1"] += 1
            elif operation in S3_TIER2:
                units["s3_tier2"] += 1
        return units

    # --- DynamoDB sizing ----------------------------------------------------------------------
    def _raw(self, client: Any, operation: str, params: dict[str, Any]) -> Any:
        self._local.raw = True
        try:
            return self._original_call(client, operation, params)
        finally:
            self._local.raw = False

    def _table(self, client: Any, name: str) -> dict[str, Any]:
        if name not in self._tables:
            self._tables[name] = self._raw(client, "DescribeTable", {"TableName": name})["Table"]
        return self._tables[name]

    def _key_of(self, client: Any, table: str, item_or_key: dict[str, Any]) -> dict[str, Any]:
        names = [part["AttributeName"] for part in self._table(client, table)["KeySchema"]]
        return {name: item_or_key[name] for name in names}

    def _written(self, operation: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
        """(table, key or item, kind) of every item the call writes."""
        if operation in DYNAMO_WRITES:
            return [(params["TableName"], params.get("Key") or params["Item"], operation)]
        if operation == "TransactWriteItems":
            found = []
            for entry in params["TransactItems"]:
                ((kind, spec),) = entry.items()
                found.append((spec["TableName"], spec.get("Key") or spec["Item"], kind))
            return found
        if operation == "BatchWriteItem":
            return [
                (table, request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"], "Batch")
                for table, requests in params["RequestItems"].items()
                for request in requests
            ]
        return []

    def _images(self, client: Any, operation: str, params: dict[str, Any]) -> dict[int, dict[str, Any] | None]:
        images: dict[int, dict[str, Any] | None] = {}
        for index, (table, key_or_item, _kind) in enumerate(self._written(operation, params)):
            key = self._key_of(client, table, key_or_item)
            got = self._raw(client, "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True})
            images[index] = got.get("Item")
        return images

    def _dynamo_units(
        self,
        operation: str,
        params: dict[str, Any],
        response: Any,
        before: dict[int, dict[str, Any] | None],
        after: dict[int, dict[str, Any] | None],
    ) -> Counter[str]:
        units: Counter[str] = Counter()
        if operation in DYNAMO_CONTROL:
            return units
        written = self._written(operation, params)
        for index, (table, key_or_item, kind) in enumerate(written):
            old, new = before.get(index), after.get(index)
            new_size = item_size(key_or_item) if kind == "Put" or operation == "PutItem" else item_size(new)
            size = max(item_size(old), new_size)
            factor = 2 if operation == "TransactWriteItems" else 1
            what = f"{operation}/{kind} {_item_kind(table, key_or_item)}"
            units["dynamodb_write"] += factor * kb(size)
            units[f"dynamodb_write {what}"] += factor * kb(size)
            if kind != "ConditionCheck":
                indexed = self._index_units(table, old, new)
                units["dynamodb_write"] += indexed
                if indexed:
                    units[f"dynamodb_write {what} (indexes)"] += indexed
        if operation == "GetItem":
            size = item_size((response or {}).get("Item"))
            units["dynamodb_read"] += _read_units(size, params.get("ConsistentRead", False))
        elif operation in ("Query", "Scan"):
            items = (response or {}).get("Items")
            if items is None:  # Select=COUNT: DynamoDB reads the items it counts
                size = 100 * int((response or {}).get("ScannedCount", 0))
            else:
                size = sum(item_size(item) for item in items)
            consistent = params.get("ConsistentRead", False) and "IndexName" not in params
            units["dynamodb_read"] += _read_units(size, consistent)
        elif operation == "BatchGetItem":
            for items in ((response or {}).get("Responses") or {}).values():
                units["dynamodb_read"] += sum(_read_units(item_size(i), False) for i in items)
        elif operation == "TransactGetItems":
            for entry in (response or {}).get("Responses") or []:
                units["dynamodb_read"] += 2 * _read_units(item_size(entry.get("Item")), True)
        return units

    def _index_units(self, table: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
        description = self._tables.get(table) or {}
        spent = 0
        for index in description.get("GlobalSecondaryIndexes", []):
            names = [part["AttributeName"] for part in index["KeySchema"]]
            was = old is not None and all(name in old for name in names)
            now = new is not None and all(name in new for name in names)
            if not was and not now:
                continue
            projected_old = _projected(old, index, description) if was else None
            projected_new = _projected(new, index, description) if now else None
            if was and now:
                if any(old[name] != new[name] for name in names):  # type: ignore[index]
                    spent += kb(item_size(projected_old)) + kb(item_size(projected_new))
                elif projected_old != projected_new:
                    spent += kb(max(item_size(projected_old), item_size(projected_new)))
            else:
                spent += kb(item_size(projected_old or projected_new))
        return spent


def _item_kind(table: str, key_or_item: dict[str, Any]) -> str:
    """`usage:RESV`, `jobs`, …: the table (its name's logical part) and the sort key's prefix."""
    name = table.split("-")[-1] if "-" in table else table
    sort = key_or_item.get("sk", {}).get("S", "")
    return f"{name}:{sort.split('#')[0]}" if sort else name


def _projected(item: dict[str, Any] | None, index: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    item = item or {}
    projection = index.get("Projection", {})
    kind = projection.get("ProjectionType", "ALL")
    if kind == "ALL":
        return item
    keep = {part["AttributeName"] for part in table["KeySchema"]} | {p["AttributeName"] for p in index["KeySchema"]}
    if kind == "INCLUDE":
        keep |= set(projection.get("NonKeyAttributes", []))
    return {name: value for name, value in item.items() if name in keep}


def _read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


def _chunks(size: int) -> int:
    return max(1, math.ceil(size / SQS_CHUNK))


class _CountingStream(io.TextIOBase):
    """stdout, counting the bytes each function writes (Powertools' JSON logs and EMF metrics)."""

    def __init__(self, inner: Any, meter: Meter) -> None:
        self._inner = inner
        self._meter = meter

    def write(self, text: str) -> int:
        self._meter.log(len(text.encode()))
        if '"_aws"' in text:
            with self._meter._lock:
                self._meter.emf.append(text if text.endswith("\n") else text + "\n")
        return int(self._inner.write(text))

    def flush(self) -> None:
        self._inner.flush()

    def fileno(self) -> int:
        return int(self._inner.fileno())


def emf_metrics(texts: list[str]) -> set[tuple[str, ...]]:
    """The custom metrics (namespace, name, dimension name=value pairs) named in EMF log lines: each
    distinct combination is one metric to CloudWatch, billed per month."""
    found: set[tuple[str, ...]] = set()
    for line in "".join(texts).splitlines():
        if '"_aws"' not in line:
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            for dimensions in directive.get("Dimensions", [[]]):
                for metric in directive.get("Metrics", []):
                    pairs = sorted(f"{name}={document.get(name)}" for name in dimensions)
                    found.add((directive.get("Namespace", ""), metric["Name"], *pairs))
    return found
