"""The scheduler function on moto, through the real handlers, against the fake endpoint's control plane:
held work and an endpoint at zero, flex requests, and no instance bought for a backlog that does not
need it. (When the endpoint runs over a day is `stratus simulate`'s; the policy's arithmetic is
tests/unit/test_scheduling.py; the local endpoint obeying it is tests/local_cloud/test_scheduler.py.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from stratus_core.keys import IssuedKey, Principal, Scope
from stratus_core.pricing import load_catalog
from stratus_core.services import Services
from tests.helpers import ApiResponse, principal_of

from .conftest import Pipeline
from .test_batches import chat_line, start_batch

Api = Callable[..., ApiResponse]
MODEL = "smollm2-135m-instruct"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello there model"}], "max_tokens": 16}


@pytest.fixture
def tenant(make_tenant: Callable[..., IssuedKey]) -> Principal:
    return principal_of(make_tenant("acme", scopes=[Scope.BATCH, Scope.INFERENCE, Scope.USAGE]))


def job_status(call_api: Api, caller: Principal, job_id: str) -> str:
    return str(call_api("GET", f"/v1/jobs/{job_id}", principal=caller).body["status"])


def cost_today(tenant_id: str) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return Services().usage.report(tenant_id, today, today).totals.model_dump(mode="json")


def test_batch_lines_held_at_zero_do_not_start_the_endpoint_and_run_once_a_request_wakes_it(
    call_api: Api, tenant: Principal, pipeline: Pipeline
) -> None:
    pipeline.endpoint.instances = pipeline.endpoint.desired = 0
    batch = start_batch(call_api, tenant, [chat_line(i) for i in range(5)])
    pipeline.batches.drain()

    assert pipeline.schedule() == 0  # 5 lines, a 24 h window: slack for hours, nothing worth an instance
    assert pipeline.endpoint.capacity_calls == [] and pipeline.queue_depth("BatchRequestsQueue") == 0

    job_id = call_api("POST", "/v1/chat/completions", CHAT, principal=tenant, headers={"prefer": "respond-async"})
    pipeline.requests.drain()  # dispatched: the endpoint queues it at zero instances, as SageMaker does
    assert pipeline.schedule() == 0  # asks for one instance; nothing is in service yet to release to
    assert pipeline.endpoint.capacity_calls == [1]

    pipeline.run()  # the instance is up: the held lines go to it (up anyway) and everything finishes

    assert job_status(call_api, tenant, job_id.body["id"]) == "completed"
    done = call_api("GET", f"/v1/batches/{batch['id']}", principal=tenant).body
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 5


def test_a_backlog_that_one_instance_finishes_in_time_buys_one_instance_not_more(
    call_api: Api, tenant: Principal, pipeline: Pipeline
) -> None:
    pipeline.endpoint.instances = pipeline.endpoint.desired = 0
    pipeline.endpoint.starts_at_once = False  # a cold start: the instance stays starting
    for _ in range(20):
        call_api("POST", "/v1/chat/completions", CHAT, principal=tenant, headers={"prefer": "respond-async"})
    pipeline.requests.drain()

    for _ in range(3):  # three runs during the cold start, the backlog unchanged
        pipeline.schedule()

    # 20 requests at InstanceRequestsPerSecond 3.0 are 6.7 s of one instance, under the 30 s drain
    # target: one instance, asked for once (target tracking saw an infinite backlog per instance)
    assert pipeline.endpoint.capacity_calls == [1] and pipeline.endpoint.desired == 1


def test_a_flex_request_waits_held_answers_flex_waiting_and_costs_half(
    services: Services, call_api: Api, tenant: Principal, pipeline: Pipeline
) -> None:
    flex = {**CHAT, "service_tier": "flex"}
    sdk = {"x-stainless-retry-count": "0", "idempotency-key": "flex-1"}

    first = call_api("POST", "/v1/chat/completions", flex, principal=tenant, headers=sdk)

    assert first.status == 503  # no wait inside the function: it is held for a warm endpoint
    error = first.body["error"]
    assert (error["code"], first.headers["Retry-After"], first.headers["x-should-retry"]) == (
        "flex_waiting",
        "60",
        "true",
    )
    job_id = first.headers["x-stratus-job-id"]
    assert job_id in error["message"] and job_status(call_api, tenant, job_id) == "queued"
    assert pipeline.queue_depth("RequestsQueue") == 0  # not on the interactive lane

    pipeline.run()  # the endpoint is up: the scheduler lets it go
    retry = call_api(
        "POST", "/v1/chat/completions", flex, principal=tenant, headers={**sdk, "x-stainless-retry-count": "1"}
    )

    assert retry.status == 200 and retry.body["id"] == f"chatcmpl-{job_id}"
    assert retry.body["service_tier"] == "flex"
    usage = retry.body["usage"]
    full = load_catalog().cost(MODEL, usage["prompt_tokens"], usage["completion_tokens"])
    totals = cost_today("acme")
    assert totals["requests"] == 1 and Decimal(totals["cost"]) == full.total / 2
    assert services.tenants.get("acme").in_flight == 0


def test_an_unknown_service_tier_is_a_400_naming_it(call_api: Api, tenant: Principal) -> None:
    answer = call_api("POST", "/v1/chat/completions", {**CHAT, "service_tier": "priority"}, principal=tenant)

    assert answer.status == 400 and answer.body["error"]["param"] == "service_tier"
