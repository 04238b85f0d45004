"""The batch function's domain over in-memory stores: lines become jobs through the same intake as
interactive requests, the quota turns lines away one by one, and the files come out right."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratus_core.batches.models import BatchCreate, BatchMessage, BatchStatus, StoredBatch
from stratus_core.errors import NotFound
from stratus_core.tenants import TenantCreate, TenantLimits
from tests.memory import MemoryWorld

MODEL = "smollm2-135m-instruct"


def line(i: int, content: str | None = None) -> str:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content or f"question {i}"}], "max_tokens": 5}
    return json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n"


def submit(world: MemoryWorld, text: str) -> str:
    file = world.files.create("acme", "in.jsonl", "batch", text.encode())
    request = BatchCreate(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    return world.batches.create("acme", request).id


def world_with_tenant(**limits: int) -> MemoryWorld:
    world = MemoryWorld()
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme", limits=TenantLimits(**limits)))
    return world


def test_a_batch_completes_with_an_output_line_per_request_and_exact_usage() -> None:
    world = world_with_tenant()
    batch_id = submit(world, "".join(line(i) for i in range(5)))

    world.run()

    batch = world.batches.get("acme", batch_id)
    assert batch.status is BatchStatus.COMPLETED
    assert (batch.request_counts.total, batch.request_counts.completed) == (5, 5)
    assert batch.output_file_id is not None and batch.error_file_id is None
    output = [json.loads(x) for x in world.files.content("acme", batch.output_file_id).decode().splitlines()]
    assert [x["custom_id"] for x in output] == [f"c{i}" for i in range(5)]
    told = sum(x["response"]["body"]["usage"]["total_tokens"] for x in output)
    assert batch.usage.total_tokens == told
    assert world.usage.report("acme", world.clock().date(), world.clock().date()).totals.total_tokens == told


def test_lines_the_monthly_quota_cannot_admit_fail_alone_with_429_insufficient_quota() -> None:
    # each line reserves its worst case (146 tokens of prompt bound + 5): two fit in 400, the rest do not
    world = world_with_tenant(tokens_per_month=400)
    batch_id = submit(world, "".join(line(i) for i in range(4)))

    world.run()

    batch = world.batches.get("acme", batch_id)
    assert (batch.status, batch.request_counts.completed, batch.request_counts.failed) == (BatchStatus.COMPLETED, 2, 2)
    assert batch.error_file_id is not None
    errors = [json.loads(x) for x in world.files.content("acme", batch.error_file_id).decode().splitlines()]
    assert {(e["response"]["status_code"], e["error"]["code"]) for e in errors} == {(429, "insufficient_quota")}
    assert all(e["error"]["message"].startswith("tokens_per_month limit reached") for e in errors)
    assert {e["response"]["body"]["error"]["type"] for e in errors} == {"insufficient_quota"}


def test_a_model_failure_and_a_bad_input_are_told_with_the_same_status_as_to_an_interactive_client() -> None:
    world = world_with_tenant()
    batch_id = submit(world, line(0) + line(1, content="FAIL_ME"))

    world.run()

    batch = world.batches.get("acme", batch_id)
    assert batch.error_file_id is not None
    (error,) = [json.loads(x) for x in world.files.content("acme", batch.error_file_id).decode().splitlines()]
    assert (error["custom_id"], error["response"]["status_code"], error["error"]["code"]) == (
        "c1",
        400,
        "invalid_request",
    )


def test_a_start_delivered_twice_makes_each_job_once() -> None:
    world = MemoryWorld(max_pack_size=2)  # chunks of two lines: 3 lines are two chunks
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme"))
    batch_id = submit(world, "".join(line(i) for i in range(3)))
    (start,) = world.batch_queue.take()

    world.batch_worker.handle(start)
    world.batch_worker.handle(start)  # SQS delivered it again

    jobs = world.job_store.for_batch("acme", batch_id)
    assert sorted(job.job_id.removeprefix(batch_id) for job in jobs) == ["-c00000n2", "-c00001n1"]
    reserved = world.admission_store.months[("acme", world.clock().strftime("%Y-%m"))].requests
    assert reserved == 2  # one reservation a chunk
    world.run()
    assert world.batches.get("acme", batch_id).request_counts.completed == 3


def test_cancelling_releases_the_unfinished_and_closes_the_batch() -> None:
    world = world_with_tenant()
    batch_id = submit(world, "".join(line(i) for i in range(3)))
    world.run_batches()  # started: three queued jobs, nothing dispatched

    world.batches.cancel("acme", batch_id)
    world.run()

    batch = world.batches.get("acme", batch_id)
    assert (batch.status, batch.request_counts.failed) == (BatchStatus.CANCELLED, 3)
    assert world.admission_store.months[("acme", world.clock().strftime("%Y-%m"))].tokens == 0
    assert world.endpoint.invoked == 0  # the cancelled jobs were skipped by the dispatcher


@pytest.mark.parametrize("first_to_close", ["the second delivery", "the first delivery"])
def test_two_finalizers_at_once_leave_one_output_file_and_one_error_file(
    monkeypatch: pytest.MonkeyPatch, first_to_close: str
) -> None:
    """SQS delivers a finalize message at least once, and two deliveries may be processed at the
    same time. Here the first finalizer is held after writing its files, before it closes the
    batch, while the second one (the same message, delivered again) finds the batch finalizing."""
    # GIVEN a batch with one answered and one failed request, whose finalize is delivered twice
    world = world_with_tenant()
    batch_id = submit(world, line(0) + line(1, content="FAIL_ME"))
    again = BatchMessage(action="finalize", tenant_id="acme", batch_id=batch_id)
    close = world.batch_store.transition
    held: list[bool] = []

    def close_held_back(
        batch: StoredBatch, to: BatchStatus, allowed_from: set[BatchStatus], sets: dict[str, Any]
    ) -> bool:
        if allowed_from != {BatchStatus.FINALIZING} or held:
            return close(batch, to, allowed_from, sets)
        held.append(True)  # the first finalizer wrote its files and is about to close the batch
        if first_to_close == "the second delivery":
            world.batch_worker.handle(again)
            return close(batch, to, allowed_from, sets)
        seen_by_second = world.batches.get("acme", batch_id)
        closed = close(batch, to, allowed_from, sets)
        world.batch_worker.finalize(seen_by_second)
        return closed

    monkeypatch.setattr(world.batch_store, "transition", close_held_back)

    # WHEN both finalizers run, interleaved
    world.run()

    # THEN the batch names one output file and one error file, and the tenant sees exactly those
    batch = world.batches.get("acme", batch_id)
    assert held == [True]
    assert (batch.status, batch.request_counts.completed, batch.request_counts.failed) == (BatchStatus.COMPLETED, 1, 1)
    listed = [f for f in world.files.list("acme").data if f.purpose == "batch_output"]
    assert sorted(f.id for f in listed) == sorted([batch.output_file_id, batch.error_file_id])
    assert batch.output_file_id is not None and batch.error_file_id is not None
    output = world.files.content("acme", batch.output_file_id).decode().splitlines()
    errors = world.files.content("acme", batch.error_file_id).decode().splitlines()
    assert [json.loads(x)["custom_id"] for x in output] == ["c0"]
    assert [json.loads(x)["custom_id"] for x in errors] == ["c1"]
    assert {f.id: f.bytes for f in listed} == {
        batch.output_file_id: len(world.files.content("acme", batch.output_file_id)),
        batch.error_file_id: len(world.files.content("acme", batch.error_file_id)),
    }


def test_a_late_finalizer_never_brings_back_a_file_the_tenant_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second delivery of a finalize is held while the first closes the batch and the tenant,
    seeing it completed, deletes its output and error files; then the second writes them."""
    # GIVEN a batch with one answered and one failed request, whose finalize is delivered twice
    world = world_with_tenant()
    batch_id = submit(world, line(0) + line(1, content="FAIL_ME"))
    close = world.batch_store.transition
    held: list[StoredBatch] = []

    def second_finalizer_held(
        batch: StoredBatch, to: BatchStatus, allowed_from: set[BatchStatus], sets: dict[str, Any]
    ) -> bool:
        if allowed_from == {BatchStatus.FINALIZING} and not held:
            held.append(world.batches.get("acme", batch_id))  # the second finds the batch finalizing
        return close(batch, to, allowed_from, sets)

    monkeypatch.setattr(world.batch_store, "transition", second_finalizer_held)
    world.run()
    batch = world.batches.get("acme", batch_id)
    assert batch.status is BatchStatus.COMPLETED and batch.output_file_id and batch.error_file_id

    # WHEN the tenant deletes both files, and then the held finalizer goes on
    world.files.delete("acme", batch.output_file_id)
    world.files.delete("acme", batch.error_file_id)
    world.batch_worker.finalize(held[0])

    # THEN the files stay deleted: not listed, not readable, their content gone
    assert [f.id for f in world.files.list("acme").data if f.purpose == "batch_output"] == []
    for file_id in (batch.output_file_id, batch.error_file_id):
        with pytest.raises(NotFound):
            world.files.content("acme", file_id)
    stored = {f"files/acme/{batch.output_file_id}.jsonl", f"files/acme/{batch.error_file_id}.jsonl"}
    assert stored.isdisjoint(world.objects.objects)
    assert world.batches.get("acme", batch_id).status is BatchStatus.COMPLETED


