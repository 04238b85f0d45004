"""A request's whole life in the domain, over in-memory stores: intake, dispatch, results, sweep.

Nothing admitted is lost (every failure after admission gives the reservation back), a duplicate
or late notification changes nothing, and the sweeper finishes what a lost notification left.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from stratus_core.errors import Limit, LimitExceeded
from stratus_core.jobs import INLINE_BODY_BYTES, Job, JobStatus
from stratus_core.tenants import TenantCreate, TenantLimits
from tests.memory import MemoryWorld, chat_request

MODEL = "smollm2-135m-instruct"


def world_with_tenant(inline_body_bytes: int = INLINE_BODY_BYTES, **limits: int) -> MemoryWorld:
    world = MemoryWorld(max_pack_size=4, inline_body_bytes=inline_body_bytes)
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme", limits=TenantLimits(**limits)))
    return world


def ask(world: MemoryWorld, content: str = "hello there") -> Job:
    return world.intake.accept(chat_request(content=content))


def status(world: MemoryWorld, job: Job) -> JobStatus:
    stored = world.job_store.get(job.tenant_id, job.job_id)
    assert stored is not None
    return stored.status


def test_a_request_is_dispatched_in_a_pack_completed_and_billed_what_its_result_says() -> None:
    world = world_with_tenant()
    jobs = [ask(world, f"question {i}") for i in range(6)]

    world.dispatch()
    assert world.endpoint.invoked == 2  # packs of at most 4
    assert {status(world, job) for job in jobs} == {JobStatus.DISPATCHED}
    world.run_endpoint()

    assert {status(world, job) for job in jobs} == {JobStatus.COMPLETED}
    finished = world.job_store.get("acme", jobs[0].job_id)
    assert finished is not None and finished.result is not None and finished.usage is not None
    assert finished.result["choices"][0]["message"]["content"] == "echo: question 0"
    billed = world.usage.report("acme", world.clock().date(), world.clock().date()).totals
    assert billed.requests == 6
    assert billed.total_tokens == sum(world.job_store.get("acme", j.job_id).usage.total_tokens for j in jobs)  # type: ignore[union-attr]
    assert world.tenants.get("acme").in_flight == 0


def test_a_busy_endpoint_returns_the_messages_and_a_retry_dispatches_them() -> None:
    world = world_with_tenant()
    job = ask(world)
    world.endpoint.busy = 1

    world.dispatch()
    assert status(world, job) is JobStatus.QUEUED and len(world.requests.messages) == 1
    world.run()

    assert status(world, job) is JobStatus.COMPLETED


def test_a_refused_request_leaves_nothing_behind() -> None:
    world = world_with_tenant(requests_per_minute=1)
    ask(world)
    with pytest.raises(LimitExceeded) as refused:
        ask(world)
    assert refused.value.limit is Limit.REQUESTS_PER_MINUTE
    assert len(world.job_store.items) == 1 and len(world.requests.messages) == 1


def test_a_request_that_cannot_be_queued_fails_and_gives_its_slot_back() -> None:
    world = world_with_tenant(max_in_flight=1)
    world.requests.broken = True

    with pytest.raises(ConnectionError):
        ask(world)

    (job,) = world.job_store.items.values()
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "enqueue_failed"
    assert world.tenants.get("acme").in_flight == 0


def test_a_job_whose_body_is_gone_fails_in_the_dispatcher_and_is_not_invoked() -> None:
    world = world_with_tenant(inline_body_bytes=0)  # every body too large for the job item: in S3
    job = ask(world)
    world.objects.delete(job.body_key)

    world.dispatch()

    assert status(world, job) is JobStatus.FAILED
    failed = world.job_store.get("acme", job.job_id)
    assert failed is not None and failed.error is not None and failed.error.code == "request_missing"
    assert world.endpoint.invoked == 0
    assert world.tenants.get("acme").in_flight == 0


def test_a_failing_request_fails_alone_and_a_failed_pack_fails_all_of_its_jobs() -> None:
    world = world_with_tenant()
    good, bad = ask(world, "fine"), ask(world, "FAIL_ME")
    world.run()
    assert (status(world, good), status(world, bad)) == (JobStatus.COMPLETED, JobStatus.FAILED)

    world.endpoint.fail_packs = True
    crashed = [ask(world, f"q{i}") for i in range(2)]
    world.run()
    assert {status(world, job) for job in crashed} == {JobStatus.FAILED}
    assert world.tenants.get("acme").in_flight == 0


def test_duplicate_and_late_notifications_change_nothing() -> None:
    world = world_with_tenant()
    job = ask(world)
    world.dispatch()
    outputs = world.endpoint.run()
    (completed, _, output) = outputs[0]
    result = world.objects.read_result(output)
    assert completed == "Completed" and result is not None

    assert world.results.apply_result(result, output) == 1
    assert world.results.apply_result(result, output) == 0  # duplicate
    assert status(world, job) is JobStatus.COMPLETED
    assert world.usage.report("acme", world.clock().date(), world.clock().date()).totals.requests == 1


def test_the_sweeper_finishes_a_job_whose_notification_was_lost_and_expires_one_with_no_output() -> None:
    # GIVEN two jobs in two packs: the first pack's output exists but its notification was lost,
    # the second pack never produced anything
    world = MemoryWorld(max_pack_size=1)
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme"))
    found, lost = ask(world, "found"), ask(world, "lost")
    world.dispatch()
    first, second = world.endpoint.pending
    world.endpoint.pending = [first]
    world.endpoint.run()
    world.endpoint.pending = []

    # WHEN the sweeper runs after ResultCheckSeconds (5 min), then past the deadline (1 h)
    world.clock.advance(minutes=6)
    soon = world.sweeper.run()
    world.clock.advance(hours=2)
    late = world.sweeper.run()

    # THEN the first is completed from its output, the second expires, and nothing stays held
    assert (soon.recovered, soon.overdue) == (1, 0)
    assert (late.recovered, late.overdue, late.resolved) == (0, 1, 1)
    assert (status(world, found), status(world, lost)) == (JobStatus.COMPLETED, JobStatus.EXPIRED)
    assert world.tenants.get("acme").in_flight == 0
    assert world.usage.report("acme", world.clock().date(), world.clock().date()).totals.requests == 1
    assert world.sweeper.run().resolved == 0
    assert second not in world.endpoint.pending


def test_a_late_output_is_looked_for_again_later_and_found_before_the_deadline() -> None:
    world = world_with_tenant()
    job = ask(world)
    world.dispatch()
    dispatched = world.clock()

    world.clock.now = dispatched + timedelta(minutes=5, seconds=1)
    assert world.sweeper.run().recovered == 0  # looked: nothing yet, look again after as long as it waited
    world.endpoint.run()  # the output appears; the notification is lost
    world.clock.now = dispatched + timedelta(minutes=5, seconds=2)
    assert world.sweeper.run().recovered == 0  # too soon for the next look
    world.clock.now = dispatched + timedelta(minutes=10, seconds=3)
    assert world.sweeper.run().recovered == 1

    assert status(world, job) is JobStatus.COMPLETED


def test_one_job_whose_files_cannot_be_read_does_not_stop_the_sweep_of_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On AWS a read the role may not make is a 403 (`AccessDenied`), for a missing object too when
    the role lacks `s3:ListBucket`. Before, the first such read aborted the whole sweep: overdue jobs
    never expired and their reservations stayed held."""
    # GIVEN two jobs in two packs, past their deadline, with no output; one job's output cannot be read
    world = MemoryWorld(max_pack_size=1)
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme"))
    unreadable, other = ask(world, "unreadable"), ask(world, "other")
    world.dispatch()
    world.endpoint.pending = []
    stuck = world.job_store.get("acme", unreadable.job_id)
    assert stuck is not None and stuck.output_location
    read_result = world.objects.read_result

    def denied(uri: str) -> object:
        if uri == stuck.output_location:
            raise PermissionError("AccessDenied")
        return read_result(uri)

    monkeypatch.setattr(world.objects, "read_result", denied)

    # WHEN the sweeper runs past the deadline
    world.clock.advance(hours=2)
    report = world.sweeper.run()

    # THEN the other job expired and gave back its slot; the unreadable one is counted (once as a
    # late notification, once as overdue), and stays for the next run
    assert (report.overdue, report.resolved, report.errors) == (2, 1, 2)
    assert (status(world, unreadable), status(world, other)) == (JobStatus.DISPATCHED, JobStatus.EXPIRED)
    assert world.tenants.get("acme").in_flight == 1
