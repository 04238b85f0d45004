"""Settlement, the one home of a job's end: billed once, released once, batches told once.

Domain tests over the in-memory stores (`tests/memory.py`): no moto, no sockets.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from stratus_core.admission import ReservationState
from stratus_core.contract import Choice, JobError, RequestResult, Usage
from stratus_core.jobs import Job, JobStatus
from stratus_core.tenants import TenantCreate, TenantLimits
from tests.memory import MemoryWorld, chat_request

MODEL = "smollm2-135m-instruct"
FAILED = JobError(code="inference_failed", message="the model crashed")


def chat(world: MemoryWorld, tenant: str = "acme", max_tokens: int = 50) -> Job:
    return world.intake.accept(chat_request(tenant, max_tokens=max_tokens))


def world_with_tenant(**limits: int) -> MemoryWorld:
    world = MemoryWorld()
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme", limits=TenantLimits(**limits)))
    return world


def test_completing_a_job_bills_the_servers_counts_once_and_frees_its_slot() -> None:
    world = world_with_tenant()
    job = chat(world)
    assert world.tenants.get("acme").in_flight == 1

    assert world.settlement.complete(job, Usage.of(12, 7), {"object": "chat.completion"}) is True
    assert world.settlement.complete(job, Usage.of(12, 7), {"object": "chat.completion"}) is False
    assert world.settlement.fail(job, JobStatus.FAILED, FAILED) is False

    report = world.usage.report("acme", world.clock().date(), world.clock().date())
    assert (report.totals.requests, report.totals.prompt_tokens, report.totals.completion_tokens) == (1, 12, 7)
    assert world.tenants.get("acme").in_flight == 0
    stored = world.job_store.get("acme", job.job_id)
    assert stored is not None and (stored.status, stored.usage) == (JobStatus.COMPLETED, Usage.of(12, 7))
    assert world.settlement.billed_tokens == 19


def test_a_failed_job_gives_its_tokens_back_and_bills_nothing() -> None:
    world = world_with_tenant(tokens_per_month=1000)
    job = chat(world, max_tokens=500)
    month = world.admission_store.months[("acme", world.clock().strftime("%Y-%m"))]
    assert month.tokens > 500

    assert world.settlement.fail(job, JobStatus.FAILED, FAILED) is True

    assert month.tokens == 0
    assert world.tenants.get("acme").in_flight == 0
    reservation = world.admission_store.get("acme", job.job_id)
    assert reservation is not None and reservation.state is ReservationState.RELEASED
    assert reservation.release_reason == "failed: inference_failed"
    assert world.usage.report("acme", world.clock().date(), world.clock().date()).data == []


def test_twenty_concurrent_completions_of_one_job_bill_it_once() -> None:
    world = world_with_tenant()
    job = chat(world)
    start = threading.Barrier(20)

    def complete(_: int) -> bool:
        start.wait()
        return world.settlement.complete(job, Usage.of(3, 4), {"object": "chat.completion"})

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(complete, range(20)))

    assert outcomes.count(True) == 1
    assert world.usage.report("acme", world.clock().date(), world.clock().date()).totals.total_tokens == 7


def test_a_result_for_a_job_whose_reservation_was_released_fails_it_unbilled() -> None:
    world = world_with_tenant()
    job = chat(world)
    assert world.settlement.release_unrecorded("acme", job.job_id, "storing failed") is True

    assert world.settlement.complete(job, Usage.of(3, 4), {"object": "chat.completion"}) is True

    stored = world.job_store.get("acme", job.job_id)
    assert stored is not None and stored.status is JobStatus.FAILED
    assert stored.error is not None and stored.error.code == "not_admitted"
    assert world.settlement.billed_tokens == 0


def test_an_orphaned_reservation_is_released_after_its_grace_and_only_once() -> None:
    world = world_with_tenant(max_in_flight=1)
    world.admission.reserve("acme", "job-crashed", MODEL, prompt_tokens_bound=10, max_tokens=10)

    assert world.settlement.release_orphans(timedelta(minutes=15)) == 0  # too recent
    world.clock.advance(minutes=16)
    assert world.settlement.release_orphans(timedelta(minutes=15)) == 1
    assert world.settlement.release_orphans(timedelta(minutes=15)) == 0
    assert world.tenants.get("acme").in_flight == 0


def test_a_batch_is_asked_to_finalize_exactly_when_its_last_request_ends() -> None:
    from stratus_core.batches.chunks import line_request_id
    from stratus_core.batches.models import BatchCreate

    world = MemoryWorld(max_pack_size=1)  # one line a chunk: three jobs
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme"))
    lines = "".join(
        f'{{"custom_id": "c{i}", "method": "POST", "url": "/v1/chat/completions", "body": '
        f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "q{i}"}}], "max_tokens": 5}}}}\n'
        for i in range(3)
    )
    file = world.files.create("acme", "in.jsonl", "batch", lines.encode())
    batch = world.batches.create(
        "acme", BatchCreate(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    )
    world.run_batches()  # start: three queued chunks
    jobs = sorted(world.job_store.for_batch("acme", batch.id), key=lambda job: job.job_id)
    assert len(jobs) == 3

    def answered(job: Job, line: int, completion: int) -> list[RequestResult]:
        choice = Choice(text="a", finish_reason="stop")
        usage = Usage.of(1, completion)
        return [
            RequestResult(job_id=line_request_id(job.job_id, line), tenant_id="acme", choices=[choice], usage=usage)
        ]

    world.settlement.complete_chunk(jobs[0], answered(jobs[0], 1, 1), "s3://memory-bucket/outputs/p.out")
    world.settlement.fail(jobs[1], JobStatus.FAILED, FAILED)
    assert [m.action for m in world.batch_queue.messages] == []  # one still running
    world.settlement.complete_chunk(jobs[2], answered(jobs[2], 3, 2), "s3://memory-bucket/outputs/p.out")
    # a duplicate asks again: its first delivery may have ended the job and then failed to ask
    # (finalizing twice writes the same files, tests/unit/test_batch_worker.py)
    world.settlement.complete_chunk(jobs[2], answered(jobs[2], 3, 2), "s3://memory-bucket/outputs/p.out")

    assert [m.action for m in world.batch_queue.messages] == ["finalize", "finalize"]
    counts = world.batches.get("acme", batch.id).request_counts
    assert (counts.total, counts.completed, counts.failed) == (3, 2, 1)
