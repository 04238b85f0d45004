"""Requests from 10 tenants, interactive and batch, under every fault at once; then the invariants.

The fault layer wraps the parts around the handlers, never the production code: the fake SageMaker
endpoint throttles, fails packs (error notifications), loses, duplicates, delays and reorders its
notifications; the dispatcher and results functions crash mid-batch (after their writes, before the
messages are acknowledged, so SQS delivers them again); poison messages are sent to the requests
queue; the functions' DynamoDB client is throttled, its transactions cancelled by conflicts and its
writes answered 500 after they landed (`stratus/localcloud/dynamo_faults.py`), and the test's client
retries a 5xx with the same Idempotency-Key, as the OpenAI SDK would. The sweeper runs at the end,
two hours later, as its schedule would. `STRATUS_RELIABILITY_REQUESTS` sets the size (CI: 120; `make
reliability`: 1,000, which also writes its section of docs/RELIABILITY.md).
Four requests in five carry generation options (`n`, logprobs, `json_object`, a required tool call
with `n: 2`): every choice's tokens must be billed exactly once too.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from stratus.localcloud.dynamo_faults import DynamoFaults
from stratus.localcloud.functions import reset_services
from stratus.template import load_template
from stratus_core.adapters import aws
from stratus_core.keys import IssuedKey, Principal, Scope
from stratus_core.services import Services
from tests.fakes import FakeAsyncEndpoint
from tests.helpers import ApiResponse, invoke_scheduled, principal_of, upload
from tests.integration.conftest import Pipeline
from tests.reliability.report import Section, write_section

MODEL = "smollm2-135m-instruct"
REQUESTS = int(os.environ.get("STRATUS_RELIABILITY_REQUESTS", "120"))
TENANTS = [f"tenant-{i}" for i in range(10)]
ROOMY = {"requests_per_minute": 100_000, "max_in_flight": 10_000}
TIGHT = {**ROOMY, "tokens_per_month": 400}  # tenant-9 runs into its monthly quota
FAULTS = {
    "endpoint throttling (per invocation)": 0.10,
    "endpoint failure: error notification (per pack)": 0.05,
    "notification lost (per notification)": 0.05,
    "notification duplicated": 0.15,
    "notification delayed to a later round (then reordered)": 0.25,
    "dispatcher crash after its writes, before the ack (per batch)": 0.10,
    "results crash after its writes, before the ack (per batch)": 0.10,
    # DynamoDB's own (stratus/localcloud/dynamo_faults.py): botocore retries the throttles and the
    # 500s; what survives its attempts reaches the functions, which must lose and double nothing
    "DynamoDB throttling (per call)": 0.04,
    "DynamoDB transaction conflict (per transaction)": 0.10,
    "DynamoDB write landed, then a 500 (per write)": 0.05,
}
DYNAMODB_FAULTS = {
    "ddb_throttle": "DynamoDB throttling (per call)",
    "ddb_conflict": "DynamoDB transaction conflict (per transaction)",
    "ddb_landed_error": "DynamoDB write landed, then a 500 (per write)",
}
POISON = 5
Api = Callable[..., ApiResponse]


@dataclass
class FaultyEndpoint:
    """Wraps the fake endpoint: the faults SageMaker and SNS can produce."""

    inner: FakeAsyncEndpoint
    rng: random.Random
    held: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    injected: dict[str, int] = field(default_factory=dict)

    def count(self, fault: str) -> bool:
        return fired(self.rng, fault, self.injected)

    def invoke_endpoint_async(self, **params: Any) -> dict[str, Any]:
        if self.count("endpoint throttling (per invocation)"):
            self.inner.throttle_next = 1
        return self.inner.invoke_endpoint_async(**params)

    def run_pending(self) -> int:
        """Run every queued invocation (some fail), then publish the notifications with SNS's faults."""
        sns = boto3.client("sns")
        self.inner.notify = False
        produced = []
        queued, self.inner.pending = self.inner.pending, []
        for invocation in queued:
            self.inner.fail_packs = self.count("endpoint failure: error notification (per pack)")
            self.inner.pending = [invocation]
            (notification,) = self.inner.run_pending()
            failed = notification.get("invocationStatus") != "Completed"
            produced.append((self.inner.error_topic if failed else self.inner.success_topic, notification))
        ready, self.held = self.held, []
        for topic, notification in produced:
            if self.count("notification lost (per notification)"):
                continue
            for _ in range(2 if self.count("notification duplicated") else 1):
                if self.count("notification delayed to a later round (then reordered)"):
                    self.held.append((topic, notification))
                else:
                    ready.append((topic, notification))
        self.rng.shuffle(ready)
        for topic, notification in ready:
            sns.publish(TopicArn=topic, Message=json.dumps(notification))
        return len(produced) + len(ready)