def test_a_zero_monthly_quota_fails_every_batch_line_at_once_and_closes_the_batch() -> None:
    # GIVEN a tenant whose monthly quota is 0 (the only limit the batch lane counts against)
    world = world_with_tenant(tokens_per_month=0)
    batch_id = submit(world, "".join(line(i) for i in range(3)))

    # WHEN the batch runs
    world.run()

    # THEN each line failed with a reason that says no wait helps, nothing is left to redeliver
    batch = world.batches.get("acme", batch_id)
    assert (batch.status, batch.request_counts.failed, batch.output_file_id) == (BatchStatus.COMPLETED, 3, None)
    assert batch.error_file_id is not None
    errors = [json.loads(x) for x in world.files.content("acme", batch.error_file_id).decode().splitlines()]
    assert {(e["response"]["status_code"], e["error"]["code"]) for e in errors} == {(429, "insufficient_quota")}
    assert {e["error"]["message"] for e in errors} == {
        "the tenant's tokens_per_month is 0: no request can be admitted until it is raised; do not retry"
    }
    assert world.batch_queue.messages == world.batch_requests.messages == []
    assert world.endpoint.invoked == 0


def test_zero_per_minute_and_in_flight_limits_do_not_hold_a_batch_back() -> None:
    # the batch lane counts against the month only: an operator who shuts interactive traffic off
    # with rpm 0 or max_in_flight 0 still has the tenant's batches run
    world = world_with_tenant(requests_per_minute=0, max_in_flight=0)
    batch_id = submit(world, "".join(line(i) for i in range(2)))

    world.run()

    batch = world.batches.get("acme", batch_id)
    assert (batch.status, batch.request_counts.completed) == (BatchStatus.COMPLETED, 2)


def test_a_chunk_answered_by_a_pack_whose_dispatch_was_never_recorded_keeps_every_answer() -> None:
    """The dispatcher sent the chunk's pack, then could not record it (`mark_dispatched` failed):
    the chunk is still queued, without an output location, when that pack's answers arrive. They
    are what the batch's output file must hold, not "no result" for every line."""
    world = world_with_tenant()
    batch_id = submit(world, "".join(line(i) for i in range(2)))
    world.run_batches()
    world.schedule()
    recorded = world.job_store.mark_dispatched

    def unrecorded(*args: Any, **kwargs: Any) -> bool:
        world.job_store.mark_dispatched = recorded  # type: ignore[method-assign]
        raise RuntimeError("DynamoDB answered 500")

    world.job_store.mark_dispatched = unrecorded  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        world.dispatch()
    world.run()  # the pack's notification, and nothing dispatched again

    batch = world.batches.get("acme", batch_id)
    assert (batch.status, batch.request_counts.completed) == (BatchStatus.COMPLETED, 2)
    output = [json.loads(x) for x in world.files.content("acme", batch.output_file_id or "").decode().splitlines()]
    assert [x["custom_id"] for x in output] == ["c0", "c1"]
    assert batch.error_file_id is None
