"""Every fault at once on the local cloud itself: `stratus local up --faults …` in its own process,
with a tiny random model behind the async endpoint, clients over HTTP, real time (no clock tricks).

The fault layer (stratus/localcloud/faults.py) wraps the emulated parts: the endpoint throttles
and fails packs, SNS loses, duplicates and delays (reorders) notifications, the dispatcher and
results functions crash after their writes and before the ack (SQS redelivers), poison messages
sit on the requests queue, and the functions' DynamoDB calls are throttled, their transactions
cancelled by conflicts and their writes answered 500 after landing (`dynamo_faults.py`); the
clients retry a 5xx as a real one would (the same Idempotency-Key). The sweeper runs every few
seconds and finds lost notifications' output (`ResultCheckSeconds=20`).
`STRATUS_CLOUD_FAULT_REQUESTS` sets the size (50; `make reliability`: 1,000) and
`STRATUS_FAULTS` the faults (a `--faults` spec). Every configured fault fires at its first
opportunity (the fault layer guarantees it), so "every fault fired" holds at any size, whatever the timing.

Marked `reliability`: `make reliability` runs it, the default suite does not (it took a minute of the
suite's 15; the in-process scenario, with the same faults, stays in it).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import click
import pytest

pytest.importorskip("torch")

import openai

from stratus.localcloud.faults import FaultRates
from tests.local_cloud.conftest import MODEL, Cloud, launch, post, tiny_artifact
from tests.reliability.report import Section, write_section

REQUESTS = int(os.environ.get("STRATUS_CLOUD_FAULT_REQUESTS", "50"))
FAULTS = os.environ.get(
    "STRATUS_FAULTS",
    "throttle=0.2,endpoint_error=0.15,lost=0.2,duplicate=0.2,delay=0.3,delay_seconds=8,"
    "dispatcher_crash=0.2,results_crash=0.2,poison=3,ddb_throttle=0.03,ddb_conflict=0.1,ddb_landed_error=0.05",
)
TENANTS = [f"tenant-{i}" for i in range(10)]
ROOMY = {"requests_per_minute": 100_000, "tokens_per_minute": 10_000_000, "max_in_flight": 10_000}
TIGHT = {**ROOMY, "tokens_per_month": 400}  # tenant-9 runs into its monthly quota
TERMINAL = ("completed", "failed", "expired", "cancelled")
ORPHAN_GRACE = {"ORPHAN_GRACE_SECONDS": "60"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    artifact = tiny_artifact(tmp_path_factory)
    report = tmp_path_factory.mktemp("faults") / "injected.json"
    extra = ["--faults", FAULTS, "--fault-seed", "7", "--fault-report", str(report)]
    # redeliveries within seconds, not the template's minutes; a late notification's output looked for after 20 s
    extra += ["--visibility-timeout", "4", "--sweep-seconds", "3", "--idle-seconds", "600"]
    extra += ["--parameter", "ResultCheckSeconds=20", "--parameter", "MaxPackSize=4"]  # small packs: more faults
    # an admission that landed but was answered 500 leaves an orphaned reservation, which the sweeper
    # releases after ORPHAN_GRACE_SECONDS (15 minutes on AWS): 60 s here, so that it happens within the run
    with launch(artifact, tmp_path_factory, engine="echo", extra=extra, environment=ORPHAN_GRACE) as running:
        running.env["FAULT_REPORT"] = str(report)
        yield running


def chat(i: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"question {i} about things"}], "max_tokens": 6}


def moto_url(log: Path) -> str:
    found = re.search(r"moto on (http://127\.0\.0\.1:\d+)", log.read_text())
    assert found, "the local cloud's log names its moto server"
    return found.group(1)


@pytest.mark.reliability
def test_every_fault_at_once_on_the_local_cloud(cloud: Cloud) -> None:
    admin = cloud.admin_key
    keys: dict[str, str] = {}
    for tenant in TENANTS:
        limits = TIGHT if tenant == TENANTS[-1] else ROOMY
        create = {"tenant_id": tenant, "name": tenant, "limits": limits}
        admin_write(cloud, admin, "POST", "/admin/tenants", create, done_if_exists=True)
        keys[tenant] = admin_write(
            cloud, admin, "POST", f"/admin/tenants/{tenant}/keys", {"scopes": ["inference", "batch"]}
        )["api_key"]
    per_tenant = REQUESTS // len(TENANTS)
    batch_lines = per_tenant * 3 // 10
    started = time.monotonic()

    # 30 % of each tenant's requests as one batch (the official client), 70 % interactive (10 clients)
    batches: dict[str, str] = {}
    for tenant in TENANTS:
        client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=keys[tenant], max_retries=5, timeout=60)
        lines = "".join(
            json.dumps({"custom_id": f"b{i}", "method": "POST", "url": "/v1/chat/completions", "body": chat(i)}) + "\n"
            for i in range(batch_lines)
        )
        file = client.files.create(file=("in.jsonl", lines.encode()), purpose="batch")
        created = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
        batches[tenant] = created.id
    work = [(tenant, i) for i in range(per_tenant - batch_lines) for tenant in TENANTS]
    with ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(
                lambda w: (w[0], *post_until_accepted(cloud, keys[w[0]], chat(w[1]), f"{w[0]}-{w[1]}")),
                work,
            )
        )
    interactive: dict[str, list[str]] = {t: [] for t in TENANTS}
    refused = 0
    for tenant, status, body in answers:
        if status == 202:
            interactive[tenant].append(body["id"])
        else:  # only the tenant with the small quota is turned away, and only for its quota
            assert (status, tenant, body["error"]["code"]) == (429, TENANTS[-1], "insufficient_quota"), body
            refused += 1
    # one streamed chat per tenant with roomy limits, through the unmodified openai client: it waits, gets
    # retryable 503s while its job is not done (and 502s when an injected endpoint error fails it, which its
    # retry tries afresh), and reads the billed usage from the stream's last chunk
    with ThreadPoolExecutor(len(TENANTS) - 1) as pool:
        streamed = dict(zip(TENANTS[:-1], pool.map(lambda t: stream_usage(cloud, keys[t]), TENANTS[:-1]), strict=True))

    # wait until every job and batch is terminal (lost notifications are found by the sweeper)
    deadline = time.monotonic() + 120 + REQUESTS
    jobs: dict[str, dict[str, Any]] = {}
    final: dict[str, dict[str, Any]] = {}
    while True:
        for tenant, ids in interactive.items():
            for job_id in ids:
                if jobs.get(job_id, {}).get("status") not in TERMINAL:
                    jobs[job_id] = cloud.call("GET", f"/v1/jobs/{job_id}", keys[tenant])
        for tenant, batch_id in batches.items():
            if final.get(tenant, {}).get("status") not in TERMINAL:
                final[tenant] = cloud.call("GET", f"/v1/batches/{batch_id}", keys[tenant])
        pending = [j for j in jobs.values() if j["status"] not in TERMINAL]
        pending += [b for b in final.values() if b["status"] not in TERMINAL]
        if not pending:
            break
        assert time.monotonic() < deadline, (len(pending), pending[:3])
        time.sleep(2)
    elapsed = time.monotonic() - started

    # INVARIANTS
    statuses: dict[str, int] = {}
    failures: dict[str, int] = {}
    received = dict.fromkeys(TENANTS, 0)
    for tenant, ids in interactive.items():
        for job_id in ids:
            job = jobs[job_id]
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
            if job["status"] == "completed":
                received[tenant] += job["result"]["usage"]["total_tokens"]
            else:
                reason = f"{job['error']['code']}: {job['error']['message']}"
                failures[reason] = failures.get(reason, 0) + 1
    for tenant, tokens in streamed.items():
        received[tenant] += tokens
    batch_counts = {"completed": 0, "failed": 0}
    for tenant, batch in final.items():
        assert batch["status"] == "completed", batch
        counts = batch["request_counts"]
        assert counts["completed"] + counts["failed"] == counts["total"] == batch_lines, batch
        batch_counts["completed"] += counts["completed"]
        batch_counts["failed"] += counts["failed"]
        if batch.get("output_file_id"):
            content = cloud.call_raw("GET", f"/v1/files/{batch['output_file_id']}/content", keys[tenant])
            for line in content.decode().splitlines():
                received[tenant] += json.loads(line)["response"]["body"]["usage"]["total_tokens"]
        if batch.get("error_file_id"):
            content = cloud.call_raw("GET", f"/v1/files/{batch['error_file_id']}/content", keys[tenant])
            for line in content.decode().splitlines():
                error = json.loads(line)["error"]
                reason = f"{error['code']}: {error['message']}"
                failures[reason] = failures.get(reason, 0) + 1
                assert tenant == TENANTS[-1] or error["code"] != "insufficient_quota", line
    # nothing failed but what was made to fail: the injected endpoint errors, and tenant-9's quota;
    # so no line expired (every fault here is retried, or fails its pack at once: none withholds a model)
    # (and, rarely, a job whose storing kept failing in DynamoDB: released unbilled, its client told)
    injected_error = "inference_failed: ModelError: injected fault endpoint_error"
    allowed = ("insufficient_quota: ", "enqueue_failed: ")
    assert all(r == injected_error or r.startswith(allowed) for r in failures), failures

    month = f"{datetime.now(UTC):%Y-%m}"
    invoices = {i["tenant_id"]: i for i in cloud.call("GET", f"/admin/invoices/{month}", admin)["data"]}
    billed = {t: invoices[t]["total_tokens"] if t in invoices else 0 for t in TENANTS}
    assert billed == received  # every token the clients were told, billed once
    # nothing left in flight: every job is terminal, and the orphans of landed-then-500 admissions are
    # released by the sweeper once they are older than the grace (plus a sweep or two)
    deadline = time.monotonic() + int(ORPHAN_GRACE["ORPHAN_GRACE_SECONDS"]) + 30
    in_flight = {t: cloud.call("GET", f"/admin/tenants/{t}", admin).get("in_flight", 0) for t in TENANTS}
    while any(in_flight.values()) and time.monotonic() < deadline:
        time.sleep(3)
        in_flight = {t: cloud.call("GET", f"/admin/tenants/{t}", admin).get("in_flight", 0) for t in TENANTS}
    assert in_flight == dict.fromkeys(TENANTS, 0)
    assert billed[TENANTS[-1]] <= TIGHT["tokens_per_month"]

    # dead-letter queues: empty at the end; each poison message reached one and was logged with its reason
    rates = FaultRates.parse(FAULTS)
    deadline = time.monotonic() + 120
    while True:
        poisoned = {
            line["message_id"]
            for line in log_lines(cloud.log)
            if line.get("message") == "dead letter is not a request message" and line.get("reason")
        }
        if len(poisoned) >= rates.poison or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert len(poisoned) == rates.poison
    sqs = boto3.client(
        "sqs",
        endpoint_url=moto_url(cloud.log),
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    depths = {}
    for url in sqs.list_queues()["QueueUrls"]:
        if "DeadLetter" in url:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            depths[url.rsplit("/", 1)[-1]] = int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
    assert depths and set(depths.values()) == {0}, depths
    recovered = sum(
        int(line.get("recovered", 0)) for line in log_lines(cloud.log) if line.get("message") == "sweep done"
    )

    assert cloud.stop() == 0
    injected = json.loads(Path(cloud.env["FAULT_REPORT"]).read_text())["injected"]
    fired = {name for name in FaultRates.PROBABILITIES if getattr(rates, name) > 0}
    assert fired <= set(injected), injected  # every configured fault fired at least once

    write_section(
        Section(
            order=2,
            requests=REQUESTS,
            title=f"{REQUESTS} requests from {len(TENANTS)} tenants on the local cloud, every fault at once",
            how=(
                "`stratus local up --faults …` in its own process (moto server, the handlers behind the HTTP "
                "gateway, Lambda-like pollers, the async endpoint running the inference server with a tiny "
                "random model); 10 concurrent HTTP clients and the official openai client (batches, and one "
                "streamed chat per tenant that retries through 503s and injected failures); real "
                "time: queues' visibility timeout 4 s, packs of at most 4 requests, a late notification's output "
                "looked for in S3 after 20 s (ResultCheckSeconds), sweeper every 3 s; a 5xx is retried with the same "
                "Idempotency-Key. "
                f"Took {elapsed:.0f} s. Faults: `{FAULTS}`."
            ),
            injected={**injected, "jobs the sweeper finished from S3 (lost notifications)": recovered},
            outcome=(
                f"interactive jobs {json.dumps(statuses)}; batch lines {json.dumps(batch_counts)}; "
                f"refused at admission (tenant-9's monthly quota): {refused}; failures by reason "
                f"{json.dumps(failures)}"
            ),
            invariants=[
                "every job and batch is terminal",
                "billed tokens per tenant (invoice) == the sum of `usage` the clients received (streams included)",
                "in flight 0 for every tenant (no reservation left)",
                "no tenant over its monthly quota",
                "nothing failed but the injected endpoint errors (and quota refusals): no batch line expired, "
                "since no fault in this plan denies a line a model",
                f"dead-letter queues empty; each of the {rates.poison} poison messages logged once with its reason",
                "every configured fault fired at least once",
            ],
            tenants={t: (received[t], billed[t]) for t in TENANTS},
        )
    )


def post_until_accepted(cloud: Cloud, key: str, body: dict[str, Any], idempotency_key: str) -> tuple[int, Any]:
    """A client's retries: a 5xx (DynamoDB still throttled after botocore's attempts) is sent again
    with the same Idempotency-Key, so it attaches to any job the first attempt admitted."""
    for _ in range(90):  # past admission.ABANDONED_AFTER: a dead attempt's claim is then taken
        status, answer = post(
            f"{cloud.url}/v1/chat/completions", key, body, "respond-async", {"Idempotency-Key": idempotency_key}
        )
        if status < 500:
            return status, answer
        time.sleep(1)
    return status, answer


def admin_write(cloud: Cloud, admin: str, method: str, path: str, body: Any, done_if_exists: bool = False) -> Any:
    """An admin write, sent again while the API answers 503 (the service busy); a tenant whose
    creation landed before a 503 is there already (409) on the next try."""

    for attempt in range(20):
        try:
            return cloud.call(method, path, admin, body)
        except click.ClickException as refused:
            if done_if_exists and attempt and ": 409 " in refused.message:
                return None
            if ": 503 " not in refused.message:
                raise
            time.sleep(1)
    raise AssertionError(f"{method} {path} stayed busy")


def stream_usage(cloud: Cloud, key: str) -> int:
    """One streamed chat completion with the official client; the total tokens its stream reported."""
    client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=key, max_retries=30, timeout=120)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "a streamed question"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    return usage.total_tokens


def log_lines(log: Path) -> Iterator[dict[str, Any]]:
    """The Powertools JSON lines of the cloud's log."""
    for raw in log.read_text(errors="replace").splitlines():
        start = raw.find("{")
        if start < 0:
            continue
        try:
            line = json.loads(raw[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict):
            yield line
