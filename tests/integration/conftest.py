"""Helpers to drive the real handlers with real event shapes on moto."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import boto3
import httpx2
import openai
import pytest

from stratus.localcloud.dynamo_faults import DynamoFaults
from stratus.localcloud.gateway import HttpApiGateway
from stratus.localcloud.resources import Created
from stratus.localcloud.sqs_source import SqsEventSource
from stratus_core.adapters import aws
from stratus_core.keys import IssuedKey, KeyCreate, Principal, Scope
from stratus_core.services import Services
from stratus_core.tenants import TenantCreate, TenantLimits
from tests.fakes import FakeAsyncEndpoint
from tests.helpers import ADMIN, ApiResponse, FakeContext, ScheduledDrain, invoke_scheduled


def store_bodies_in_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request body too large for the job item (`INLINE_BODY_BYTES` 0): each waits in S3."""
    from stratus.localcloud.functions import reset_services
    from stratus.template import load_template

    monkeypatch.setenv("INLINE_BODY_BYTES", "0")
    reset_services(load_template())  # the handlers' services read it again


@pytest.fixture(params=["inline", "s3"])
def body_storage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, cloud: dict[str, str]) -> str:
    """Where request bodies wait: on the job item (the default for a small one) or in S3 (a body over
    `INLINE_BODY_BYTES`). A test that takes this runs once for each."""
    if request.param == "s3":
        store_bodies_in_s3(monkeypatch)
    return str(request.param)


def stored_bodies(created: Created) -> list[str]:
    """The request bodies in the data bucket (`requests/…`)."""
    listed = boto3.client("s3").list_objects_v2(Bucket=created.refs["DataBucket"], Prefix="requests/")
    return [entry["Key"] for entry in listed.get("Contents", [])]


@pytest.fixture
def call_api(cloud: dict[str, str], load_event: Callable[[str], dict[str, Any]]) -> Callable[..., ApiResponse]:
    """Invoke the API function as API Gateway would after the authorizer allowed `principal`."""
    from api.app import lambda_handler

    def call(
        method: str,
        path: str,
        body: Any = None,
        principal: Principal | None = ADMIN,
        query: dict[str, str] | None = None,
        raw_body: str | None = None,
        headers: dict[str, str] | None = None,
        base64_encoded: bool = False,
    ) -> ApiResponse:
        event = load_event("api_request")
        event["rawPath"] = path
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["http"]["path"] = path
        event["rawQueryString"] = urlencode(query or {})
        event["queryStringParameters"] = query or None
        event["headers"].update(headers or {})
        event["isBase64Encoded"] = base64_encoded
        event["body"] = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
        if principal is None:
            event["requestContext"].pop("authorizer")
        else:
            event["requestContext"]["authorizer"]["lambda"] = principal.to_context()
        result = lambda_handler(event, FakeContext())
        raw = result.get("body") or ""
        payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        try:
            body = json.loads(payload) if payload else None
        except ValueError:
            body = None
        return ApiResponse(result["statusCode"], result.get("headers", {}), body, payload)

    return call


@pytest.fixture
def make_tenant(services: Services, cloud: dict[str, str]) -> Callable[..., IssuedKey]:
    """Create a tenant with limits and return a key for it with the given scopes."""

    def make(
        tenant_id: str, scopes: list[Scope] | None = None, *, created: datetime | None = None, **limits: int
    ) -> IssuedKey:
        """`created`: when the tenant was created (now when not given)."""
        tenants = services.tenants if created is None else Services(clock=lambda: created).tenants
        tenants.create(TenantCreate(tenant_id=tenant_id, name=tenant_id.title(), limits=TenantLimits(**limits)))
        return services.keys.create(tenant_id, KeyCreate(scopes=scopes or [Scope.INFERENCE, Scope.USAGE]))

    return make


