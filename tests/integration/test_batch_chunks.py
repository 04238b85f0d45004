"""A batch's lines in chunks (`stratus_core.batches.chunks`) on moto: one job, one reservation and
one pack per chunk; the month admits a chunk's lines one by one; a start that failed halfway is
finished by its redelivery; a batch started before chunks ends one job per line."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3

from stratus_core.batches.chunks import lines_of, split_line_request_id
from stratus_core.keys import IssuedKey, Principal, Scope
from stratus_core.services import Services
from tests.helpers import principal_of

from .conftest import Pipeline, on_table
from .test_batches import Api, chat_line, start_batch


def batcher_with(make_tenant: Callable[..., IssuedKey], **limits: int) -> Principal:
    return principal_of(make_tenant("acme", scopes=[Scope.BATCH, Scope.USAGE], **limits))


def batch_items(services: Services, table: str, prefix: str) -> list[dict[str, Any]]:
    key = "job_id" if table == services.settings.jobs_table else "sk"
    partition = {"tenant_id": "acme"} if key == "job_id" else {"pk": "TENANT#acme"}
    ((name, value),) = partition.items()
    response = boto3.client("dynamodb").query(
        TableName=table,
        KeyConditionExpression=f"{name} = :p AND begins_with({key}, :prefix)",
        ExpressionAttributeValues={":p": {"S": value}, ":prefix": {"S": prefix}},
        ConsistentRead=True,
    )
    return response["Items"]


def files(call_api: Api, caller: Principal, batch: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def read(file_id: str | None) -> list[dict[str, Any]]:
        if file_id is None:
            return []
        content = call_api("GET", f"/v1/files/{file_id}/content", principal=caller).raw.decode()
        return [json.loads(line) for line in content.splitlines()]

    return read(batch["output_file_id"]), read(batch["error_file_id"])


def test_seventy_lines_are_three_jobs_three_reservations_and_three_packs(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    caller = batcher_with(make_tenant)
    batch = start_batch(call_api, caller, [chat_line(i) for i in range(70)])

    pipeline.run()

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=caller).body
    assert (done["status"], done["request_counts"]) == ("completed", {"total": 70, "completed": 70, "failed": 0})
    jobs = batch_items(services, services.settings.jobs_table, f"{batch['id']}-")
    assert sorted(lines_of(job["job_id"]["S"]) for job in jobs) == [6, 32, 32]  # MaxPackSize 32
    assert len(batch_items(services, services.settings.usage_table, f"RESV#{batch['id']}-")) == 3
    packs = [services.objects.read_pack(call.input_location) for call in pipeline.endpoint.calls]
    assert sorted(len(pack.requests) for pack in packs if pack is not None) == [6, 32, 32]
    for pack in packs:  # each chunk is a pack of its own
        assert pack is not None and len({split_line_request_id(r.job_id) is not None for r in pack.requests}) == 1
    output, errors = files(call_api, caller, done)
    assert errors == [] and [line["custom_id"] for line in output] == [f"req-{i}" for i in range(70)]
    assert [line["response"]["request_id"] for line in output] == [f"{batch['id']}-{i:06d}" for i in range(1, 71)]
    today = datetime.now(UTC).date()
    billed = services.usage.report("acme", today, today).totals
    assert (billed.requests, billed.total_tokens) == (70, done["usage"]["total_tokens"])
    tenant = boto3.client("dynamodb").get_item(
        TableName=services.settings.tenants_table, Key={"tenant_id": {"S": "acme"}}, ConsistentRead=True
    )["Item"]
    assert int(tenant["c_month_tokens"]["N"]) == billed.total_tokens  # every bound settled to what was used


def test_the_month_admits_a_chunks_lines_one_by_one_in_order(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    # bounds: 128 template + 17 bytes + 8 per message + max_tokens: 161 for the small lines, 653 for
    # req-1; the month's 700 admit req-0 (161), not req-1 (653 > 539 left), then req-2, 3 and 4
    caller = batcher_with(make_tenant, tokens_per_month=700)
    lines = [chat_line(i, max_tokens=500 if i == 1 else 8) for i in range(5)]
    batch = start_batch(call_api, caller, lines)

    pipeline.run()

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=caller).body
    assert (done["status"], done["request_counts"]) == ("completed", {"total": 5, "completed": 4, "failed": 1})
    output, errors = files(call_api, caller, done)
    assert [line["custom_id"] for line in output] == ["req-0", "req-2", "req-3", "req-4"]
    ((refused),) = errors
    assert (refused["custom_id"], refused["error"]["code"], refused["response"]["status_code"]) == (
        "req-1",
        "insufficient_quota",
        429,
    )
    assert refused["error"]["message"].startswith("tokens_per_month limit reached: 653 more tokens")
    (reservation,) = batch_items(services, services.settings.usage_table, f"RESV#{batch['id']}-")
    assert [int(n["N"]) for n in reservation["lines"]["L"]] == [1, 3, 4, 5]


def test_a_start_whose_chunk_job_could_not_be_written_is_finished_by_its_redelivery(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, aim: Any
) -> None:
    """The chunk's reservation landed, then its job's put stayed throttled through botocore's
    attempts. The reservation is kept; the redelivered start finds it, admits nothing twice and
    writes the job; every line is billed once."""
    from stratus_core.adapters import aws

    caller = batcher_with(make_tenant)
    batch = start_batch(call_api, caller, [chat_line(i) for i in range(3)])
    aimed = aim("ddb_throttle", on_table("PutItem", "JobsTable"), times=aws.MAX_ATTEMPTS)

    assert pipeline.batches.poll_once(retry_failures_now=True) == (1, 1)  # the start failed, back to the queue
    assert aimed.fired == aws.MAX_ATTEMPTS
    assert batch_items(services, services.settings.jobs_table, f"{batch['id']}-") == []
    pipeline.run()  # the start again, then the chunk

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=caller).body
    assert (done["status"], done["request_counts"]) == ("completed", {"total": 3, "completed": 3, "failed": 0})
    (reservation,) = batch_items(services, services.settings.usage_table, f"RESV#{batch['id']}-")
    assert reservation["state"]["S"] == "settled"
    today = datetime.now(UTC).date()
    billed = services.usage.report("acme", today, today).totals
    assert (billed.requests, billed.total_tokens) == (3, done["usage"]["total_tokens"])


def test_a_batch_started_before_chunks_finishes_one_job_per_line(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    """A deploy in the middle of a batch: the previous version moved it to `in_progress` (without
    `chunk_lines`) and its start is delivered again to this one, which goes on line by line."""
    caller = batcher_with(make_tenant)
    batch = start_batch(call_api, caller, [chat_line(i) for i in range(3)])
    boto3.client("dynamodb").update_item(
        TableName=services.settings.batches_table,
        Key={"tenant_id": {"S": "acme"}, "batch_id": {"S": batch["id"]}},
        UpdateExpression="SET #status = :in_progress, request_counts = :counts, in_progress_at = :at",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={
            ":in_progress": {"S": "in_progress"},
            ":counts": {"M": {"total": {"N": "3"}, "completed": {"N": "0"}, "failed": {"N": "0"}}},
            ":at": {"N": str(int(datetime.now(UTC).timestamp()))},
        },
    )

    pipeline.run()

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=caller).body
    assert (done["status"], done["request_counts"]) == ("completed", {"total": 3, "completed": 3, "failed": 0})
    jobs = batch_items(services, services.settings.jobs_table, f"{batch['id']}-")
    assert sorted(job["job_id"]["S"] for job in jobs) == [f"{batch['id']}-{i:06d}" for i in range(1, 4)]
    output, _ = files(call_api, caller, done)
    assert [line["custom_id"] for line in output] == ["req-0", "req-1", "req-2"]
    today = datetime.now(UTC).date()
    assert services.usage.report("acme", today, today).totals.requests == 3
