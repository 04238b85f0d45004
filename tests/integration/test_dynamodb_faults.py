"""DynamoDB's faults that moto never produces, aimed at one call each (stratus/localcloud/dynamo_faults.py).

Each test names the AWS behaviour it encodes. botocore's standard retries run for real: the fault is
an HTTP answer, and what botocore does with it is what it would do on AWS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stratus_core.adapters import aws
from stratus_core.keys import IssuedKey, Scope
from stratus_core.services import Services
from tests.helpers import ApiResponse, principal_of, upload
from tests.integration.conftest import Pipeline, on_table

MODEL = "smollm2-135m-instruct"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello there model"}], "max_tokens": 16}
Api = Callable[..., ApiResponse]


def async_chat(call_api: Api, caller: Any, headers: dict[str, str] | None = None) -> ApiResponse:
    return call_api(
        "POST", "/v1/chat/completions", CHAT, principal=caller, headers={"prefer": "respond-async", **(headers or {})}
    )


def start_one_line_batch(call_api: Api, caller: Any) -> dict[str, Any]:
    """A batch of one chat line, created (its line is admitted when the batch function runs)."""
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": CHAT}
    file_id = upload(call_api, caller, (json.dumps(line) + "\n").encode()).body["id"]
    created: dict[str, Any] = call_api(
        "POST",
        "/v1/batches",
        {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        principal=caller,
    ).body
    return created


def test_an_admission_that_landed_but_was_answered_500_is_admitted_once(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, aim: Any
) -> None:
    """ "When you receive a status code 500 on a write operation, the operation may have succeeded or
    failed": botocore retries the tenant item's UpdateItem, the retry fails its condition
    `attribute_not_exists(held.<job>)`, and the item it returns shows the request admitted already."""
    caller = principal_of(make_tenant("acme"))
    aimed = aim("ddb_landed_error", on_table("UpdateItem", "TenantsTable"))

    answer = async_chat(call_api, caller)

    assert (answer.status, aimed.fired) == (202, 1)
    assert services.tenants.get("acme").in_flight == 1  # reserved once, not twice
    pipeline.run()
    job = call_api("GET", f"/v1/jobs/{answer.body['id']}", principal=caller).body
    assert job["status"] == "completed"
    assert services.tenants.get("acme").in_flight == 0


def test_a_job_whose_put_landed_but_was_answered_500_is_still_queued_and_answered(
    call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, aim: Any
) -> None:
    """botocore retries the 500; the retried conditional put then fails its condition on the job's own
    item. Taken for an earlier request's job, it was never queued, and expired an hour later."""
    caller = principal_of(make_tenant("acme"))
    aimed = aim("ddb_landed_error", on_table("PutItem", "JobsTable"))

    answer = async_chat(call_api, caller)
    assert (answer.status, aimed.fired) == (202, 1)
    assert pipeline.queue_depth("RequestsQueue") == 1

    pipeline.run()
    assert call_api("GET", f"/v1/jobs/{answer.body['id']}", principal=caller).body["status"] == "completed"


def test_a_batch_whose_move_to_finalizing_landed_but_was_answered_500_still_completes(
    call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, aim: Any
) -> None:
    """The retried `in_progress -> finalizing` update fails its condition on its own write; the
    finalizer stopped there, and the batch stayed `finalizing` with every request done."""
    caller = principal_of(make_tenant("acme", scopes=[Scope.BATCH]))
    batch = start_one_line_batch(call_api, caller)

    def to_finalizing(operation: str, body: dict[str, Any]) -> bool:
        values = json.dumps(body.get("ExpressionAttributeValues", {}))
        return on_table("UpdateItem", "BatchesTable")(operation, body) and '"finalizing"' in values

    aimed = aim("ddb_landed_error", to_finalizing)
    pipeline.run()

    finished = call_api("GET", f"/v1/batches/{batch['id']}", principal=caller).body
    assert (finished["status"], finished["request_counts"]["completed"], aimed.fired) == ("completed", 1, 1)
    assert finished["output_file_id"]


