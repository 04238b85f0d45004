"""The in-memory stores the domain tests use (`tests/memory.py`) behave as the DynamoDB adapters do.

Each check runs twice: against the in-memory world and against `Services` over moto, with the same
clock. A difference in what a store guarantees (idempotent admission, the refused limit's name, one
terminal transition, conditional job and batch moves) fails here before a domain test can pass on
a fake that lies.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from stratus_core.adapters.dynamo.sparse_index import INDEX_SHARDS, shard_of
from stratus_core.batches.models import BatchStatus, StoredBatch
from stratus_core.contract import JobError, Usage
from stratus_core.errors import Conflict, Limit, LimitExceeded, NotFound
from stratus_core.files import FileWasDeleted
from stratus_core.jobs import Job, JobStatus, JobSummary, new_job_id
from stratus_core.services import Services
from stratus_core.tenants import TenantCreate, TenantLimits
from tests.memory import Clock, MemoryWorld, chat_request

MODEL = "smollm2-135m-instruct"


@pytest.fixture(params=["memory", "dynamodb"])
def stack(request: pytest.FixtureRequest) -> Iterator[Any]:
    clock = Clock()
    if request.param == "memory":
        yield MemoryWorld(clock)
        return
    request.getfixturevalue("created")
    services = Services(clock=clock)
    services.clock = clock  # type: ignore[attr-defined]  # the same name as the memory world's
    yield services


def tenant(stack: Any, **limits: int) -> None:
    stack.tenants.create(TenantCreate(tenant_id="acme", name="Acme", limits=TenantLimits(**limits)))


def job(stack: Any) -> Job:
    return stack.intake.accept(chat_request(max_tokens=20))  # type: ignore[no-any-return]


def test_admitting_the_same_job_twice_counts_it_once(stack: Any) -> None:
    tenant(stack)
    first = stack.admission.reserve("acme", "job-1", MODEL, prompt_tokens_bound=30, max_tokens=20)
    again = stack.admission.reserve("acme", "job-1", MODEL, prompt_tokens_bound=30, max_tokens=20)
    assert again == first
    assert stack.tenants.get("acme").in_flight == 1


@pytest.mark.parametrize(
    ("limits", "refused"),
    [
        ({"max_in_flight": 1}, Limit.MAX_IN_FLIGHT),
        ({"requests_per_minute": 1}, Limit.REQUESTS_PER_MINUTE),
        ({"tokens_per_minute": 120}, Limit.TOKENS_PER_MINUTE),
        ({"tokens_per_month": 120}, Limit.TOKENS_PER_MONTH),
    ],
)
def test_the_second_request_is_refused_by_the_limit_it_hits(stack: Any, limits: dict[str, int], refused: Limit) -> None:
    tenant(stack, **limits)
    stack.admission.reserve("acme", "a", MODEL, prompt_tokens_bound=50, max_tokens=50)
    with pytest.raises(LimitExceeded) as hit:
        stack.admission.reserve("acme", "b", MODEL, prompt_tokens_bound=50, max_tokens=50)
    assert hit.value.limit is refused


def test_a_job_ends_once_and_its_usage_is_billed_once(stack: Any) -> None:
    tenant(stack)
    admitted = job(stack)
    assert stack.settlement.complete(admitted, Usage.of(5, 6), {"object": "chat.completion"}) is True
    assert stack.settlement.complete(admitted, Usage.of(5, 6), {"object": "chat.completion"}) is False
    failed = JobError(code="inference_failed", message="late")
    assert stack.settlement.fail(admitted, JobStatus.FAILED, failed) is False

    stored = stack.job_store.get("acme", admitted.job_id)
    assert (stored.status, stored.usage, stored.result) == (
        JobStatus.COMPLETED,
        Usage.of(5, 6),
        {"object": "chat.completion"},
    )
    today = stack.clock().date()
    assert stack.usage.report("acme", today, today).totals.total_tokens == 11
    assert stack.tenants.get("acme").in_flight == 0


def test_a_failed_job_releases_its_reservation_once(stack: Any) -> None:
    tenant(stack, max_in_flight=1)
    admitted = job(stack)
    error = JobError(code="inference_failed", message="crashed")
    assert stack.settlement.fail(admitted, JobStatus.FAILED, error) is True
    assert stack.settlement.fail(admitted, JobStatus.FAILED, error) is False
    reservation = stack.admission_store.get("acme", admitted.job_id)
    assert reservation is None or reservation.state.value == "released"  # no longer held (its job says why)
    job(stack)  # the slot is free again


def test_a_job_is_created_once_and_dispatched_once(stack: Any) -> None:
    tenant(stack)
    admitted = job(stack)
    stack.job_store.create(admitted)  # the same create again (a write that landed, retried): not a conflict
    with pytest.raises(Conflict):
        stack.job_store.create(admitted.model_copy(update={"model": "another-model"}))
    now = stack.clock()
    assert stack.job_store.mark_dispatched(admitted, "pack_1", "s3://b/out", "s3://b/fail", now) is True
    assert stack.job_store.mark_dispatched(admitted, "pack_2", "s3://b/out", "s3://b/fail", now) is False
    assert stack.job_store.get("acme", admitted.job_id).pack_id == "pack_1"
    # the sweeper looks at it ResultCheckSeconds (5 min) after it was created, then after as long as it waited
    assert stack.job_store.due(now + timedelta(minutes=4), 10) == []
    (late,) = stack.job_store.due(now + timedelta(minutes=6), 10)
    assert late.job_id == admitted.job_id
    stack.job_store.recheck_later(late, now + timedelta(minutes=6))
    assert stack.job_store.due(now + timedelta(minutes=11), 10) == []
    assert [j.job_id for j in stack.job_store.due(now + timedelta(minutes=13), 10)] == [admitted.job_id]
    # and at its deadline at the latest, however long it waited
    stack.job_store.recheck_later(late, admitted.deadline - timedelta(minutes=1))
    assert stack.job_store.due(admitted.deadline, 10) == []
    assert [j.job_id for j in stack.job_store.due(admitted.deadline + timedelta(seconds=1), 10)] == [admitted.job_id]


def test_a_held_job_is_let_go_once_and_dispatching_one_ends_its_hold(stack: Any) -> None:
    """The scheduler sends a held job's message, then lets it go; when that `let_go` failed, the job
    is still held with its message sent, and dispatching it must end its hold, or the scheduler would
    count it as held work and send it again every run until it finished."""
    tenant(stack)
    deadline = stack.clock() + timedelta(hours=24)
    let_go, dispatched = (stack.intake.accept(chat_request(max_tokens=20), "batch", deadline=deadline) for _ in "ab")
    assert stack.job_store.held_summary()[0] == 2

    assert stack.job_store.in_flight_count() == 0  # held is not in flight
    assert stack.job_store.due(deadline - timedelta(seconds=1), 10) == []  # nor due before its deadline

    now = stack.clock()
    assert stack.job_store.let_go(let_go, now) is True
    assert stack.job_store.let_go(let_go, now) is False  # let go already
    assert [held.job_id for held in stack.job_store.held(10)] == [dispatched.job_id]
    assert stack.job_store.mark_dispatched(dispatched, "pack_1", None, None, now) is True

    assert stack.job_store.held_summary() == (0, None)
    assert stack.job_store.held(10) == []
    assert stack.job_store.let_go(dispatched, now) is False
    # both are in flight now, and the sweeper looks at each ResultCheckSeconds after it went
    assert stack.job_store.in_flight_count() == 2
    assert stack.job_store.due(now + timedelta(minutes=4), 10) == []
    assert {j.job_id for j in stack.job_store.due(now + timedelta(minutes=6), 10)} == {let_go.job_id, dispatched.job_id}


def test_a_held_job_past_its_deadline_is_due(stack: Any) -> None:
    tenant(stack)
    deadline = stack.clock() + timedelta(hours=24)
    held = stack.intake.accept(chat_request(max_tokens=20), "batch", deadline=deadline)
    assert stack.job_store.due(deadline, 10) == []
    assert [j.job_id for j in stack.job_store.due(deadline + timedelta(seconds=1), 10)] == [held.job_id]


def job_ids_filling_every_shard(per_shard: int) -> list[str]:
    """Job ids (in the API's format) with exactly `per_shard` of them in each index shard, the
    shards interleaved so that admission order is not shard order."""
    by_shard: dict[str, list[str]] = {}
    candidate = 0
    while len(by_shard) < INDEX_SHARDS or any(len(ids) < per_shard for ids in by_shard.values()):
        job_id = f"job_{candidate:024x}"
        candidate += 1
        ids = by_shard.setdefault(shard_of(job_id), [])
        if len(ids) < per_shard:
            ids.append(job_id)
    return [ids[round_] for round_ in range(per_shard) for ids in by_shard.values()]


def admit_one_second_apart(stack: Any, job_ids: list[str]) -> list[Job]:
    tenant(stack, max_in_flight=1000, requests_per_minute=1000, tokens_per_minute=1_000_000)
    jobs = []
    for job_id in job_ids:
        stack.clock.advance(seconds=1)
        jobs.append(stack.intake.accept(chat_request(max_tokens=20).model_copy(update={"job_id": job_id})))
    return jobs


def test_the_sweeper_expires_overdue_jobs_in_every_index_shard(stack: Any) -> None:
    # GIVEN one job in each of the 16 shards of the sparse indexes, none of which ever finishes
    ids = job_ids_filling_every_shard(per_shard=1)
    admit_one_second_apart(stack, ids)

    # WHEN the sweeper runs past their deadline (the request TTL, 1 h)
    stack.clock.advance(hours=2)
    report = stack.sweeper.run()

    # THEN every one of them expired and gave its reservation back
    assert (report.overdue, report.resolved) == (INDEX_SHARDS, INDEX_SHARDS)
    assert {stack.job_store.get("acme", job_id).status for job_id in ids} == {JobStatus.EXPIRED}
    assert stack.tenants.get("acme").in_flight == 0
    assert stack.admission_store.pending_before(stack.clock(), 100) == []


def test_the_oldest_live_items_come_first_whichever_shard_they_are_in(stack: Any) -> None:
    # GIVEN 32 jobs, two per shard, admitted a second apart, and dispatched in the reverse order
    ids = job_ids_filling_every_shard(per_shard=2)
    jobs = admit_one_second_apart(stack, ids)
    dispatched_at = stack.clock()
    for offset, admitted in enumerate(reversed(jobs)):
        at = dispatched_at + timedelta(seconds=offset)
        assert stack.job_store.mark_dispatched(admitted, "pack_1", "s3://b/out", "s3://b/fail", at) is True

    # WHEN the sweeper's queries ask for fewer than there are, and for more
    later = stack.clock.advance(hours=2)

    # THEN the oldest come first across every shard, and a limit holds whatever the shards hold
    def ids_of(found: list[Any]) -> list[str]:
        return [item.job_id for item in found]

    assert ids_of(stack.job_store.due(later, 5)) == ids[:5]
    assert ids_of(stack.job_store.due(later, 100)) == ids
    assert ids_of(stack.admission_store.pending_before(later, 5)) == ids[:5]
    assert ids_of(stack.admission_store.pending_before(later, 100)) == ids


def test_a_tenants_recent_jobs_come_newest_first_page_after_page_without_batch_lines(stack: Any) -> None:
    tenant(stack)
    admitted = []
    for _ in range(5):
        request = chat_request().model_copy(update={"job_id": new_job_id(stack.clock())})
        admitted.append(stack.intake.accept(request))
        stack.clock.advance(seconds=1)
    line = admitted[0].model_copy(update={"job_id": "batch_" + "0" * 24 + "-0", "lane": "batch"})
    stack.job_store.create(line)
    newest_first = [job.job_id for job in reversed(admitted)]

    first = stack.job_store.recent("acme", 3, None)
    rest = stack.job_store.recent("acme", 3, first[-1].id)

    assert [summary.id for summary in first + rest] == newest_first
    assert first[0] == JobSummary.of(admitted[-1])
    assert stack.job_store.recent("acme", 3, rest[-1].id) == []
    assert stack.job_store.recent("globex", 3, None) == []


def test_tenants_come_a_page_at_a_time_each_once(stack: Any) -> None:
    for tenant_id in ("umbrella", "acme", "initech"):
        stack.tenants.create(TenantCreate(tenant_id=tenant_id, name=tenant_id.title()))

    first = stack.tenants.page(2, None)
    rest = stack.tenants.page(2, first.last_read)

    assert (len(first.tenants), first.has_more, len(rest.tenants), rest.has_more) == (2, True, 1, False)
    assert sorted(t.tenant_id for t in first.tenants + rest.tenants) == ["acme", "initech", "umbrella"]
    assert [t.tenant_id for t in first.tenants] == sorted(t.tenant_id for t in first.tenants)


def test_a_batch_moves_only_from_the_states_it_is_allowed_to_leave(stack: Any) -> None:
    batch = StoredBatch(
        id="batch_" + "0" * 24,
        tenant_id="acme",
        endpoint="/v1/chat/completions",
        input_file_id="file-" + "0" * 24,
        status=BatchStatus.VALIDATING,
        created_at=1,
        expires_at=2,
    )
    stack.batch_store.create(batch)
    stack.batch_store.create(batch)  # the same create again: not a conflict
    with pytest.raises(Conflict):
        stack.batch_store.create(batch.model_copy(update={"created_at": 3}))
    assert stack.batch_store.transition(batch, BatchStatus.IN_PROGRESS, {BatchStatus.VALIDATING}, {"in_progress_at": 5})
    assert not stack.batch_store.transition(batch, BatchStatus.FAILED, {BatchStatus.VALIDATING}, {})
    stored = stack.batch_store.get("acme", batch.id)
    assert (stored.status, stored.in_progress_at) == (BatchStatus.IN_PROGRESS, 5)


def test_a_deleted_file_stays_deleted_when_written_again(stack: Any) -> None:
    """A batch's output file has an id derived from the batch: a late finalizer writes it again
    after its tenant deleted it. The write is refused, and its content goes with it."""
    content = b'{"custom_id":"c0"}\n'
    stack.files.write("acme", "file-" + "1" * 24, "out.jsonl", "batch_output", content, 5)
    stack.files.write("acme", "file-" + "1" * 24, "out.jsonl", "batch_output", content, 5)  # a second finalizer
    assert stack.files.content("acme", "file-" + "1" * 24) == content

    stack.files.delete("acme", "file-" + "1" * 24)
    with pytest.raises(FileWasDeleted):
        stack.files.write("acme", "file-" + "1" * 24, "out.jsonl", "batch_output", content, 5)

    with pytest.raises(NotFound):
        stack.files.content("acme", "file-" + "1" * 24)
    assert stack.files.list("acme").data == []
    assert stack.objects.get_bytes("files/acme/" + "file-" + "1" * 24 + ".jsonl") is None


def test_the_run_history_gives_a_window_after_the_record_before_it_and_the_last_record_is_remembered(
    stack: Any,
) -> None:
    from stratus_core.endpoint_history import RunRecord

    t0 = stack.clock().timestamp()
    runs = [
        RunRecord(at=t0 + s, in_service=0, desired=d, interactive=0, released=0, waiting=0, release=0, reason=r)
        for s, d, r in [(0.0, 0, "no work"), (60.25, 1, "interactive 1"), (120.5, 1, "interactive 2")]
    ]
    for run in runs:
        stack.run_history.record(run)
    stack.run_history.record(runs[1])  # written again (a retried write): the same record

    assert stack.run_history.window(t0 + 30, t0 + 120.5) == runs
    assert stack.run_history.window(t0 + 60.25, t0 + 3600) == runs  # the first in the window is at its start
    assert stack.run_history.window(t0 + 200, t0 + 300) == runs[2:]
    assert stack.run_history.window(t0 - 100, t0 - 1) == []

    assert stack.scheduler_memory.save(stack.scheduler_memory.load().state, 0, runs[2]) is True
    assert stack.scheduler_memory.load().last_run == runs[2]
    assert stack.scheduler_memory.save(stack.scheduler_memory.load().state, 1) is True  # None keeps it
    assert stack.scheduler_memory.load().last_run == runs[2]
