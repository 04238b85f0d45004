"""A cold start of more than the wait, on the local cloud: `stratus local up --endpoint-startup-seconds`
makes the endpoint take longer to start from zero than a request waits inside the API
(`DefaultWaitSeconds`). The official openai client, unchanged but for `max_retries`, gets the
retryable 503 `model_starting` with an honest Retry-After, retries, attaches to the same job, and
gets its completion: one job, billed once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import httpx2
import pytest

pytest.importorskip("torch")

import openai

from tests.local_cloud.conftest import MODEL, Cloud, launch, tiny_artifact

STARTUP_SECONDS = 8
WAIT_SECONDS = 2


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    extra = ["--endpoint-startup-seconds", str(STARTUP_SECONDS), "--parameter", f"DefaultWaitSeconds={WAIT_SECONDS}"]
    extra += ["--idle-seconds", "600"]
    with launch(tiny_artifact(tmp_path_factory), tmp_path_factory, engine="echo", extra=extra) as running:
        yield running


def test_the_client_retries_through_a_cold_start_longer_than_the_wait_and_is_billed_once(cloud: Cloud) -> None:
    admin = cloud.admin_key
    cloud.call("POST", "/admin/tenants", admin, {"tenant_id": "acme", "name": "Acme"})
    key = cloud.call("POST", "/admin/tenants/acme/keys", admin, {"scopes": ["inference", "usage"]})["api_key"]
    answers: list[httpx2.Response] = []
    http = httpx2.Client(event_hooks={"response": [answers.append]}, timeout=60)
    client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=key, max_retries=10, http_client=http)

    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "are you awake"}], max_tokens=5
    )

    assert completion.object == "chat.completion" and completion.usage is not None
    first, last = answers[0], answers[-1]
    first.read()
    error = first.json()["error"]
    assert (first.status_code, error["code"], first.headers["x-should-retry"]) == (503, "model_starting", "true")
    assert 1 <= int(first.headers["retry-after"]) <= STARTUP_SECONDS + 6  # what is left of the expected start
    job_id = first.headers["x-stratus-job-id"]
    assert job_id in error["message"]
    assert {a.headers["x-stratus-job-id"] for a in answers} == {job_id}  # every retry attached to the same job
    assert last.status_code == 200 and completion.id == f"chatcmpl-{job_id}"
    assert [a.request.headers["x-stainless-retry-count"] for a in answers] == [str(n) for n in range(len(answers))]

    usage = cloud.call("GET", "/v1/usage", key)["totals"]
    assert (usage["requests"], usage["total_tokens"]) == (1, completion.usage.total_tokens)
    invoices = cloud.call("GET", f"/admin/invoices/{datetime.now(UTC):%Y-%m}", admin)["data"]
    assert {i["tenant_id"]: i["total_tokens"] for i in invoices}["acme"] == completion.usage.total_tokens
    assert jobs_of("acme", cloud) == 1  # no second job
    assert cloud.call("GET", "/admin/tenants/acme", admin).get("in_flight", 0) == 0
    assert f"provisioning an instance ({STARTUP_SECONDS} s" in cloud.log.read_text()


def jobs_of(tenant_id: str, cloud: Cloud) -> int:
    """The tenant's rows in the jobs table, read from the local cloud's moto server."""
    moto = re.search(r"moto on (http://127\.0\.0\.1:\d+)", cloud.log.read_text())
    assert moto, "the local cloud's log names its moto server"
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=moto.group(1),
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    table = next(name for name in dynamodb.list_tables()["TableNames"] if name.endswith("JobsTable"))
    query = dynamodb.query(
        TableName=table, KeyConditionExpression="tenant_id = :t", ExpressionAttributeValues={":t": {"S": tenant_id}}
    )
    return int(query["Count"])
