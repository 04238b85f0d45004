"""`GET /admin/endpoint` on moto: the scheduler function records its runs in the Usage table, only the
ones that change something, and the API function answers with them, the cold start they show and
the instance-hours the endpoint billed.

The scheduler and the API share one clock (a minute per run, from a whole second), and the endpoint
is the tests' fake control plane: at zero, a request waiting on the interactive lane starts it, the
instance comes into service 300 s later, and `IdleScaleInMinutes` (6) after the request is gone the
endpoint goes back to zero.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from stratus_core.adapters import aws
from stratus_core.services import Services
from tests.helpers import ApiResponse, principal_of
from tests.memory import Clock

from .conftest import Pipeline, on_table

Api = Callable[..., ApiResponse]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline) -> Clock:
    """One clock for the scheduler function and the API function (their per-process services)."""
    import api.app
    import scheduler.app

    now = Clock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(scheduler.app, "services", Services(clock=now))
    monkeypatch.setattr(api.app, "services", Services(clock=now))
    return now


def recorded_runs(pipeline: Pipeline) -> int:
    """The run history's items in the Usage table."""
    answer = boto3.client("dynamodb").query(
        TableName=pipeline.created.refs["UsageTable"],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ENDPOINT#{Services().settings.endpoint_name}"}},
        Select="COUNT",
    )
    return int(answer["Count"])


def schedule_at(pipeline: Pipeline, clock: Clock, start: float, second: int) -> None:
    clock.now = datetime.fromtimestamp(start + second, UTC)
    assert pipeline.schedule() is not None


def test_the_endpoint_route_shows_the_runs_that_changed_something_a_cold_start_and_the_instance_hours(
    call_api: Api, pipeline: Pipeline, clock: Clock
) -> None:
    # GIVEN an endpoint at zero whose instances take a while to start
    pipeline.endpoint.instances = pipeline.endpoint.desired = 0
    pipeline.endpoint.starts_at_once = False
    sqs = boto3.client("sqs")
    requests_queue = pipeline.created.refs["RequestsQueue"]
    start = clock().timestamp()

    # WHEN the scheduler runs while nothing happens, a request waits, the instance starts, and the
    # request is gone
    schedule_at(pipeline, clock, start, 0)
    schedule_at(pipeline, clock, start, 60)
    assert recorded_runs(pipeline) == 1  # the second run changed nothing: no record
    sqs.send_message(QueueUrl=requests_queue, MessageBody="{}")
    schedule_at(pipeline, clock, start, 120)  # asks for an instance
    schedule_at(pipeline, clock, start, 180)  # still starting: nothing new
    pipeline.endpoint.instances = 1
    schedule_at(pipeline, clock, start, 420)  # in service
    for message in sqs.receive_message(QueueUrl=requests_queue, MaxNumberOfMessages=10)["Messages"]:
        sqs.delete_message(QueueUrl=requests_queue, ReceiptHandle=message["ReceiptHandle"])
    schedule_at(pipeline, clock, start, 480)  # idle, kept warm
    schedule_at(pipeline, clock, start, 780)  # idle for IdleScaleInMinutes: to zero
    schedule_at(pipeline, clock, start, 840)  # at zero
    before = recorded_runs(pipeline)
    schedule_at(pipeline, clock, start, 900)  # at zero, unchanged

    # THEN only the runs that changed something were written, and the last changed nothing
    assert (before, recorded_runs(pipeline)) == (6, 6)
    assert pipeline.endpoint.capacity_calls == [1, 0]

    # AND the route shows them, the cold start from the ask to the instance in service, and the
    # 420 s it was in service (from 420 s to 840 s)
    clock.now = datetime.fromtimestamp(start + 1800, UTC)
    answer = call_api("GET", "/admin/endpoint", query={"hours": "1"})
    assert answer.status == 200
    body: dict[str, Any] = answer.body
    runs = [(r["at"] - start, r["in_service"], r["desired"], r["interactive"], r["reason"]) for r in body["runs"]]
    assert runs == [
        (0, 0, 0, 0, "no work"),
        (120, 0, 1, 1, "interactive 1"),
        (420, 1, 1, 1, "interactive 1"),
        (480, 1, 1, 0, "no work; idle for 60 s"),
        (780, 1, 0, 0, "no work; scale in to zero: no work for 360 s"),
        (840, 0, 0, 0, "no work"),
    ]
    assert {key: body[key] for key in ("object", "endpoint_name", "now", "hours")} == {
        "object": "endpoint",
        "endpoint_name": Services().settings.endpoint_name,
        "now": start + 1800,
        "hours": 1,
    }
    assert body["cold_starts"] == [{"asked_at": start + 120, "in_service_at": start + 420, "seconds": 300.0}]
    assert (body["instance_hours"], body["always_on_instance_hours"]) == (round(420 / 3600, 6), 1.0)
    assert {r["release"] for r in body["runs"]} == {0} and {r["waiting"] for r in body["runs"]} == {0}
    assert body["scheduler"] == {
        "low_since": None,
        "asked_at": None,
        "start_attempts": 0,
        "retry_at": None,
        "busy_at": start + 420,
        "interactive_at": start + 420,
    }

    # AND a later window starts with the record just before it: one instance in service at 600 s
    clock.now = datetime.fromtimestamp(start + 4200, UTC)
    later = call_api("GET", "/admin/endpoint", query={"hours": "1"}).body
    assert [(r["at"] - start, r["in_service"]) for r in later["runs"]] == [(480, 1), (780, 1), (840, 0)]
    assert (later["cold_starts"], later["instance_hours"]) == ([], round(240 / 3600, 6))


@pytest.mark.parametrize("hours", ["0", "169", "a day"])
def test_the_window_is_1_to_168_hours(call_api: Api, hours: str) -> None:
    answer = call_api("GET", "/admin/endpoint", query={"hours": hours})

    assert answer.status == 400 and answer.body["error"]["param"] == "hours"


def test_the_endpoint_route_needs_the_admin_scope(call_api: Api, make_tenant: Callable[..., Any]) -> None:
    tenant = principal_of(make_tenant("acme"))

    answer = call_api("GET", "/admin/endpoint", principal=tenant)

    assert answer.status == 403


def test_a_run_whose_record_stays_throttled_still_scales_and_saves_and_the_next_run_records(
    pipeline: Pipeline, clock: Clock, aim: Any
) -> None:
    """The record's `PutItem` throttled through all of botocore's attempts: the invocation does not
    fail, the scaling and the state stand; the next run, seeing the same, writes the record."""
    pipeline.endpoint.instances = pipeline.endpoint.desired = 0
    pipeline.endpoint.starts_at_once = False  # the next run sees the same as this one
    boto3.client("sqs").send_message(QueueUrl=pipeline.created.refs["RequestsQueue"], MessageBody="{}")
    start = clock().timestamp()
    aimed = aim("ddb_throttle", on_table("PutItem", "UsageTable"), times=aws.MAX_ATTEMPTS)

    schedule_at(pipeline, clock, start, 0)  # asserts the invocation did not fail

    assert (aimed.fired, pipeline.failed_schedules, recorded_runs(pipeline)) == (aws.MAX_ATTEMPTS, 0, 0)
    assert pipeline.endpoint.capacity_calls == [1]
    assert Services().scheduler_memory.load().version == 1
    schedule_at(pipeline, clock, start, 60)
    assert recorded_runs(pipeline) == 1
    assert Services().scheduler_memory.load().last_run.at == start + 60  # type: ignore[union-attr]
