"""`stratus local up` end to end with a tiny random model (CI-fast), run as a user runs it: a separate
process. The official openai client, unchanged, does a chat completion through the endpoint's cold
start (its own retries of the retryable 503s), a stream and a batch; usage and the invoice equal the
tokens the responses reported; the endpoint's cold start and scale-to-zero show in the logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

pytest.importorskip("torch")

import openai

from tests.local_cloud.conftest import MODEL, Cloud, launch, tiny_artifact


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    # held batch lines start the endpoint at once (WarmWindowMinutes=0): this module is about the path,
    # test_scheduler.py about when the endpoint runs
    extra = ["--parameter", "WarmWindowMinutes=0"]
    with launch(tiny_artifact(tmp_path_factory), tmp_path_factory, engine="vllm", extra=extra) as running:
        yield running


def test_chat_and_batch_through_the_local_cloud_bill_what_they_report(cloud: Cloud) -> None:
    admin = cloud.admin_key
    cloud.call("POST", "/admin/tenants", admin, {"tenant_id": "acme", "name": "Acme"})
    key = cloud.call("POST", "/admin/tenants/acme/keys", admin, {"scopes": ["inference", "batch", "usage"]})["api_key"]
    client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=key, max_retries=8, timeout=120)

    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello there"}], max_tokens=6, temperature=0
    )
    assert completion.object == "chat.completion"
    assert completion.usage is not None
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hello again"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].usage is not None
    reported = [completion.usage.total_tokens, chunks[-1].usage.total_tokens]

    lines = "".join(
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/completions",
                "body": {"model": MODEL, "prompt": f"one two {i}", "max_tokens": 4},
            }
        )
        + "\n"
        for i in range(5)
    )
    uploaded = client.files.create(file=("in.jsonl", lines.encode()), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h")
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.output_file_id is not None
    outputs = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert len(outputs) == 5
    reported += [item["response"]["body"]["usage"]["total_tokens"] for item in outputs]

    usage = cloud.call("GET", "/v1/usage", key)["totals"]
    assert (usage["requests"], usage["total_tokens"]) == (7, sum(reported))
    invoices = cloud.call("GET", f"/admin/invoices/{datetime.now(UTC):%Y-%m}", admin)["data"]
    assert {i["tenant_id"]: i["total_tokens"] for i in invoices}["acme"] == sum(reported)


def test_the_rest_of_the_openai_protocol_through_the_local_cloud(cloud: Cloud) -> None:
    admin = cloud.admin_key
    cloud.call(
        "POST",
        "/admin/tenants",
        admin,
        {"tenant_id": "initial", "name": "Initial", "limits": {"requests_per_minute": 30}},
    )
    key = cloud.call("POST", "/admin/tenants/initial/keys", admin, {"scopes": ["inference", "usage"]})["api_key"]
    client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=key, max_retries=8, timeout=120)

    answer = client.responses.with_raw_response.create(model=MODEL, input="hello there", max_output_tokens=5)
    response = answer.parse()
    events = list(client.responses.create(model=MODEL, input="hello again", max_output_tokens=5, stream=True))

    assert response.status in ("completed", "incomplete") and response.usage is not None
    assert answer.headers["x-ratelimit-limit-requests"] == "30"
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None
    usage = cloud.call("GET", "/v1/usage", key)["totals"]
    assert (usage["requests"], usage["total_tokens"]) == (2, response.usage.total_tokens + final.usage.total_tokens)
    assert client.models.retrieve(MODEL).id == MODEL
    # this minute's standing, on a request the warm endpoint answers at once: the first one's answer
    # may be a retry through the cold start that attached to its job, and tells the minute it ends in
    # (a new one, with every request left, when the cold start crossed a minute)
    warm = client.responses.with_raw_response.create(model=MODEL, input="and again", max_output_tokens=2)
    assert warm.headers["x-ratelimit-limit-requests"] == "30"
    assert int(warm.headers["x-ratelimit-remaining-requests"]) < 30

    cloud.call(
        "POST", "/admin/tenants", admin, {"tenant_id": "frugal", "name": "F", "limits": {"tokens_per_month": 10}}
    )
    frugal = cloud.call("POST", "/admin/tenants/frugal/keys", admin, {"scopes": ["inference"]})["api_key"]
    with pytest.raises(openai.RateLimitError) as over:  # no request fits a 10-token month: not retried
        openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=frugal, max_retries=3).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2
        )
    assert (over.value.code, over.value.response.headers["x-should-retry"]) == ("insufficient_quota", "false")
    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=f"{cloud.url}/v1", api_key="sk-" + "Z" * 43, max_retries=0).models.list()
    assert refused.value.code == "invalid_api_key"


def test_cold_start_and_scale_to_zero_show_in_the_logs(cloud: Cloud) -> None:
    deadline = time.monotonic() + 30
    while "scaling 1 -> 0" not in cloud.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    logs = cloud.log.read_text()
    assert "scaling 0 -> 1: starting the model server (cold start)" in logs
    assert "instance in service after" in logs
    assert "scaling 1 -> 0" in logs


def test_operator_commands_drive_the_admin_api(cloud: Cloud) -> None:
    from click.testing import CliRunner

    from stratus.cli import main

    runner = CliRunner()
    api = ["--api-url", cloud.url, "--admin-key", cloud.admin_key, "--json"]

    created = runner.invoke(main, ["tenants", "create", "initech", "--name", "Initech", "--rpm", "5", *api])
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["limits"]["requests_per_minute"] == 5
    key = json.loads(runner.invoke(main, ["keys", "create", "initech", "--scope", "usage", *api]).output)
    assert key["api_key"].startswith("sk-")
    listed = json.loads(runner.invoke(main, ["keys", "list", "initech", *api]).output)["data"]
    assert [k["key_id"] for k in listed] == [key["key_id"]] and "api_key" not in listed[0]
    revoked = json.loads(runner.invoke(main, ["keys", "revoke", key["key_id"], *api]).output)
    assert revoked["status"] == "revoked"
    suspended = json.loads(runner.invoke(main, ["tenants", "update", "initech", "--status", "suspended", *api]).output)
    assert suspended["status"] == "suspended"
    assert json.loads(runner.invoke(main, ["usage", "initech", *api]).output)["totals"]["requests"] == 0
    invoices = json.loads(runner.invoke(main, ["invoice", *api]).output)
    assert "initech" not in {i["tenant_id"] for i in invoices["data"]}  # it used nothing: no invoice
    table = runner.invoke(main, ["tenants", "list", "--api-url", cloud.url, "--admin-key", cloud.admin_key])
    assert table.exit_code == 0 and "initech" in table.output
    missing = runner.invoke(main, ["tenants", "show", "nobody", *api])
    assert missing.exit_code == 1 and "404" in missing.output


def test_state_is_kept_across_a_restart_and_fresh_throws_it_away(cloud: Cloud) -> None:
    admin = cloud.admin_key
    before_usage = cloud.call("GET", "/admin/tenants/acme/usage", admin)["totals"]
    before_tenants = {t["tenant_id"] for t in cloud.call("GET", "/admin/tenants", admin)["data"]}
    assert cloud.stop() == 0
    assert "state saved to" in cloud.log.read_text()

    cloud.start()
    assert "state restored from" in cloud.log.read_text()
    assert {t["tenant_id"] for t in cloud.call("GET", "/admin/tenants", admin)["data"]} == before_tenants
    assert cloud.call("GET", "/admin/tenants/acme/usage", admin)["totals"] == before_usage
    assert cloud.stop() == 0

    cloud.command.append("--fresh")
    cloud.start()
    assert {t["tenant_id"] for t in cloud.call("GET", "/admin/tenants", admin)["data"]} == {"operators"}
