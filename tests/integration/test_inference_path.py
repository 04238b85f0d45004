"""One request end to end on moto: API → requests queue → dispatcher → (fake) endpoint → SNS →
results → job and usage. The endpoint is the only fake; every handler is the real one."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import boto3
import pytest

from stratus_core.keys import IssuedKey, Scope
from stratus_core.services import Services
from tests.helpers import ApiResponse, FakeContext, as_previous_layout, principal_of

from .conftest import Pipeline, store_bodies_in_s3, stored_bodies

Api = Callable[..., ApiResponse]
MODEL = "smollm2-135m-instruct"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello there model"}], "max_tokens": 16}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


def no_wait(call_api: Api, path: str, body: dict[str, Any], caller: Any) -> ApiResponse:
    return call_api("POST", path, body, principal=caller, headers={"prefer": "respond-async"})


def usage_totals(tenant_id: str) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return Services().usage.report(tenant_id, today, today).totals.model_dump(mode="json")


def test_one_chat_request_end_to_end(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, body_storage: str
) -> None:
    caller = principal_of(make_tenant("acme", scopes=[Scope.INFERENCE, Scope.USAGE]))

    accepted = no_wait(call_api, "/v1/chat/completions", CHAT, caller)
    assert len(stored_bodies(pipeline.created)) == (1 if body_storage == "s3" else 0)

    assert accepted.status == 202
    job_id = accepted.body["id"]
    assert accepted.headers["Location"] == f"/v1/jobs/{job_id}"
    assert accepted.headers["x-stratus-job-id"] == job_id
    assert accepted.body["status"] == "queued"

    pipeline.run()

    job = call_api("GET", f"/v1/jobs/{job_id}", principal=caller)
    assert job.status == 200
    assert job.body["status"] == "completed"
    completion = job.body["result"]
    assert completion["object"] == "chat.completion"
    assert completion["id"] == f"chatcmpl-{job_id}"
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hello there model", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    # The fake counts 3 words + 4 per message of prompt, and 4 completion words.
    assert completion["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    assert job.body["usage"] == completion["usage"]
    assert usage_totals("acme")["total_tokens"] == 11
    assert services.tenants.get("acme").in_flight == 0
    # The endpoint got one pack, by S3 location, named by the pack id.
    (invocation,) = pipeline.endpoint.calls
    assert invocation.params["EndpointName"] == "stratus-llm"
    assert invocation.params["InputLocation"].startswith("s3://test-databucket/packs/pack_")


def test_text_completion_end_to_end(call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline) -> None:
    caller = principal_of(make_tenant("acme"))
    body = {"model": MODEL, "prompt": "one two three four five", "max_tokens": 3}

    job_id = no_wait(call_api, "/v1/completions", body, caller).body["id"]
    pipeline.run()

    result = call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body["result"]
    assert result["object"] == "text_completion"
    assert result["choices"][0]["text"] == "echo: one two"
    assert result["choices"][0]["finish_reason"] == "length"
    assert result["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_waiting_client_gets_the_openai_completion(
    call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, linearizable_moto: None
) -> None:
    caller = principal_of(make_tenant("acme"))
    stop = threading.Event()

    def cloud_worker() -> None:
        while not stop.is_set():
            pipeline.run()
            stop.wait(0.05)

    worker = threading.Thread(target=cloud_worker)
    worker.start()
    try:
        answered = call_api("POST", "/v1/chat/completions", CHAT, principal=caller, headers={"prefer": "wait=10"})
    finally:
        stop.set()
        worker.join()

    assert answered.status == 200
    assert answered.body["object"] == "chat.completion"
    assert answered.body["usage"]["total_tokens"] == 11
    assert answered.headers["x-stratus-job-id"] == answered.body["id"].removeprefix("chatcmpl-")


def test_every_notification_twice_and_reordered_bills_once(
    call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    caller = principal_of(make_tenant("acme"))
    jobs = [no_wait(call_api, "/v1/chat/completions", {**CHAT, "max_tokens": n}, caller).body["id"] for n in (1, 2, 3)]
    pipeline.requests.drain()
    pipeline.endpoint.notify = False
    notifications = pipeline.endpoint.run_pending()
    assert len(notifications) == 1  # three requests, one pack

    # WHEN SNS delivers the notification three times, with a stale copy after the first
    sns = boto3.client("sns")
    topic = pipeline.created.refs["InferenceSuccessTopic"]
    for _ in range(3):
        sns.publish(TopicArn=topic, Message=json.dumps(notifications[0]))
    pipeline.results.drain()
    first = usage_totals("acme")
    sns.publish(TopicArn=topic, Message=json.dumps(notifications[0]))
    pipeline.results.drain()

    # THEN each job was billed once: 7 prompt tokens each, 1 + 2 + 3 completion tokens
    assert usage_totals("acme") == first
    assert first["requests"] == 3
    assert first["total_tokens"] == 3 * 7 + 1 + 2 + 3
    statuses = {call_api("GET", f"/v1/jobs/{job}", principal=caller).body["status"] for job in jobs}
    assert statuses == {"completed"}


def test_a_failing_request_does_not_fail_its_pack(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    caller = principal_of(make_tenant("acme"))
    good = no_wait(call_api, "/v1/completions", {"model": MODEL, "prompt": "fine"}, caller).body["id"]
    bad = no_wait(call_api, "/v1/completions", {"model": MODEL, "prompt": "FAIL_ME please"}, caller).body["id"]

    pipeline.run()

    assert call_api("GET", f"/v1/jobs/{good}", principal=caller).body["status"] == "completed"
    failed = call_api("GET", f"/v1/jobs/{bad}", principal=caller).body
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "invalid_request", "message": "the model refused this input"}
    assert usage_totals("acme")["requests"] == 1
    assert services.tenants.get("acme").in_flight == 0


def test_endpoint_failure_fails_the_jobs_and_releases_their_tokens(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    caller = principal_of(make_tenant("acme"))
    pipeline.endpoint.fail_packs = True
    job_id = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]

    pipeline.run()

    job = call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body
    assert job["status"] == "failed"
    assert job["error"]["code"] == "inference_failed"
    assert "server error (500)" in job["error"]["message"]
    assert usage_totals("acme")["total_tokens"] == 0
    tenant = services.tenants.get("acme")
    assert tenant.in_flight == 0


def test_throttled_endpoint_retries_and_nothing_is_lost(
    call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    caller = principal_of(make_tenant("acme"))
    pipeline.endpoint.throttle_next = 2
    job_id = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]

    for _ in range(2):
        handled, failed = pipeline.requests.poll_once(retry_failures_now=True)
        assert (handled, failed) == (1, 1)
    assert call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body["status"] == "queued"
    pipeline.run()

    assert call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body["status"] == "completed"
    assert len(pipeline.endpoint.calls) == 1


def test_endpoint_unavailable_until_dlq_fails_job_and_releases(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline, body_storage: str
) -> None:
    caller = principal_of(make_tenant("acme"))
    pipeline.endpoint.throttle_next = 1_000
    job_id = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]
    assert services.tenants.get("acme").in_flight == 1

    # The template's maxReceiveCount (8) deliveries, then SQS moves it to the dead-letter queue.
    pipeline.requests.drain(retry_failures_now=True)
    assert pipeline.queue_depth("RequestsDeadLetterQueue") == 1
    pipeline.request_failures.drain()

    job = call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body
    assert job["status"] == "failed"
    assert job["error"]["code"] == "dispatch_failed"
    assert "the endpoint stayed unavailable or throttled through every retry" in job["error"]["message"]
    assert services.tenants.get("acme").in_flight == 0
    assert pipeline.queue_depth("RequestsDeadLetterQueue") == 0


def test_poison_message_reaches_the_dlq_and_is_logged(
    pipeline: Pipeline, service_logs: pytest.LogCaptureFixture
) -> None:
    boto3.client("sqs").send_message(QueueUrl=pipeline.created.refs["RequestsQueue"], MessageBody='{"version": 9}')

    pipeline.requests.drain(retry_failures_now=True)
    assert pipeline.queue_depth("RequestsQueue") == 0
    assert pipeline.queue_depth("RequestsDeadLetterQueue") == 1
    pipeline.request_failures.drain()

    logs = service_logs.text
    assert "malformed request message" in logs
    assert "dead letter is not a request message" in logs


def test_lost_notification_is_recovered_by_the_sweeper(
    services: Services,
    call_api: Api,
    make_tenant: Callable[..., IssuedKey],
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    body_storage: str,
) -> None:
    from sweeper import app as sweeper_app

    caller = principal_of(make_tenant("acme"))
    pipeline.endpoint.notify = False
    finished = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]
    pipeline.run()  # the endpoint wrote its output but no notification arrives
    pipeline.endpoint.pending.clear()
    assert call_api("GET", f"/v1/jobs/{finished}", principal=caller).body["status"] == "dispatched"

    # A second request whose pack never produced anything at all.
    pipeline.endpoint.run_pending = lambda: []  # type: ignore[method-assign]
    lost = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]
    pipeline.run()

    # past both deadlines, and always on the next day (2 h from now was the next day only after 22:00
    # UTC, and the day's usage then moved to its row in this sweep: the test depended on the hour)
    later = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(2), tzinfo=UTC)
    monkeypatch.setattr(sweeper_app, "services", Services(clock=lambda: later))

    # the first is found from its output (late notification), the second expires at its deadline;
    # the first one's usage, settled today, moves to today's row (the sweep runs the next day)
    assert sweeper_app.lambda_handler({}, FakeContext()) == {
        "recovered": 1,
        "overdue": 1,
        "resolved": 1,
        "orphans_released": 0,
        "errors": 0,
        "usage_rows_moved": 1,
    }

    assert call_api("GET", f"/v1/jobs/{finished}", principal=caller).body["status"] == "completed"
    expired = call_api("GET", f"/v1/jobs/{lost}", principal=caller).body
    assert expired["status"] == "expired"
    assert usage_totals("acme")["requests"] == 1
    assert services.tenants.get("acme").in_flight == 0
    assert sweeper_app.lambda_handler({}, FakeContext()) == {
        "recovered": 0,
        "overdue": 0,
        "resolved": 0,
        "orphans_released": 0,
        "errors": 0,
        "usage_rows_moved": 0,
    }


def test_jobs_of_the_previous_layout_in_flight_during_the_deploy_each_end_once(
    services: Services,
    call_api: Api,
    make_tenant: Callable[..., IssuedKey],
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 25: items written by the previous version and in flight during a deploy still settle.
    That version's jobs carry `active` (in `ActiveJobsIndex`, by deadline) and, once dispatched,
    `recheck_at` (`DispatchedJobsIndex`); this one writes neither index and reads only the first."""
    from sweeper import app as sweeper_app

    caller = principal_of(make_tenant("acme"))
    pipeline.endpoint.notify = False
    # GIVEN a job the previous version dispatched (its output written, its notification lost) ...
    before = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]
    pipeline.run()
    pipeline.endpoint.pending.clear()
    jobs_table = pipeline.created.refs["JobsTable"]
    as_previous_layout(jobs_table, "acme", before, recheck_at=datetime.now(UTC) + timedelta(minutes=5))
    # ... one it queued and this version dispatched (the same) ...
    after = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]
    as_previous_layout(jobs_table, "acme", after)
    pipeline.run()
    pipeline.endpoint.pending.clear()
    # ... and one it queued whose message never reaches the dispatcher
    stuck = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]
    as_previous_layout(jobs_table, "acme", stuck)

    def status(job_id: str) -> str:
        return str(call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body["status"])

    # WHEN the sweeper runs ResultCheckSeconds later: the one this version dispatched joined the
    # new index, and is finished from its output
    soon = datetime.now(UTC) + timedelta(minutes=6)
    monkeypatch.setattr(sweeper_app, "services", Services(clock=lambda: soon))
    report = sweeper_app.lambda_handler({}, FakeContext())
    assert (report["recovered"], report["overdue"], report["errors"]) == (1, 0, 0)
    assert [status(job_id) for job_id in (before, after, stuck)] == ["dispatched", "completed", "queued"]

    # AND past their deadline, the other dispatched one is finished from its output, the stuck one expires
    later = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(2), tzinfo=UTC)
    monkeypatch.setattr(sweeper_app, "services", Services(clock=lambda: later))
    report = sweeper_app.lambda_handler({}, FakeContext())
    assert (report["recovered"], report["overdue"], report["resolved"], report["errors"]) == (1, 1, 1, 0)
    assert [status(job_id) for job_id in (before, after, stuck)] == ["completed", "completed", "expired"]

    # THEN each ended once: billed once, nothing left in flight, nothing left to sweep
    assert Services().usage.report("acme", datetime.now(UTC).date(), later.date()).totals.requests == 2
    assert services.tenants.get("acme").in_flight == 0
    again = sweeper_app.lambda_handler({}, FakeContext())
    assert (again["recovered"], again["overdue"]) == (0, 0)