def fired(rng: random.Random, fault: str, injected: dict[str, int]) -> bool:
    """Draw for `fault`; its first opportunity always fires, so that every fault shows in a run of any
    size (how many opportunities there are depends on batching) and "every fault fired" is no gamble."""
    if rng.random() < FAULTS[fault] or fault not in injected:
        injected[fault] = injected.get(fault, 0) + 1
        return True
    return False


def crashing(handler: Callable[..., Any], rng: random.Random, fault: str, injected: dict[str, int]) -> Any:
    def run(event: dict[str, Any], context: Any) -> Any:
        response = handler(event, context)
        if fired(rng, fault, injected):
            raise RuntimeError("injected crash after the writes, before the ack")
        return response

    return run


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
OPTIONS: list[dict[str, Any]] = [  # every fifth request plain; the others with a generation option
    {},
    {"n": 3, "seed": 1},
    {"logprobs": True, "top_logprobs": 2},
    {"response_format": {"type": "json_object"}},
    {"tools": [TOOL], "tool_choice": "required", "n": 2},
]


def chat(i: int) -> dict[str, Any]:
    question = {"role": "user", "content": f"question {i} about things"}
    return {"model": MODEL, "messages": [question], "max_tokens": 6, **OPTIONS[i % len(OPTIONS)]}


