"""The endpoint's history: what the scheduler records, and the cold starts and instance-hours a
console shows from it, on series worked out by hand.

The series (times from T0, the start of a 4-hour window): the endpoint is at zero before the
window; at 10 min a request asks for an instance, which comes into service at 15 min (a 300 s cold
start); a second instance runs from 45 to 75 min; the last one goes at 105 min; at 180 min another
start is asked for and is still starting at the window's end. In service: 1 × 30 min + 2 × 30 min
+ 1 × 30 min = 2.0 instance-hours, where an endpoint sized for the peak (2) and never scaled would
have billed 4 h × 2 = 8.0.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

# Imported at collection, as Lambda imports a handler at a cold start (see test_scheduler_failures)
from scheduler import app as scheduler_app
from stratus_core.endpoint_history import (
    ColdStart,
    RunRecord,
    always_on_instance_hours,
    cold_starts,
    instance_hours,
    worth_recording,
)
from stratus_core.jobs import RequestMessage
from stratus_core.tenants import TenantCreate
from tests.helpers import FakeContext
from tests.memory import Clock, MemoryWorld, chat_request
from tests.unit.test_scheduler_failures import published_metrics

T0 = 1_800_000_000.0
HOURS = 4
END = T0 + HOURS * 3600


def run(minute: float, in_service: int, desired: int, reason: str = "", **counts: int) -> RunRecord:
    values = {"interactive": 0, "released": 0, "waiting": 0, "release": 0, **counts}
    return RunRecord(at=T0 + minute * 60, in_service=in_service, desired=desired, reason=reason, **values)


SERIES = [
    run(-10, 0, 0, "no work"),  # the record just before the window
    run(10, 0, 1, "interactive 3", interactive=3),
    run(11, 0, 1, "interactive 5", interactive=5),
    run(15, 1, 1, "interactive 5", interactive=5),
    run(45, 2, 2, "interactive 300", interactive=300),
    run(75, 1, 1, "interactive 2", interactive=2),
    run(105, 0, 0, "no work; scale in to zero: no work for 300 s"),
    run(180, 0, 1, "deferrable 40 deadline", waiting=40),
]


def test_a_start_runs_from_the_run_that_asks_at_zero_to_the_first_that_finds_an_instance_in_service() -> None:
    assert cold_starts(SERIES) == [
        ColdStart(asked_at=T0 + 600, in_service_at=T0 + 900, seconds=300.0),
        ColdStart(asked_at=T0 + 10_800, in_service_at=None, seconds=None),  # still starting
    ]


def test_instance_hours_integrate_the_instances_in_service_as_a_step_function_over_the_window() -> None:
    assert instance_hours(SERIES, T0, END) == 2.0
    assert always_on_instance_hours(SERIES, HOURS) == 8.0


def test_a_record_before_the_window_counts_only_from_the_window_start_and_nothing_counts_before_the_first() -> None:
    up_before = [run(-30, 1, 1), run(30, 0, 0)]  # one instance from before the window until 30 min in
    assert instance_hours(up_before, T0, END) == 0.5
    assert instance_hours(up_before[1:], T0, END) == 0.0  # the only record says zero from 30 min on
    assert instance_hours([run(60, 1, 1)], T0, END) == 3.0  # unknown before 60 min: counted from there
    assert instance_hours([], T0, END) == 0.0


def test_an_endpoint_never_seen_in_service_is_compared_with_one_always_on_instance() -> None:
    assert always_on_instance_hours([], 24) == 24.0
    assert always_on_instance_hours([run(0, 0, 0)], 24) == 24.0
    assert cold_starts([run(0, 0, 0), run(1, 0, 0)]) == []


def test_a_run_is_worth_recording_when_it_differs_in_anything_but_its_time_or_the_last_is_an_hour_old() -> None:
    last = run(0, 0, 0, "no work")
    assert worth_recording(last, None)
    assert not worth_recording(run(59, 0, 0, "no work"), last)
    assert worth_recording(run(60, 0, 0, "no work"), last)  # the hourly point
    assert worth_recording(run(1, 0, 0, "no work", waiting=1), last)
    assert worth_recording(run(1, 0, 0, "other reason"), last)
    assert worth_recording(run(1, 0, 1, "no work"), last)


def idle_world() -> MemoryWorld:
    """The in-memory world with its endpoint at zero and nothing to do, at a whole minute."""
    world = MemoryWorld(Clock(datetime(2026, 11, 28, 0, 0, tzinfo=UTC)))
    world.control.instances = world.control.desired = 0
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme"))
    return world


def test_an_idle_endpoint_records_its_first_run_and_then_one_an_hour() -> None:
    # GIVEN an idle endpoint at zero
    world = idle_world()
    first = world.clock().timestamp()

    # WHEN the scheduler runs once a minute for two hours
    runs = []
    for _ in range(121):
        runs.append(world.scheduler.run())
        world.clock.advance(minutes=1)

    # THEN it recorded the first run and one an hour, each saved its state, and the item keeps the last
    assert [r.at for r in world.run_history.runs.values()] == [first, first + 3600, first + 7200]
    assert [r.recorded for r in runs].count(True) == 3
    assert world.scheduler_memory.version == 121
    assert world.scheduler_memory.last_run == RunRecord(
        at=first + 7200, in_service=0, desired=0, interactive=0, released=0, waiting=0, release=0, reason="no work"
    )


def test_a_run_that_sees_something_new_is_recorded_with_what_it_saw_decided_and_let_go() -> None:
    world = idle_world()
    world.scheduler.run()
    world.clock.advance(minutes=1)

    # WHEN a request waits on the interactive lane
    world.requests.send(RequestMessage(tenant_id="acme", job_id="job_1"))
    world.scheduler.run()

    # THEN that run is recorded: the backlog, the instance it asked for, and why
    last = list(world.run_history.runs.values())[-1]
    assert last == RunRecord(
        at=world.clock().timestamp(),
        in_service=0,
        desired=1,
        interactive=1,
        released=0,
        waiting=0,
        release=0,
        reason="interactive 1",
    )


def test_a_record_that_cannot_be_written_is_counted_and_the_run_goes_on_and_the_next_run_writes_it() -> None:
    # GIVEN the run history fails its writes
    world = idle_world()
    world.run_history.broken = True
    deadline = world.clock() + timedelta(hours=24)
    world.intake.accept(chat_request(), "batch", deadline=deadline)

    # WHEN the scheduler runs
    failed = world.scheduler.run()

    # THEN the run decided, saved its state and counted the failed record, without raising
    assert (failed.saved, failed.errors, failed.history_errors, failed.recorded) == (True, 0, 1, False)
    assert world.run_history.runs == {} and world.scheduler_memory.last_run is None

    # AND the next run, the history back, records what it sees
    world.run_history.broken = False
    world.clock.advance(minutes=1)
    again = world.scheduler.run()
    assert (again.recorded, again.history_errors) == (True, 0)
    assert [r.waiting for r in world.run_history.runs.values()] == [1]


def test_the_scheduler_function_publishes_the_failed_record_and_does_not_fail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = idle_world()
    world.run_history.broken = True
    monkeypatch.setattr(scheduler_app, "services", SimpleNamespace(scheduler=world.scheduler))

    answer: dict[str, Any] = scheduler_app.lambda_handler(
        {"source": "aws.events", "detail-type": "Scheduled Event"}, FakeContext()
    )

    assert (answer["recorded"], answer["errors"]) == (False, 0)
    assert published_metrics(capsys.readouterr().out) == {"SchedulerRuns": [1.0], "SchedulerHistoryErrors": [1.0]}


def test_the_report_shows_the_window_after_the_record_before_it_and_the_scheduler_state() -> None:
    # GIVEN an endpoint started from zero by a request, in service three runs later
    world = idle_world()
    world.control.starts_at_once = False
    world.scheduler.run()  # 00:00 idle
    world.clock.advance(hours=2)
    world.requests.send(RequestMessage(tenant_id="acme", job_id="job_1"))
    asked = world.clock().timestamp()
    world.scheduler.run()  # 02:00 asks for one instance
    world.clock.advance(minutes=1)
    world.scheduler.run()  # 02:01 unchanged: not recorded
    world.clock.advance(minutes=4)
    world.control.instances = 1
    world.scheduler.run()  # 02:05 in service
    world.clock.advance(minutes=55)

    # WHEN an operator asks, at 03:00, for the last hour
    report = world.endpoint_history.report(1)

    # THEN the runs start with the one before the window, and the numbers follow from them
    assert report.now == asked + 3600 and report.hours == 1
    assert [(r.at - asked, r.in_service, r.desired) for r in report.runs] == [
        (-7200.0, 0, 0),  # 00:00, before the window: the chart starts at zero instances
        (0.0, 0, 1),
        (300.0, 1, 1),
    ]
    assert report.cold_starts == [ColdStart(asked_at=asked, in_service_at=asked + 300, seconds=300.0)]
    assert report.instance_hours == round(55 / 60, 6)
    assert report.always_on_instance_hours == 1.0
    assert report.scheduler == world.scheduler_memory.state
