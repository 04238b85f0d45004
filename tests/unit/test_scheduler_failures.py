"""One held job whose write fails does not stop the scheduler, and nothing runs twice for it.

The scheduler sends the held jobs' messages, then lets each one sent go (`let_go`, DynamoDB's
`UpdateItem ... REMOVE waiting`). When that write raises for one job (a 500 still failing after
botocore's retries), the others are still let go, the state is saved, the error is counted in
`SchedulerErrors`, and the invocation fails at the end, so that the functions' error alarm fires.
The job whose write failed had its message sent: it stays held until it is dispatched (which ends
its hold) or the next run sends it again, and the dispatcher runs it once either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

# Imported at collection, as Lambda imports a handler at a cold start: X-Ray's recorder makes its UDP
# socket then (it sends nothing, tracing is off), before the unit tests' socket guard is up.
from scheduler import app as scheduler_app
from stratus_core.jobs import Job, JobStatus
from stratus_core.tenants import TenantCreate
from tests.helpers import FakeContext
from tests.memory import MemoryWorld, chat_request

HELD = 12


def world_with_held_lines() -> tuple[MemoryWorld, list[str]]:
    """One instance in service (held work runs at once: "up anyway") and 12 held batch lines."""
    world = MemoryWorld()
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme"))
    deadline = world.clock() + timedelta(hours=24)
    jobs = [world.intake.accept(chat_request(), "batch", deadline=deadline).job_id for _ in range(HELD)]
    return world, jobs


def let_go_failing_once_for(world: MemoryWorld, job_id: str) -> list[str]:
    """`let_go` raises for `job_id` the first time, as DynamoDB's 500 after botocore's retries;
    returns the ids of the jobs it was asked to let go, in order."""
    let_go: Callable[[Job, datetime], bool] = world.job_store.let_go
    asked: list[str] = []

    def failing(job: Job, at: datetime) -> bool:
        asked.append(job.job_id)
        if job.job_id == job_id and asked.count(job_id) == 1:
            message = "Internal server error (reached max retries: 9)"
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": message}}, "UpdateItem")
        return let_go(job, at)

    world.job_store.let_go = failing  # type: ignore[method-assign]
    return asked


def status(world: MemoryWorld, job_id: str) -> JobStatus:
    stored = world.job_store.get("acme", job_id)
    assert stored is not None
    return stored.status


def test_a_held_job_whose_let_go_fails_stays_held_and_the_others_are_let_go_and_the_state_saved() -> None:
    # GIVEN 12 held lines, and the let_go of the third in release order fails
    world, jobs = world_with_held_lines()
    failing = world.job_store.held(HELD)[2].job_id
    asked = let_go_failing_once_for(world, failing)

    # WHEN the scheduler runs
    run = world.scheduler.run()

    # THEN every message was sent, the 11 others were let go after the failure too, the failure is
    # counted, and the state is saved
    assert sorted(m.job_id for m in world.batch_requests.messages) == sorted(jobs)
    assert len(asked) == HELD and asked[2] == failing
    assert (run.released, run.errors, run.saved) == (HELD - 1, 1, True)
    assert world.scheduler_memory.version == 1
    assert world.job_store.waiting == {("acme", failing)}  # still held: its message went, its hold did not end


def test_the_scheduler_function_counts_the_failed_let_go_and_fails_its_invocation_after_saving(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the scheduler function over the in-memory world, and one held line whose let_go fails
    world, _ = world_with_held_lines()
    let_go_failing_once_for(world, world.job_store.held(HELD)[0].job_id)
    monkeypatch.setattr(scheduler_app, "services", SimpleNamespace(scheduler=world.scheduler))

    # WHEN it is invoked on its schedule
    with pytest.raises(scheduler_app.SchedulerIncomplete, match="1 held job"):
        scheduler_app.lambda_handler({"source": "aws.events", "detail-type": "Scheduled Event"}, FakeContext())

    # THEN the invocation failed only after the others were let go and the state saved, and the
    # error was published with the run's other metrics
    assert len(world.job_store.waiting) == 1 and world.scheduler_memory.version == 1
    assert published_metrics(capsys.readouterr().out) == {
        "SchedulerRuns": [1.0],
        "DesiredInstances": [1.0],
        "InServiceInstances": [1.0],
        "HeldRequests": [float(HELD)],
        "ReleasedRequests": [float(HELD - 1)],
        "SchedulerErrors": [1.0],
    }


def published_metrics(out: str) -> dict[str, Any]:
    """The values of each metric in Powertools' embedded metric format lines, by name."""
    found: dict[str, Any] = {}
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                found.update({metric["Name"]: blob[metric["Name"]] for metric in directive["Metrics"]})
    return found


@pytest.mark.parametrize("deliveries", ["together", "one after the other"])
def test_a_job_sent_again_after_its_let_go_failed_runs_once_and_is_billed_once(deliveries: str) -> None:
    # GIVEN a run whose let_go of one job failed, and a second run before the dispatcher took its
    # message: the second run sends it again (and lets it go)
    world, jobs = world_with_held_lines()
    again = world.job_store.held(HELD)[0].job_id
    let_go_failing_once_for(world, again)
    assert world.scheduler.run().errors == 1
    second = world.scheduler.run()
    assert (second.released, second.errors, world.job_store.waiting) == (1, 0, set())
    messages = world.batch_requests.take()
    assert [m.job_id for m in messages].count(again) == 2

    # WHEN the dispatcher gets both messages, in one delivery or in two
    if deliveries == "together":
        reports = [world.dispatcher.dispatch({str(i): m for i, m in enumerate(messages)})]
    else:
        last = max(i for i, m in enumerate(messages) if m.job_id == again)
        first = {str(i): m for i, m in enumerate(messages) if i != last}
        reports = [world.dispatcher.dispatch(first), world.dispatcher.dispatch({str(last): messages[last]})]
    world.run_endpoint()

    # THEN the job went to the endpoint in one pack, once, and was billed once, as every other job
    assert [len(r.skipped) for r in reports] == ([1] if deliveries == "together" else [0, 1])
    packs = [world.objects.read_pack(f"s3://{world.objects.bucket}/packs/{p}.json") for r in reports for p in r.packs]
    assert sorted(request.job_id for pack in packs if pack for request in pack.requests) == sorted(jobs)
    assert {status(world, job_id) for job_id in jobs} == {JobStatus.COMPLETED}
    assert world.usage.report("acme", world.clock().date(), world.clock().date()).totals.requests == HELD


def test_a_job_dispatched_after_its_let_go_failed_is_no_longer_held_and_not_sent_again() -> None:
    # GIVEN a run whose let_go of one job failed
    world, jobs = world_with_held_lines()
    failed = world.job_store.held(HELD)[0].job_id
    let_go_failing_once_for(world, failed)
    world.scheduler.run()

    # WHEN the dispatcher takes its message before the next run
    world.dispatch()

    # THEN dispatching it ended its hold: the next run sees nothing held and sends nothing again
    assert status(world, failed) is JobStatus.DISPATCHED
    assert world.job_store.held_summary() == (0, None)
    nothing = world.scheduler.run()
    assert (nothing.released, nothing.errors, world.batch_requests.messages) == (0, 0, [])
    assert nothing.observation is not None and nothing.observation.waiting == 0
    world.run_endpoint()
    assert {status(world, job_id) for job_id in jobs} == {JobStatus.COMPLETED}