@dataclass
class Pipeline:
    """The asynchronous path on moto: requests queue → dispatcher → fake endpoint → SNS → results."""

    endpoint: FakeAsyncEndpoint
    requests: SqsEventSource
    results: SqsEventSource
    request_failures: ScheduledDrain
    batches: SqsEventSource
    batch_requests: SqsEventSource
    created: Created

    failed_schedules: int = 0  # scheduler invocations that failed (each runs again, as its schedule would)

    def run(self) -> None:
        """Until nothing moves: start batches, dispatch what is queued, run the endpoint, process the
        notifications, finalize batches; when all of that is quiet, let the scheduler release held
        batch lines (it runs once a minute on AWS, far less often than the pollers)."""
        for _ in range(50):
            moved = (
                self.batches.drain()
                + self.requests.drain()
                + self.batch_requests.drain()
                + len(self.endpoint.run_pending())
                + self.results.drain()
            )
            if not moved and self.schedule() == 0:  # None: that run failed, and the next round runs it again
                return

    def schedule(self) -> int | None:
        """One invocation of the scheduler function against the fake endpoint's control plane (in
        service unless the test says otherwise); the requests it let go, or None when the invocation
        failed (`invoke_scheduled`: the handler raised; counted in `failed_schedules`)."""
        from unittest import mock

        from scheduler.app import lambda_handler as scheduler_handler

        with mock.patch.object(aws, "sagemaker", lambda: self.endpoint):
            answer = invoke_scheduled(scheduler_handler)
        if answer is None:
            self.failed_schedules += 1
            return None
        return int(answer.get("released", 0))

    def queue_depth(self, logical_id: str) -> int:
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.created.refs[logical_id],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def pipeline(
    created: Created, load_event: Callable[[str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> Pipeline:
    from batch.app import lambda_handler as batch_handler
    from dispatcher.app import lambda_handler as dispatcher_handler
    from request_failures.app import lambda_handler as failures_handler
    from results.app import lambda_handler as results_handler

    endpoint = FakeAsyncEndpoint(
        bucket=created.refs["DataBucket"],
        success_topic=created.refs["InferenceSuccessTopic"],
        error_topic=created.refs["InferenceErrorTopic"],
        load_event=load_event,
    )
    monkeypatch.setattr(aws, "sagemaker_runtime", lambda: endpoint)
    monkeypatch.setattr(aws, "application_autoscaling", lambda: endpoint)
    context = FakeContext()
    return Pipeline(
        endpoint=endpoint,
        requests=SqsEventSource(created.refs["RequestsQueue"], dispatcher_handler, batch_size=32, context=context),
        results=SqsEventSource(created.refs["ResultsQueue"], results_handler, context=context),
        request_failures=ScheduledDrain(failures_handler),
        batches=SqsEventSource(created.refs["BatchQueue"], batch_handler, batch_size=1, context=context),
        batch_requests=SqsEventSource(
            created.refs["BatchRequestsQueue"], dispatcher_handler, batch_size=32, context=context
        ),
        created=created,
    )


# The official `openai` client, unchanged, against the gateway + authorizer + API handlers
# (`client_for(api_key)`), with a pipeline that keeps running in the background (`running`).


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gateway_clock() -> Clock:
    return Clock()


@pytest.fixture
def client_for(cloud: dict[str, str], gateway_clock: Clock) -> Callable[..., openai.OpenAI]:
    from api.app import lambda_handler as api_handler
    from authorizer.app import lambda_handler as authorizer_handler

    gateway = HttpApiGateway(authorizer_handler, api_handler, cache_ttl_seconds=30, clock=gateway_clock)

    def make(api_key: str, observe: Callable[[httpx2.Response], None] | None = None) -> openai.OpenAI:
        def route(request: httpx2.Request) -> httpx2.Response:
            answer = gateway.handle(
                request.method, request.url.path, request.url.query.decode(), dict(request.headers), request.read()
            )
            response = httpx2.Response(answer.status, headers=answer.headers, content=answer.body, request=request)
            if observe is not None:
                observe(response)
            return response

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


class Aimed:
    """Fires the faults of `script`, in order, on the calls that `target` picks (each fault on the
    first picked call that asks for it), and never otherwise. `fired`: how many have fired."""

    def __init__(self, script: list[str], target: Callable[[str, dict[str, Any]], bool]) -> None:
        self.script, self.fired = list(script), 0
        self.faults = DynamoFaults(self.fires, lambda options: options[0], target)

    def fires(self, name: str) -> bool:
        if not self.script or self.script[0] != name:
            return False
        self.script.pop(0)
        self.fired += 1
        return True


@pytest.fixture
def aim(created: Any) -> Iterator[Callable[..., Aimed]]:
    """`aim(fault, target, times=1)`: `fault` on the first `times` calls `target` picks; or
    `aim([fault, ...], target)`: those faults in turn (the DynamoDB fault layer, `dynamo_faults.py`)."""
    made: list[Aimed] = []

    def make(fault: str | list[str], target: Callable[[str, dict[str, Any]], bool], times: int = 1) -> Aimed:
        aimed = Aimed([fault] * times if isinstance(fault, str) else fault, target)
        aimed.faults.attach(aws.dynamodb())
        aimed.faults.armed = True
        made.append(aimed)
        return aimed

    yield make
    for aimed in made:
        aimed.faults.armed = False


def on_table(operation: str, table: str) -> Callable[[str, dict[str, Any]], bool]:
    """Picks `operation` on `table` (for a transaction: any of its items on `table`)."""

    def target(called: str, body: dict[str, Any]) -> bool:
        if called != operation:
            return False
        if operation == "TransactWriteItems":
            return any(table in json.dumps(item) for item in body["TransactItems"])
        return str(body.get("TableName", "")).endswith(table)

    return target