def test_lost_error_notification_fails_the_job_from_the_failure_file(
    services: Services,
    call_api: Api,
    make_tenant: Callable[..., IssuedKey],
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sweeper import app as sweeper_app

    caller = principal_of(make_tenant("acme"))
    pipeline.endpoint.notify = False
    pipeline.endpoint.fail_packs = True
    job_id = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]
    pipeline.run()
    later = datetime.now(UTC) + timedelta(hours=2)
    monkeypatch.setattr(sweeper_app, "services", Services(clock=lambda: later))

    assert sweeper_app.lambda_handler({}, FakeContext()) == {
        "recovered": 1,
        "overdue": 0,
        "resolved": 0,
        "orphans_released": 0,
        "errors": 0,
        "usage_rows_moved": 0,
    }

    job = call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body
    assert (job["status"], job["error"]) == ("failed", {"code": "inference_failed", "message": "model crashed"})
    assert services.tenants.get("acme").in_flight == 0


def test_another_tenants_job_is_404(call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline) -> None:
    acme = principal_of(make_tenant("acme"))
    globex = principal_of(make_tenant("globex"))
    job_id = no_wait(call_api, "/v1/chat/completions", CHAT, acme).body["id"]

    response = call_api("GET", f"/v1/jobs/{job_id}", principal=globex)

    assert response.status == 404
    assert response.body["error"]["code"] == "not_found"
    assert job_id in response.body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options", "unsupported_parameter"),
        ({**CHAT, "n": 9}, "n", "invalid_value"),
        ({**CHAT, "tools": [{"type": "function"}]}, "tools.0.function", "invalid_value"),
        ({**CHAT, "messages": [{"role": "tool", "content": "12 C"}]}, "messages.0", "invalid_value"),
        ({**CHAT, "messages": [{"role": "user", "content": None}]}, "messages.0", "invalid_value"),
        (
            {**CHAT, "messages": [{"role": "user", "content": "hi", "tool_calls": [CALL]}]},
            "messages.0",
            "invalid_value",
        ),
        ({**CHAT, "best_of": 2}, "best_of", "unsupported_parameter"),
        ({**CHAT, "functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
        ({**CHAT, "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({**CHAT, "temperature": 3}, "temperature", "invalid_value"),
        ({**CHAT, "messages": []}, "messages", "invalid_value"),
        ({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({**CHAT, "tenant_id": "globex"}, "tenant_id", "invalid_value"),
    ],
)
def test_bad_requests_are_400_and_admit_nothing(
    services: Services,
    call_api: Api,
    make_tenant: Callable[..., IssuedKey],
    body: dict[str, Any],
    param: str,
    code: str,
) -> None:
    caller = principal_of(make_tenant("acme"))

    response = no_wait(call_api, "/v1/chat/completions", body, caller)

    assert response.status == 400, response.body
    assert response.body["error"]["param"] == param
    assert response.body["error"]["code"] == code
    assert services.tenants.get("acme").in_flight == 0


def test_defaults_stream_false_and_n_1_are_accepted(
    call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    caller = principal_of(make_tenant("acme"))
    response = no_wait(call_api, "/v1/chat/completions", {**CHAT, "stream": False, "n": 1}, caller)
    assert response.status == 202


def test_oversized_body_is_413(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    caller = principal_of(make_tenant("acme"))
    huge = {**CHAT, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    response = no_wait(call_api, "/v1/chat/completions", huge, caller)
    assert response.status == 413
    assert response.body["error"]["code"] == "payload_too_large"


def test_limit_refusal_is_429_with_retry_after(
    call_api: Api, make_tenant: Callable[..., IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import app as api_app

    now = datetime.now(UTC)  # both requests in one minute, whenever the test runs
    monkeypatch.setattr(api_app, "services", Services(clock=lambda: now))
    caller = principal_of(make_tenant("acme", requests_per_minute=1))
    assert no_wait(call_api, "/v1/chat/completions", CHAT, caller).status == 202

    refused = no_wait(call_api, "/v1/chat/completions", CHAT, caller)

    assert refused.status == 429
    assert (refused.body["error"]["code"], refused.body["error"]["type"]) == ("rate_limit_exceeded", "requests")
    assert refused.headers["x-stratus-limit"] == "requests_per_minute"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(
    ("limit", "status", "type_", "code"),
    [
        ("requests_per_minute", 403, "permission_error", "limit_zero"),
        ("tokens_per_minute", 403, "permission_error", "limit_zero"),
        ("max_in_flight", 403, "permission_error", "limit_zero"),
        ("tokens_per_month", 429, "insufficient_quota", "insufficient_quota"),
    ],
)
def test_a_zero_limit_tells_the_client_not_to_retry_and_never_when_to(
    call_api: Api, make_tenant: Callable[..., IssuedKey], limit: str, status: int, type_: str, code: str
) -> None:
    # GIVEN a tenant whose operator set one limit to 0
    caller = principal_of(make_tenant("acme", **{limit: 0}))

    # WHEN it asks for a completion
    refused = call_api("POST", "/v1/chat/completions", CHAT, principal=caller)

    # THEN a refusal that no wait lifts: no Retry-After, x-should-retry false, the limit named
    assert refused.status == status, refused.body
    assert refused.body["error"]["code"] == code
    assert refused.body["error"]["type"] == type_
    assert refused.body["error"]["message"] == (
        f"the tenant's {limit} is 0: no request can be admitted until it is raised; do not retry"
    )
    assert refused.headers["x-should-retry"] == "false"
    assert refused.headers["x-stratus-limit"] == limit
    assert "Retry-After" not in refused.headers and "retry-after-ms" not in refused.headers
    assert usage_totals("acme")["requests"] == 0


def test_inference_needs_the_inference_scope(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    caller = principal_of(make_tenant("acme", scopes=[Scope.USAGE]))
    response = no_wait(call_api, "/v1/chat/completions", CHAT, caller)
    assert response.status == 403
    assert response.body["error"]["code"] == "insufficient_scope"


def test_a_request_whose_stored_body_is_gone_fails_and_releases_its_tokens(
    services: Services,
    call_api: Api,
    make_tenant: Callable[..., IssuedKey],
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store_bodies_in_s3(monkeypatch)
    caller = principal_of(make_tenant("acme"))
    job_id = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]
    s3 = boto3.client("s3")
    bucket = pipeline.created.refs["DataBucket"]
    (body,) = s3.list_objects_v2(Bucket=bucket, Prefix="requests/")["Contents"]
    s3.delete_object(Bucket=bucket, Key=body["Key"])

    pipeline.run()

    job = call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body
    assert (job["status"], job["error"]["code"]) == ("failed", "request_missing")
    assert services.tenants.get("acme").in_flight == 0
    assert pipeline.endpoint.calls == []
    assert call_api("GET", "/v1/usage", principal=caller).body["totals"]["total_tokens"] == 0


def test_a_late_notification_is_looked_for_again_later_and_the_job_waits_for_its_deadline(
    services: Services,
    call_api: Api,
    make_tenant: Callable[..., IssuedKey],
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No output yet is not a failure (the endpoint may be scaling out from zero): the job stays
    dispatched, is looked for again after longer and longer waits, and completes when the output
    appears, long before its deadline."""
    from sweeper import app as sweeper_app

    caller = principal_of(make_tenant("acme"))
    pipeline.endpoint.notify = False
    job_id = no_wait(call_api, "/v1/chat/completions", CHAT, caller).body["id"]
    pipeline.requests.drain()  # dispatched; the endpoint has not run it yet
    dispatched = datetime.now(UTC)
    check = timedelta(seconds=services.settings.result_check_seconds)
    clock = {"now": dispatched}
    monkeypatch.setattr(sweeper_app, "services", Services(clock=lambda: clock["now"]))

    def sweep_at(after: timedelta) -> dict[str, int]:
        clock["now"] = dispatched + after
        return sweeper_app.lambda_handler({}, FakeContext())  # type: ignore[no-any-return]

    assert sweep_at(check / 2) == {
        "recovered": 0,
        "overdue": 0,
        "resolved": 0,
        "orphans_released": 0,
        "errors": 0,
        "usage_rows_moved": 0,
    }
    assert sweep_at(check + timedelta(seconds=1)) == {
        "recovered": 0,
        "overdue": 0,
        "resolved": 0,
        "orphans_released": 0,
        "errors": 0,
        "usage_rows_moved": 0,
    }  # looked: nothing
    pipeline.endpoint.run_pending()  # the output appears; its notification is lost
    # the next look waits as long as the job has waited so far, so a sweep soon after does not see it
    assert sweep_at(check + timedelta(seconds=2)) == {
        "recovered": 0,
        "overdue": 0,
        "resolved": 0,
        "orphans_released": 0,
        "errors": 0,
        "usage_rows_moved": 0,
    }
    assert call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body["status"] == "dispatched"
    assert sweep_at(check * 2 + timedelta(seconds=3)) == {
        "recovered": 1,
        "overdue": 0,
        "resolved": 0,
        "orphans_released": 0,
        "errors": 0,
        "usage_rows_moved": 0,
    }
    job = call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body
    assert job["status"] == "completed"
    assert usage_totals("acme")["total_tokens"] == job["result"]["usage"]["total_tokens"]
    assert services.tenants.get("acme").in_flight == 0


def test_a_request_not_done_within_the_wait_is_a_retryable_503_and_its_retry_attaches(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    """The endpoint's state is read from SageMaker (`DescribeEndpoint`; on moto the endpoint does
    not exist, so its state is unknown and the answer says `still_running`)."""
    caller = principal_of(make_tenant("acme"))
    sdk = {"prefer": "wait=1", "x-stainless-retry-count": "0"}

    first = call_api("POST", "/v1/chat/completions", CHAT, principal=caller, headers=sdk)

    assert first.status == 503
    assert (first.body["error"]["code"], first.body["error"]["type"]) == ("still_running", "server_error")
    assert (first.headers["x-should-retry"], first.headers["Retry-After"]) == ("true", "5")
    job_id = first.headers["x-stratus-job-id"]
    pipeline.run()
    retry = call_api(
        "POST", "/v1/chat/completions", CHAT, principal=caller, headers={**sdk, "x-stainless-retry-count": "1"}
    )
    assert retry.status == 200 and retry.body["id"] == f"chatcmpl-{job_id}"
    assert usage_totals("acme")["requests"] == 1
    assert services.tenants.get("acme").in_flight == 0


def test_a_responses_text_format_with_an_invalid_name_is_400_and_admits_nothing(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    caller = principal_of(make_tenant("acme"))
    schema = {"type": "json_schema", "name": "not a name!", "schema": {"type": "object"}}

    response = no_wait(call_api, "/v1/responses", {"model": MODEL, "input": "hi", "text": {"format": schema}}, caller)

    assert response.status == 400, response.body
    assert response.body["error"]["param"] == "text.format.name"
    assert services.tenants.get("acme").in_flight == 0
