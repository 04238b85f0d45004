"""OpenAI's Files and Batches APIs on moto, through the real handlers and the fake endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from stratus_core.adapters import aws
from stratus_core.keys import IssuedKey, Principal, Scope
from stratus_core.services import Services
from tests.helpers import ApiResponse, FakeContext, principal_of, upload

from .conftest import Pipeline, store_bodies_in_s3

Api = Callable[..., ApiResponse]
MODEL = "smollm2-135m-instruct"


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def chat_line(i: int, content: str | None = None, max_tokens: int = 8) -> dict[str, Any]:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": MODEL,
            "messages": [{"role": "user", "content": content or f"question number {i}"}],
            "max_tokens": max_tokens,
        },
    }


def start_batch(call_api: Api, caller: Principal, lines: list[dict[str, Any]]) -> dict[str, Any]:
    file = upload(call_api, caller, jsonl(lines))
    assert file.status == 200, file.body
    created = call_api(
        "POST",
        "/v1/batches",
        {
            "input_file_id": file.body["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"team": "search"},
        },
        principal=caller,
    )
    assert created.status == 200, created.body
    return created.body  # type: ignore[no-any-return]


@pytest.fixture
def batcher(make_tenant: Callable[..., IssuedKey]) -> Principal:
    return principal_of(make_tenant("acme", scopes=[Scope.BATCH, Scope.INFERENCE, Scope.USAGE]))


def test_a_batch_of_100_lines_completes_with_exact_counts_and_usage(
    services: Services, call_api: Api, batcher: Principal, pipeline: Pipeline
) -> None:
    lines = [chat_line(i) for i in range(100)]
    batch = start_batch(call_api, batcher, lines)
    assert batch["status"] == "validating"
    assert batch["object"] == "batch"

    pipeline.run()

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 100, "completed": 100, "failed": 0}
    assert done["error_file_id"] is None
    assert done["metadata"] == {"team": "search"}
    finished = call_api("POST", f"/v1/batches/{batch['id']}/cancel", principal=batcher)
    assert (finished.status, finished.body["error"]["code"]) == (409, "conflict")
    output = call_api("GET", f"/v1/files/{done['output_file_id']}/content", principal=batcher)
    assert output.status == 200
    results = [json.loads(line) for line in output.raw.decode().splitlines()]
    assert sorted(r["custom_id"] for r in results) == sorted(f"req-{i}" for i in range(100))
    by_id = {r["custom_id"]: r for r in results}
    first = by_id["req-7"]
    assert first["response"]["status_code"] == 200
    assert first["response"]["body"]["choices"][0]["message"]["content"] == "echo: question number 7"
    # fake counts: 3 words + 4 per message = 7 prompt tokens; 4 completion words
    assert first["response"]["body"]["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    assert done["usage"] == {"input_tokens": 700, "output_tokens": 400, "total_tokens": 1100}
    today = datetime.now(UTC).date()
    billed = services.usage.report("acme", today, today).totals
    assert (billed.requests, billed.total_tokens) == (100, 1100)
    assert pipeline.queue_depth("BatchRequestsQueue") == 0


def test_invalid_lines_fail_validation_with_every_error_listed(
    services: Services, call_api: Api, batcher: Principal, pipeline: Pipeline
) -> None:
    lines: list[Any] = [chat_line(0), chat_line(1), {**chat_line(2), "url": "/v1/completions"}, chat_line(1)]
    lines[1]["body"]["temperature"] = 9
    batch = start_batch(call_api, batcher, lines)

    pipeline.run()

    failed = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert failed["status"] == "failed"
    errors = failed["errors"]["data"]
    assert [(e["line"], e["param"]) for e in errors] == [(2, "temperature"), (3, "url")]
    assert failed["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert services.tenants.get("acme").in_flight == 0


def test_requests_that_fail_go_to_the_error_file(call_api: Api, batcher: Principal, pipeline: Pipeline) -> None:
    lines = [chat_line(0), chat_line(1, content="FAIL_ME now"), chat_line(2)]
    batch = start_batch(call_api, batcher, lines)

    pipeline.run()

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    errors = call_api("GET", f"/v1/files/{done['error_file_id']}/content", principal=batcher).raw.decode()
    (line,) = [json.loads(text) for text in errors.splitlines()]
    assert line["custom_id"] == "req-1"
    assert line["error"] == {"code": "invalid_request", "message": "the model refused this input"}
    assert line["response"]["status_code"] == 400


def test_duplicate_notifications_do_not_double_count_a_batch(
    call_api: Api, batcher: Principal, pipeline: Pipeline
) -> None:
    batch = start_batch(call_api, batcher, [chat_line(i) for i in range(5)])
    pipeline.batches.drain()
    pipeline.schedule()
    pipeline.batch_requests.drain()
    pipeline.endpoint.notify = False
    notifications = pipeline.endpoint.run_pending()
    sns = boto3.client("sns")
    for notification in notifications * 3:
        sns.publish(TopicArn=pipeline.created.refs["InferenceSuccessTopic"], Message=json.dumps(notification))
    pipeline.run()

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert done["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert done["usage"]["total_tokens"] == 55
    assert (
        len([f for f in call_api("GET", "/v1/files", principal=batcher).body["data"] if f["purpose"] == "batch_output"])
        == 1
    )


def test_cancel_stops_the_rest_and_releases_its_tokens(
    services: Services, call_api: Api, batcher: Principal, pipeline: Pipeline
) -> None:
    batch = start_batch(call_api, batcher, [chat_line(i) for i in range(6)])
    pipeline.batches.drain()  # expanded: 6 jobs queued on the batch lane, nothing dispatched yet

    cancelling = call_api("POST", f"/v1/batches/{batch['id']}/cancel", principal=batcher)
    assert cancelling.status == 200
    assert cancelling.body["status"] == "cancelling"
    pipeline.run()

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert done["status"] == "cancelled"
    assert done["request_counts"] == {"total": 6, "completed": 0, "failed": 6}
    assert pipeline.endpoint.calls == []  # the dispatcher skipped every cancelled job
    tenant_item = aws.dynamodb().get_item(TableName=services.settings.tenants_table, Key={"tenant_id": {"S": "acme"}})[
        "Item"
    ]
    assert tenant_item["c_month"]["S"] == f"{datetime.now(UTC):%Y-%m}"
    assert int(tenant_item["c_month_tokens"]["N"]) == 0  # the month's counter got every token back
    again = call_api("POST", f"/v1/batches/{batch['id']}/cancel", principal=batcher)
    assert (again.status, again.body["status"]) == (200, "cancelled")  # cancelling is idempotent


def test_a_batch_past_its_window_expires(
    call_api: Api, batcher: Principal, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper import app as sweeper_app

    batch = start_batch(call_api, batcher, [chat_line(i) for i in range(3)])
    pipeline.batches.drain()
    later = datetime.now(UTC) + timedelta(hours=25)
    monkeypatch.setattr(sweeper_app, "services", Services(clock=lambda: later))

    assert sweeper_app.lambda_handler({}, FakeContext())["resolved"] == 1  # the batch's one chunk of 3 lines
    pipeline.run()

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert done["status"] == "expired"
    assert done["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
    errors = call_api("GET", f"/v1/files/{done['error_file_id']}/content", principal=batcher).raw.decode()
    assert {json.loads(line)["error"]["code"] for line in errors.splitlines()} == {"expired"}


def test_interactive_request_is_dispatched_while_a_large_batch_is_pending(
    call_api: Api, batcher: Principal, pipeline: Pipeline
) -> None:
    start_batch(call_api, batcher, [chat_line(i) for i in range(300)])
    pipeline.batches.drain()
    assert pipeline.queue_depth("BatchRequestsQueue") == 0  # held for the scheduler
    # one instance in service at InstanceRequestsPerSecond 3.0: its 3 deferrable slots of 4 finish
    # 3.0 × 3/4 × 120 s = 270 requests within the release horizon: 8 chunks of 32 lines (a ninth
    # would pass 270); the other 44 lines stay held
    assert pipeline.schedule() == 256
    assert pipeline.queue_depth("BatchRequestsQueue") == 8

    chat = {"model": MODEL, "messages": [{"role": "user", "content": "urgent"}], "max_tokens": 4}
    job_id = call_api(
        "POST", "/v1/chat/completions", chat, principal=batcher, headers={"prefer": "respond-async"}
    ).body["id"]
    pipeline.requests.poll_once()  # the interactive lane's next poll, whatever the batch backlog

    assert call_api("GET", f"/v1/jobs/{job_id}", principal=batcher).body["status"] == "dispatched"
    (_invocation,) = pipeline.endpoint.calls
    assert pipeline.queue_depth("BatchRequestsQueue") == 8


def test_trusted_producer_submits_through_the_batch_queue(
    call_api: Api, batcher: Principal, pipeline: Pipeline
) -> None:
    submission = {
        "version": 1,
        "action": "submit",
        "submission_id": "nightly-2026-11-28",
        "tenant_id": "acme",
        "endpoint": "/v1/chat/completions",
        "requests": [{"custom_id": f"r{i}", "body": chat_line(i)["body"]} for i in range(4)],
    }
    sqs = boto3.client("sqs")
    for _ in range(2):  # delivered twice: one batch
        sqs.send_message(QueueUrl=pipeline.created.refs["BatchQueue"], MessageBody=json.dumps(submission))
    pipeline.run()

    batches = call_api("GET", "/v1/batches", principal=batcher).body["data"]
    assert len(batches) == 1
    assert batches[0]["status"] == "completed"
    assert batches[0]["request_counts"] == {"total": 4, "completed": 4, "failed": 0}


def test_submission_for_an_unknown_tenant_goes_to_the_dead_letter_queue(pipeline: Pipeline) -> None:
    submission = {
        "version": 1,
        "action": "submit",
        "submission_id": "x",
        "tenant_id": "ghost",
        "endpoint": "/v1/completions",
        "requests": [{"custom_id": "a", "body": {"model": MODEL, "prompt": "hi"}}],
    }
    boto3.client("sqs").send_message(QueueUrl=pipeline.created.refs["BatchQueue"], MessageBody=json.dumps(submission))

    pipeline.batches.drain(retry_failures_now=True)

    assert pipeline.queue_depth("BatchDeadLetterQueue") == 1


def test_files_and_batches_of_one_tenant_are_404_for_another(
    call_api: Api, batcher: Principal, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    other = principal_of(make_tenant("globex", scopes=[Scope.BATCH]))
    batch = start_batch(call_api, batcher, [chat_line(0)])
    file_id = batch["input_file_id"]

    for method, path in [
        ("GET", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{file_id}/content"),
        ("DELETE", f"/v1/files/{file_id}"),
        ("GET", f"/v1/batches/{batch['id']}"),
        ("POST", f"/v1/batches/{batch['id']}/cancel"),
    ]:
        response = call_api(method, path, principal=other)
        assert response.status == 404, (method, path)
    assert call_api("GET", "/v1/files", principal=other).body["data"] == []
    assert call_api("GET", "/v1/batches", principal=other).body["data"] == []
    reuse = call_api(
        "POST",
        "/v1/batches",
        {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        principal=other,
    )
    assert reuse.status == 404


def test_file_upload_errors(call_api: Api, batcher: Principal) -> None:
    wrong_type = call_api(
        "POST", "/v1/files", principal=batcher, raw_body="{}", headers={"content-type": "application/json"}
    )
    assert wrong_type.status == 400
    assert wrong_type.body["error"]["param"] == "file"


def test_large_input_through_a_presigned_upload(call_api: Api, batcher: Principal, pipeline: Pipeline) -> None:
    content = jsonl([chat_line(i) for i in range(3)])
    presigned = call_api(
        "POST",
        "/v1/files/uploads",
        {"filename": "big.jsonl", "purpose": "batch", "bytes": len(content)},
        principal=batcher,
    )
    assert presigned.status == 201
    assert presigned.body["file"]["status"] == "uploaded"
    assert presigned.body["upload_url"].startswith("https://")
    file_id = presigned.body["file"]["id"]
    early = call_api(
        "POST",
        "/v1/batches",
        {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        principal=batcher,
    )
    assert early.status == 400

    import requests

    assert (
        requests.put(
            presigned.body["upload_url"], data=content, headers=presigned.body["headers"], timeout=5
        ).status_code
        == 200
    )
    assert call_api("GET", f"/v1/files/{file_id}", principal=batcher).body["status"] == "processed"
    batch = call_api(
        "POST",
        "/v1/batches",
        {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        principal=batcher,
    ).body
    pipeline.run()
    assert call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body["status"] == "completed"


def test_the_owner_deletes_a_file_and_its_content_goes_with_it(
    services: Services, call_api: Api, batcher: Principal
) -> None:
    file_id = upload(call_api, batcher, jsonl([chat_line(0)])).body["id"]
    s3 = boto3.client("s3")
    bucket = services.settings.data_bucket
    assert s3.list_objects_v2(Bucket=bucket, Prefix="files/").get("KeyCount") == 1

    deleted = call_api("DELETE", f"/v1/files/{file_id}", principal=batcher)

    assert deleted.status == 200 and deleted.body == {"id": file_id, "object": "file", "deleted": True}
    assert call_api("GET", f"/v1/files/{file_id}", principal=batcher).status == 404
    assert call_api("GET", f"/v1/files/{file_id}/content", principal=batcher).status == 404
    assert s3.list_objects_v2(Bucket=bucket, Prefix="files/").get("KeyCount") == 0
    assert call_api("DELETE", f"/v1/files/{file_id}", principal=batcher).status == 404


def test_a_throttled_batch_lane_backs_off_and_still_completes(
    call_api: Api, batcher: Principal, pipeline: Pipeline
) -> None:
    batch = start_batch(call_api, batcher, [chat_line(i) for i in range(3)])
    pipeline.batches.drain()
    pipeline.schedule()
    pipeline.endpoint.throttle_next = 1

    handled, failed = pipeline.batch_requests.poll_once(retry_failures_now=True)
    assert (handled, failed) == (1, 1)  # the chunk's pack went back to the queue, visibility extended
    pipeline.run()

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert done["status"] == "completed" and done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}


def test_batch_requests_whose_bodies_are_gone_fail_and_the_batch_still_finishes(
    services: Services, call_api: Api, batcher: Principal, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_bodies_in_s3(monkeypatch)
    batch = start_batch(call_api, batcher, [chat_line(i) for i in range(2)])
    pipeline.batches.drain()
    s3 = boto3.client("s3")
    bucket = services.settings.data_bucket
    for body in s3.list_objects_v2(Bucket=bucket, Prefix="requests/")["Contents"]:
        s3.delete_object(Bucket=bucket, Key=body["Key"])

    pipeline.run()  # the last failure, found by the dispatcher, must finalize the batch

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert done["status"] == "completed" and done["request_counts"] == {"total": 2, "completed": 0, "failed": 2}
    errors = call_api("GET", f"/v1/files/{done['error_file_id']}/content", principal=batcher).raw.decode()
    assert [json.loads(line)["error"]["code"] for line in errors.splitlines()] == ["request_missing"] * 2
    assert services.tenants.get("acme").in_flight == 0


def test_trusted_producer_submits_a_jsonl_object_from_the_submissions_prefix(
    services: Services, call_api: Api, batcher: Principal, pipeline: Pipeline
) -> None:
    bucket = services.settings.data_bucket
    lines = [
        {"custom_id": f"s{i}", "method": "POST", "url": "/v1/chat/completions", "body": chat_line(i)["body"]}
        for i in range(2)
    ]
    boto3.client("s3").put_object(Bucket=bucket, Key="submissions/nightly/in.jsonl", Body=jsonl(lines))
    submission = {
        "submission_id": "nightly-s3",
        "tenant_id": "acme",
        "endpoint": "/v1/chat/completions",
        "input_s3_uri": f"s3://{bucket}/submissions/nightly/in.jsonl",
    }
    boto3.client("sqs").send_message(QueueUrl=pipeline.created.refs["BatchQueue"], MessageBody=json.dumps(submission))
    pipeline.run()

    (batch,) = call_api("GET", "/v1/batches", principal=batcher).body["data"]
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 2


def test_a_batch_request_that_dead_letters_fails_into_the_batch_and_the_batch_finishes(
    services: Services, call_api: Api, batcher: Principal, pipeline: Pipeline
) -> None:
    batch = start_batch(call_api, batcher, [chat_line(0)])
    pipeline.batches.drain()
    pipeline.schedule()
    pipeline.endpoint.throttle_next = 1_000

    pipeline.batch_requests.drain(retry_failures_now=True)  # maxReceiveCount deliveries, then the DLQ
    assert pipeline.queue_depth("BatchRequestsDeadLetterQueue") == 1
    assert pipeline.request_failures.drain() == 1  # its scheduled run
    pipeline.batches.drain()  # the finalize message the last failure sent

    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert done["status"] == "completed" and done["request_counts"] == {"total": 1, "completed": 0, "failed": 1}
    assert services.tenants.get("acme").in_flight == 0


def test_lost_notifications_of_a_batch_are_found_within_minutes_not_at_its_24h_deadline(
    services: Services, call_api: Api, batcher: Principal, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper import app as sweeper_app

    started = datetime.now(UTC)
    batch = start_batch(call_api, batcher, [chat_line(i) for i in range(5)])
    pipeline.endpoint.notify = False  # SageMaker writes the outputs; every notification is lost
    pipeline.run()
    assert call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body["status"] == "in_progress"

    soon = datetime.now(UTC) + timedelta(seconds=services.settings.result_check_seconds + 1)
    # a sweep that runs on the next day (the test started in the last seconds of one) also moves
    # the day's usage to its row: the same usage, counted once either way
    next_day = int(soon.date() > started.date())
    monkeypatch.setattr(sweeper_app, "services", Services(clock=lambda: soon))
    swept = sweeper_app.lambda_handler({}, FakeContext())
    pipeline.batches.drain()

    assert swept == {
        "recovered": 1,  # the batch's one chunk of 5 lines
        "overdue": 0,
        "resolved": 0,
        "orphans_released": 0,
        "errors": 0,
        "usage_rows_moved": next_day,
    }
    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=batcher).body
    assert (done["status"], done["request_counts"]) == ("completed", {"total": 5, "completed": 5, "failed": 0})
    billed = services.usage.report("acme", started.date(), soon.date()).totals
    assert billed.total_tokens == done["usage"]["total_tokens"] == 55