def test_every_job_ends_billing_is_exact_and_nothing_is_left_behind(
    services: Services,
    call_api: Api,
    make_tenant: Callable[..., IssuedKey],
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    service_logs: pytest.LogCaptureFixture,
) -> None:
    # small packs: more invocations and notifications for the faults to hit
    monkeypatch.setenv("MAX_PACK_SIZE", "4")
    reset_services(load_template())
    rng = random.Random(20261129)
    faulty = FaultyEndpoint(pipeline.endpoint, rng)
    monkeypatch.setattr("stratus_core.adapters.aws.sagemaker_runtime", lambda: faulty)
    injected = faulty.injected
    pipeline.requests._handler = crashing(pipeline.requests._handler, rng, list(FAULTS)[5], injected)
    pipeline.batch_requests._handler = crashing(pipeline.batch_requests._handler, rng, list(FAULTS)[5], injected)
    pipeline.results._handler = crashing(pipeline.results._handler, rng, list(FAULTS)[6], injected)

    callers: dict[str, Principal] = {}
    for tenant in TENANTS:
        limits = TIGHT if tenant == TENANTS[-1] else ROOMY
        callers[tenant] = principal_of(make_tenant(tenant, scopes=[Scope.INFERENCE, Scope.BATCH], **limits))
    dynamodb = DynamoFaults(lambda name: fired(rng, DYNAMODB_FAULTS[name], injected), rng.choice)
    dynamodb.attach(aws.dynamodb())
    dynamodb.armed = True
    call_api = retrying(call_api)
    interactive: dict[str, list[str]] = {t: [] for t in TENANTS}
    batches: dict[str, str] = {}
    refused = busy = 0
    per_tenant = REQUESTS // len(TENANTS)
    batch_lines = per_tenant * 3 // 10
    for tenant in TENANTS:
        for i in range(per_tenant - batch_lines):
            answer = call_api(
                "POST", "/v1/chat/completions", chat(i), principal=callers[tenant], headers={"prefer": "respond-async"}
            )
            if answer.status == 202:
                interactive[tenant].append(answer.body["id"])
            elif answer.status == 503:  # still busy after the client's retries: told so, never billed
                busy += 1
            else:
                assert answer.status == 429 and tenant == TENANTS[-1], answer.body
                refused += 1
        lines = "".join(
            json.dumps({"custom_id": f"b{i}", "method": "POST", "url": "/v1/chat/completions", "body": chat(i)}) + "\n"
            for i in range(batch_lines)
        )
        file_id = upload_input(call_api, callers[tenant], lines.encode())
        created = call_api(
            "POST",
            "/v1/batches",
            {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
            principal=callers[tenant],
        )
        assert created.status == 200, created.body
        batches[tenant] = created.body["id"]
    sqs = boto3.client("sqs")
    for i in range(POISON):
        sqs.send_message(QueueUrl=pipeline.created.refs["RequestsQueue"], MessageBody=f"not a request #{i}")

    # drive everything until it is quiet, with failures made visible again at once
    for _ in range(400):
        moved = (
            pipeline.batches.drain(retry_failures_now=True)
            + pipeline.requests.drain(retry_failures_now=True)
            + pipeline.batch_requests.drain(retry_failures_now=True)
            + faulty.run_pending()
            + pipeline.results.drain(retry_failures_now=True)
            + pipeline.request_failures.drain()
        )
        if not moved:  # the rest is quiet: the scheduler's run (once a minute on AWS) lets held lines go
            released = pipeline.schedule()  # None: the run failed (a write DynamoDB kept refusing): again
            moved = 1 if released is None else released
        if not moved and not faulty.held:
            break

    # the sweeper's schedule: interactive jobs are overdue after their 1 h TTL, batch jobs only after
    # their batch's 24 h window; a day and an hour later every lost notification has been resolved
    # from S3 (or its job expired)
    from sweeper import app as sweeper_app

    later = datetime.now(UTC) + timedelta(hours=25)
    monkeypatch.setattr(sweeper_app, "services", Services(clock=lambda: later))
    swept = sweep_until_complete(sweeper_app.lambda_handler)
    pipeline.batches.drain(retry_failures_now=True)
    dynamodb.armed = False  # the checks below read what is stored, without faults

    # INVARIANTS
    start = datetime.now(UTC).date()
    statuses: dict[str, int] = {}
    received: dict[str, int] = {t: 0 for t in TENANTS}
    for tenant, job_ids in interactive.items():
        for job_id in job_ids:
            job = call_api("GET", f"/v1/jobs/{job_id}", principal=callers[tenant]).body
            status = job.get("status") or ("completed" if job.get("object") == "chat.completion" else "?")
            statuses[status] = statuses.get(status, 0) + 1
            assert status in ("completed", "failed", "expired"), job
            result = job.get("result") or (job if job.get("object") == "chat.completion" else None)
            if status == "completed" and result:
                received[tenant] += result["usage"]["total_tokens"]
    line_outcomes: dict[str, int] = {}
    for tenant, batch_id in batches.items():
        batch = call_api("GET", f"/v1/batches/{batch_id}", principal=callers[tenant]).body
        assert batch["status"] in ("completed", "failed", "expired"), (batch["status"], batch["request_counts"])
        counts = batch["request_counts"]
        assert counts["completed"] + counts["failed"] == counts["total"], batch
        if batch.get("output_file_id"):
            content = call_api("GET", f"/v1/files/{batch['output_file_id']}/content", principal=callers[tenant]).raw
            for line in content.decode().splitlines():
                received[tenant] += json.loads(line)["response"]["body"]["usage"]["total_tokens"]
                line_outcomes["completed"] = line_outcomes.get("completed", 0) + 1
        if batch.get("error_file_id"):
            content = call_api("GET", f"/v1/files/{batch['error_file_id']}/content", principal=callers[tenant]).raw
            for line in content.decode().splitlines():
                code = json.loads(line)["error"]["code"]
                line_outcomes[code] = line_outcomes.get(code, 0) + 1
    # Every fault in this plan is retried, or fails a line outright (an endpoint error notification
    # fails its pack's lines: `inference_failed`); none denies a line a model until its window ends.
    # So no line may expire: an expired line is a retried fault that lost it.
    assert line_outcomes.get("expired", 0) == 0, line_outcomes
    assert set(line_outcomes) <= {"completed", "inference_failed", "insufficient_quota"}, line_outcomes
    assert sum(line_outcomes.values()) == len(TENANTS) * batch_lines
    billed = {t: services.usage.report(t, start.replace(day=1), later.date()).totals.total_tokens for t in TENANTS}
    assert billed == received
    for tenant in TENANTS:
        stored = services.tenants.get(tenant)
        assert stored.in_flight == 0, tenant
    assert billed[TENANTS[-1]] <= TIGHT["tokens_per_month"]
    held = services.admission_store.pending_before(later + timedelta(days=1), 1000)
    assert held == []  # no reservation still held
    depths = {
        q: pipeline.queue_depth(q)
        for q in (
            "RequestsDeadLetterQueue",
            "BatchRequestsDeadLetterQueue",
            "BatchDeadLetterQueue",
            "ResultsDeadLetterQueue",
        )
    }
    assert depths == dict.fromkeys(depths, 0)
    poisoned = {
        getattr(record, "message_id", None)
        for record in service_logs.records
        if record.getMessage() == "dead letter is not a request message" and getattr(record, "reason", None)
    }
    reasons = len(poisoned)
    assert reasons == POISON  # each poison message reached the DLQ and was logged once, with its reason
    assert all(injected.get(fault, 0) > 0 for fault in FAULTS), injected

    write_section(
        Section(
            order=1,
            requests=REQUESTS,
            title=f"{REQUESTS} requests from {len(TENANTS)} tenants in process, every fault at once",
            how=(
                "moto in process, the real handlers (API, dispatcher, results, request failures, batch, sweeper) "
                "driven round by round, and the fake SageMaker endpoint (echo answers) wrapped in the faults "
                "SageMaker and SNS can produce, and the DynamoDB client in the faults DynamoDB can produce (a client "
                "retries a 5xx with the same Idempotency-Key); small packs (4) for more invocations and "
                "notifications. The "
                "sweeper runs once at the end, 25 hours later, as its schedule would, so interactive jobs past "
                "their deadline expire. 70 % interactive requests, 30 % batch lines (one batch per tenant); "
                f"tenant-9 has a {TIGHT['tokens_per_month']}-token monthly quota. Rates: "
                + ", ".join(f"{fault} {rate:.0%}" for fault, rate in FAULTS.items())
                + "."
            ),
            injected={**injected, "poison messages on the requests queue": POISON},
            outcome=(
                f"interactive jobs {json.dumps(statuses)}; refused at admission (quota): {refused}; "
                f"still busy (503) after the client's retries: {busy}; "
                f"{len(batches)} batches, all terminal; batch lines by outcome {json.dumps(line_outcomes)} "
                "(none expired: no fault in this plan denies a line a model); "
                f"the sweeper finished {swept.get('recovered', 0)} jobs "
                f"from S3 (lost notifications) and {swept.get('resolved', 0)} of {swept.get('overdue', 0)} overdue "
                f"jobs; scheduler runs that failed and ran again: {pipeline.failed_schedules}"
            ),
            invariants=[
                "every job and batch is terminal",
                "no batch line expired: each completed, or failed by an injected endpoint error or its quota",
                "billed tokens per tenant == the sum of `usage` the clients received",
                "no reservation left (in flight 0 for every tenant, no pending reservation)",
                "no tenant over its monthly quota",
                f"dead-letter queues empty at the end; each of the {reasons} poison messages logged with its reason",
                "every fault fired at least once",
            ],
            tenants={t: (received[t], billed[t]) for t in TENANTS},
        )
    )


def retrying(call_api: Api) -> Api:
    """A client's retries: a 5xx (DynamoDB still throttled after botocore's attempts), or a 429 that
    says `x-should-retry: true` (the tenant item throttled past them: `tenant_write_ceiling`), is
    sent again with the same Idempotency-Key, as the OpenAI SDK does, so it attaches to the job it
    may have made. A quota's 429 says `x-should-retry: false` and is not."""
    counter = iter(range(1_000_000))

    def call(method: str, path: str, body: Any = None, **kwargs: Any) -> ApiResponse:
        headers = {"idempotency-key": f"retry-{next(counter)}", **(kwargs.pop("headers", None) or {})}
        for _ in range(10):
            answer = call_api(method, path, body, headers=headers, **kwargs)
            retry_told = {k.lower(): v for k, v in answer.headers.items()}.get("x-should-retry") == "true"
            if answer.status < 500 and not (answer.status == 429 and retry_told):
                return answer
        return answer

    return call


def sweep_until_complete(handler: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The sweeper's schedule runs it again when a run failed (`SweepIncomplete`, or a DynamoDB error
    before it could sweep anything), as it runs the scheduler again (`Pipeline.schedule`)."""
    for _ in range(10):
        answer = invoke_scheduled(handler)
        if answer is not None:
            return answer
    raise AssertionError("ten sweeper runs in a row failed; their errors are logged")


def upload_input(call_api: Api, caller: Principal, content: bytes) -> str:
    answer = upload(call_api, caller, content, "in.jsonl")
    assert answer.status == 200, answer.body
    return str(answer.body["id"])