def test_a_transaction_conflict_is_retried_and_the_batch_line_admitted(
    call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, aim: Any
) -> None:
    """TransactionCanceledException with `TransactionConflict`: "AWS SDKs do not retry the request";
    the transaction helper does, since nothing was written. (A batch line's admission is the one
    transaction on the tenant item; an interactive request's is a single conditional write.)"""
    caller = principal_of(make_tenant("acme", scopes=[Scope.BATCH]))
    batch = start_one_line_batch(call_api, caller)
    aimed = aim("ddb_conflict", on_table("TransactWriteItems", "TenantsTable"), times=2)

    pipeline.run()

    finished = call_api("GET", f"/v1/batches/{batch['id']}", principal=caller).body
    assert (finished["status"], finished["request_counts"]["completed"], aimed.fired) == ("completed", 1, 2)


def test_a_tenant_item_throttled_past_botocores_retries_is_a_429_and_the_retry_admits_once(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], aim: Any
) -> None:
    """ProvisionedThroughputExceededException on the tenant item's admission write: "OK to retry?
    Yes"; botocore makes 3 attempts. When all are throttled, the tenant's item is over what DynamoDB
    gives one item (`docs/dynamodb-ceilings.md`): the client is told to slow down, with a 429 in
    OpenAI's shape and Retry-After, as a rate limit does; nothing was admitted."""
    caller = principal_of(make_tenant("acme"))
    aimed = aim("ddb_throttle", on_table("UpdateItem", "TenantsTable"), times=aws.MAX_ATTEMPTS)

    busy = async_chat(call_api, caller, {"idempotency-key": "k-1"})
    assert services.tenants.get("acme").in_flight == 0
    again = async_chat(call_api, caller, {"idempotency-key": "k-1"})

    assert aimed.fired == aws.MAX_ATTEMPTS, busy
    assert busy.status == 429, busy
    assert (busy.body["error"]["type"], busy.body["error"]["code"]) == ("requests", "rate_limit_exceeded")
    assert busy.headers["Retry-After"] == "1" and busy.headers["x-should-retry"] == "true", busy.headers
    assert busy.headers["x-stratus-limit"] == "tenant_write_ceiling"
    assert again.status == 202, (again, aimed.fired)
    assert services.tenants.get("acme").in_flight == 1


def test_a_job_store_throttled_past_botocores_retries_is_a_retryable_503(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], aim: Any
) -> None:
    """Any other write still throttled after botocore's retries is the service being busy: a 503
    the OpenAI SDKs retry (`x-should-retry: true`), with the admission given back."""
    caller = principal_of(make_tenant("acme"))
    aim("ddb_throttle", on_table("PutItem", "JobsTable"), times=aws.MAX_ATTEMPTS)

    busy = async_chat(call_api, caller)

    assert busy.status == 503, busy
    assert busy.body["error"]["code"] == "unavailable"
    assert busy.headers["Retry-After"] == "1" and busy.headers["x-should-retry"] == "true", busy.headers
    assert services.tenants.get("acme").in_flight == 0


def test_a_retry_after_an_attempt_whose_job_could_not_be_stored_is_admitted(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, aim: Any
) -> None:
    """The first attempt's admission (with its Idempotency-Key claim) landed, then the job's put stayed
    throttled through botocore's attempts: intake gave the reservation back and answered 503. The
    claim still named that dead attempt, so every retry with the key heard "being accepted" until the
    claim expired; now the retry takes the dead attempt's claim."""
    caller = principal_of(make_tenant("acme"))
    aimed = aim("ddb_throttle", on_table("PutItem", "JobsTable"), times=aws.MAX_ATTEMPTS)

    first = async_chat(call_api, caller, {"idempotency-key": "k-2"})
    assert (first.status, aimed.fired) == (503, aws.MAX_ATTEMPTS)
    assert services.tenants.get("acme").in_flight == 0  # given back

    retry = async_chat(call_api, caller, {"idempotency-key": "k-2"})
    again = async_chat(call_api, caller, {"idempotency-key": "k-2"})

    assert retry.status == 202, retry.body
    assert (again.status, again.body["id"]) == (202, retry.body["id"])  # attached to the retry's job
    assert services.tenants.get("acme").in_flight == 1
    pipeline.run()
    assert call_api("GET", f"/v1/jobs/{retry.body['id']}", principal=caller).body["status"] == "completed"


