"""The official `openai` client, unchanged, against the gateway + authorizer + API handlers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import boto3
import httpx2
import openai
import pytest

from api.app import lambda_handler as api_handler
from authorizer.app import lambda_handler as authorizer_handler
from stratus.localcloud.gateway import HttpApiGateway
from stratus_core.endpoint_state import Capacity
from stratus_core.keys import IssuedKey, Scope
from stratus_core.services import Services
from tests.helpers import bill

from .conftest import Clock, Pipeline

MODEL = "smollm2-135m-instruct"


def test_chat_completion_with_the_official_client(
    client_for: Callable[[str], openai.OpenAI], make_tenant: Callable[..., IssuedKey], running: Pipeline
) -> None:
    client = client_for(make_tenant("acme").api_key)

    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "say hi"}], max_tokens=8
    )

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "echo: say hi"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (6, 3)
    assert [model.id for model in client.models.list()] == [MODEL]


def test_batch_with_the_official_client(
    client_for: Callable[[str], openai.OpenAI], make_tenant: Callable[..., IssuedKey], pipeline: Pipeline
) -> None:
    client = client_for(make_tenant("acme", scopes=[Scope.BATCH]).api_key)
    lines = "".join(
        f'{{"custom_id": "q{i}", "method": "POST", "url": "/v1/completions", '
        f'"body": {{"model": "{MODEL}", "prompt": "count {i}", "max_tokens": 5}}}}\n'
        for i in range(20)
    )

    uploaded = client.files.create(file=("questions.jsonl", lines.encode()), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h")
    pipeline.run()
    batch = client.batches.retrieve(batch.id)

    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (20, 20)
    assert batch.output_file_id is not None
    output = client.files.content(batch.output_file_id).text.splitlines()
    assert len(output) == 20
    assert [b.id for b in client.batches.list()] == [batch.id]
    assert client.files.retrieve(uploaded.id).filename == "questions.jsonl"


def test_errors_reach_the_client_as_openai_exceptions(
    services: Services,
    client_for: Callable[[str], openai.OpenAI],
    make_tenant: Callable[..., IssuedKey],
    gateway_clock: Clock,
    running: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from api import app as api_app

    now = datetime.now(UTC)  # every request of this test in one minute, whenever it runs
    monkeypatch.setattr(api_app, "services", Services(clock=lambda: now))
    key = make_tenant("acme", scopes=[Scope.INFERENCE, Scope.BATCH], requests_per_minute=1, tokens_per_minute=10_000)
    client = client_for(key.api_key)
    answer = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "one"}], max_tokens=4
    )
    assert answer.headers["x-ratelimit-limit-requests"] == "1"
    assert answer.headers["x-ratelimit-remaining-requests"] == "0"
    assert answer.headers["x-ratelimit-limit-tokens"] == "10000"
    assert int(answer.headers["x-ratelimit-remaining-tokens"]) < 10_000
    assert answer.headers["x-ratelimit-reset-requests"].endswith("s")

    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "two"}], max_tokens=4)
    assert (limited.value.code, limited.value.type) == ("rate_limit_exceeded", "requests")
    headers = limited.value.response.headers
    assert (headers["x-stratus-limit"], headers["x-ratelimit-remaining-requests"]) == ("requests_per_minute", "0")
    assert 1 <= int(headers["retry-after"]) <= 60

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=False, n=9)
    assert bad.value.param == "n"

    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_" + "0" * 24)

    services.keys.revoke(key.key_id)
    assert [m.id for m in client.models.list()] == [MODEL]  # the authorizer's answer is cached for 30 s
    gateway_clock.now += 31
    with pytest.raises(openai.AuthenticationError) as revoked:  # then OpenAI's 401 for a refused key
        client.models.list()
    assert revoked.value.code == "invalid_api_key" and "revoked" in revoked.value.message
    with pytest.raises(openai.AuthenticationError) as unknown:
        client_for("sk-not-a-real-key").models.list()
    assert (unknown.value.status_code, unknown.value.type) == (401, "invalid_request_error")


def test_a_quota_that_is_used_up_or_could_never_fit_is_429_insufficient_quota_and_not_retried(
    client_for: Callable[[str], openai.OpenAI], make_tenant: Callable[..., IssuedKey], running: Pipeline
) -> None:
    client = client_for(make_tenant("acme", tokens_per_month=250).api_key).with_options(max_retries=3)
    bill("acme", 150, 40)  # 190 of the month's 250 tokens are used
    messages = [{"role": "user", "content": "hi"}]

    with pytest.raises(openai.RateLimitError) as used_up:  # its worst case (138 + 4) no longer fits
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    with pytest.raises(openai.RateLimitError) as never:
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=500)

    for refused in (used_up.value, never.value):
        assert (refused.code, refused.type) == ("insufficient_quota", "insufficient_quota")
        assert refused.response.headers["x-should-retry"] == "false"
        assert refused.response.request.headers["x-stainless-retry-count"] == "0"  # the SDK did not retry


def test_streams_with_the_official_client_carry_the_billed_usage(
    services: Services,
    client_for: Callable[[str], openai.OpenAI],
    make_tenant: Callable[..., IssuedKey],
    running: Pipeline,
) -> None:
    client = client_for(make_tenant("acme").api_key)

    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "say hi"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = list(
        client.completions.create(
            model=MODEL, prompt="count to three", max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: say hi"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert "".join(c.choices[0].text for c in text if c.choices) == "echo: count to three"
    assert [c.choices[0].finish_reason for c in text if c.choices][-1] == "stop"
    assert text[-1].usage is not None
    billed = services.usage.report("acme", *[datetime.now(UTC).date()] * 2).totals
    assert billed.requests == 2
    assert chunks[-1].usage.total_tokens + text[-1].usage.total_tokens == billed.total_tokens  # what the streams said


def test_responses_and_models_with_the_official_client(
    client_for: Callable[[str], openai.OpenAI], make_tenant: Callable[..., IssuedKey], running: Pipeline
) -> None:
    client = client_for(make_tenant("acme").api_key)

    response = client.responses.create(model=MODEL, input="hello there", instructions="Be brief.", max_output_tokens=8)
    events = list(client.responses.create(model=MODEL, input=[{"role": "user", "content": "hello again"}], stream=True))

    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "echo: hello there"
    assert response.usage is not None and response.usage.output_tokens == 3
    assert response.usage.input_tokens + response.usage.output_tokens == response.usage.total_tokens
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "echo: hello again"
    assert events[-1].response.usage is not None  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as stored:
        client.responses.create(model=MODEL, input="x", previous_response_id="resp_1")
    assert stored.value.param == "previous_response_id"
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as unknown:
        client.models.retrieve("gpt-9")
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as embeddings:
        client.embeddings.create(model=MODEL, input="x")
    assert embeddings.value.code == "embeddings_not_supported"


def test_a_retry_of_a_request_not_ready_in_time_attaches_to_its_job_and_is_billed_once(
    services: Services,
    client_for: Callable[[str], openai.OpenAI],
    make_tenant: Callable[..., IssuedKey],
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    linearizable_moto: None,
) -> None:
    # GIVEN a 1-second wait and an endpoint that only starts working after the client's first attempt
    from api import app as api_app

    monkeypatch.setenv("DEFAULT_WAIT_SECONDS", "1")
    api_app.services.reset()
    monkeypatch.setattr(api_app.services, "endpoint_state", FixedCapacity(Capacity(1, 1, None)))
    started = threading.Event()
    statuses: list[int] = []

    def observe(response: httpx2.Response) -> None:
        statuses.append(response.status_code)
        if response.status_code == 503 and not started.is_set():
            started.set()
            threading.Thread(target=pipeline.run).start()

    client = client_for(make_tenant("acme").api_key, observe).with_options(max_retries=5)

    # WHEN the unmodified client asks
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "wait"}], max_tokens=4
    )

    # THEN it retried after a 503 and got the answer of the one job, billed once
    assert statuses[0] == 503 and statuses[-1] == 200
    assert completion.choices[0].message.content == "echo: wait"
    today = datetime.now(UTC).date()
    assert services.usage.report("acme", today, today).totals.requests == 1
    jobs = boto3.client("dynamodb").query(
        TableName=services.settings.jobs_table,
        KeyConditionExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": "acme"}},
    )
    assert jobs["Count"] == 1  # no second job
    assert services.tenants.get("acme").in_flight == 0


class FixedCapacity:
    def __init__(self, capacity: Capacity) -> None:
        self._capacity = capacity

    def capacity(self) -> Capacity:
        return self._capacity


def test_gateway_answers_401_without_a_key_and_404_off_the_routes(cloud: dict[str, str]) -> None:
    gateway = HttpApiGateway(authorizer_handler, api_handler)
    assert gateway.handle("GET", "/v1/models", "", {}, b"").status == 401
    assert gateway.handle("GET", "/elsewhere", "", {}, b"").status == 404
    served = gateway.handle("GET", "/openapi.json", "", {}, b"")
    assert served.status == 200
    assert b'"Stratus API"' in served.body
