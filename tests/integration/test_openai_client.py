"""The official `openai` client, unchanged, against the gateway + authorizer + API handlers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx2
import openai
import pytest

from api.app import lambda_handler as api_handler
from authorizer.app import lambda_handler as authorizer_handler
from stratus.localcloud.gateway import HttpApiGateway
from stratus_core.keys import IssuedKey, Scope
from stratus_core.services import Services

from .conftest import Pipeline

MODEL = "smollm2-135m-instruct"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gateway_clock() -> Clock:
    return Clock()


@pytest.fixture
def client_for(cloud: dict[str, str], gateway_clock: Clock) -> Callable[[str], openai.OpenAI]:
    gateway = HttpApiGateway(authorizer_handler, api_handler, cache_ttl_seconds=30, clock=gateway_clock)

    def route(request: httpx2.Request) -> httpx2.Response:
        answer = gateway.handle(
            request.method, request.url.path, request.url.query.decode(), dict(request.headers), request.read()
        )
        return httpx2.Response(answer.status, headers=answer.headers, content=answer.body)

    def make(api_key: str) -> openai.OpenAI:
        http = httpx2.Client(transport=httpx2.MockTransport(route))
        return openai.OpenAI(api_key=api_key, base_url="https://stratus.test/v1", http_client=http, max_retries=0)

    return make


@pytest.fixture
def running(pipeline: Pipeline, linearizable_moto: None) -> Iterator[Pipeline]:
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            pipeline.run()
            stop.wait(0.05)

    worker = threading.Thread(target=work)
    worker.start()
    yield pipeline
    stop.set()
    worker.join()


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
) -> None:
    key = make_tenant("acme", scopes=[Scope.INFERENCE, Scope.BATCH], requests_per_minute=1)
    client = client_for(key.api_key)
    fast = client.with_options(default_headers={"Prefer": "wait=0"})
    fast.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "one"}], max_tokens=4)

    with pytest.raises(openai.RateLimitError) as limited:
        fast.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "two"}], max_tokens=4)
    assert limited.value.code == "requests_per_minute"

    with pytest.raises(openai.BadRequestError) as bad:
        fast.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=False, n=3)
    assert bad.value.param == "n"

    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_" + "0" * 24)

    services.keys.revoke(key.key_id)
    assert [m.id for m in client.models.list()] == [MODEL]  # the authorizer's answer is cached for 30 s
    gateway_clock.now += 31
    with pytest.raises(openai.PermissionDeniedError):  # then API Gateway's 403 for a denied key
        client.models.list()
    with pytest.raises(openai.PermissionDeniedError):
        client_for("sk-not-a-real-key").models.list()


def test_gateway_answers_401_without_a_key_and_404_off_the_routes(cloud: dict[str, str]) -> None:
    gateway = HttpApiGateway(authorizer_handler, api_handler)
    assert gateway.handle("GET", "/v1/models", "", {}, b"").status == 401
    assert gateway.handle("GET", "/elsewhere", "", {}, b"").status == 404
    served = gateway.handle("GET", "/openapi.json", "", {}, b"")
    assert served.status == 200
    assert b'"Stratus API"' in served.body