def test_a_held_line_whose_release_stays_throttled_does_not_stop_the_others_and_runs_once(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, aim: Any
) -> None:
    """The scheduler's `let_go` (UpdateItem `... REMOVE waiting`) of one held line stays throttled through
    botocore's attempts. That error used to end the scheduler's run: the lines after it stayed held
    though their messages were sent, and its state was not saved. Now the others are let go, the
    state is saved, and the invocation fails (the functions' error alarm); the next run sends the
    line again, and the dispatcher runs it once."""
    caller = principal_of(make_tenant("acme", scopes=[Scope.BATCH]))
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": CHAT}
    batches = []
    for i in range(3):  # three batches of one line: three held jobs (a batch's lines are one chunk)
        file_id = upload(call_api, caller, (json.dumps({**line, "custom_id": f"l{i}"}) + "\n").encode()).body["id"]
        batches.append(
            call_api(
                "POST",
                "/v1/batches",
                {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
                principal=caller,
            ).body
        )
    pipeline.batches.drain()  # the batch function holds the 3 lines for the scheduler
    assert services.job_store.held_summary()[0] == 3

    def letting_go(operation: str, body: dict[str, Any]) -> bool:
        return on_table("UpdateItem", "JobsTable")(operation, body) and body["UpdateExpression"].endswith(
            "REMOVE waiting"
        )

    aimed = aim("ddb_throttle", letting_go, times=aws.MAX_ATTEMPTS)  # the first line's, all its attempts

    assert pipeline.schedule() is None  # the invocation failed ...
    assert (aimed.fired, pipeline.failed_schedules) == (aws.MAX_ATTEMPTS, 1)
    assert services.job_store.held_summary()[0] == 1  # ... after the two others were let go
    assert services.scheduler_memory.load().version == 1  # ... and its state saved
    assert pipeline.queue_depth("BatchRequestsQueue") == 3  # every line's message went

    assert pipeline.schedule() == 1  # the next run sends the held line again and lets it go
    assert services.job_store.held_summary()[0] == 0
    assert pipeline.queue_depth("BatchRequestsQueue") == 4
    pipeline.run()

    packed = [
        request.job_id
        for call in pipeline.endpoint.calls
        for request in (services.objects.read_pack(call.input_location) or pytest.fail("no pack")).requests
    ]
    assert len(packed) == len(set(packed)) == 3  # each line went to the endpoint once
    for batch in batches:
        finished = call_api("GET", f"/v1/batches/{batch['id']}", principal=caller).body
        assert (finished["status"], finished["request_counts"]["completed"]) == ("completed", 1)


def test_a_tenant_item_at_dynamodbs_400_kb_refuses_admissions_with_a_429(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """About 8,000 requests held at once fill the tenant item's 400 KB (`docs/dynamodb-ceilings.md`).
    AWS then refuses the admission's write with a ValidationException; moto does not enforce the
    limit on UpdateItem, so the answer AWS gives is what this test makes the write get."""
    caller = principal_of(make_tenant("acme", max_in_flight=100_000))
    client = aws.dynamodb()
    real = client.update_item

    def update_item(**params: Any) -> Any:
        if str(params.get("TableName", "")).endswith("TenantsTable"):
            error = {
                "Code": "ValidationException",
                "Message": "Item size to update has exceeded the maximum allowed size",
            }
            raise ClientError({"Error": error}, "UpdateItem")
        return real(**params)

    monkeypatch.setattr(client, "update_item", update_item)
    full = async_chat(call_api, caller)

    assert full.status == 429, full
    assert full.headers["x-stratus-limit"] == "tenant_write_ceiling"
    assert services.tenants.get("acme").in_flight == 0
