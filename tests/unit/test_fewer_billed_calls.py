"""The calls AWS bills per request, fewer, and nothing lost for it: the domain, over in-memory stores.

- A small body rides on the job item (no S3 PUT, no GET); a larger one is stored in S3; both are
  answered the same.
- The scheduler lets held jobs go ten to a `SendMessageBatch`; one SQS refused stays held for the
  next run.
- A dispatcher records that work went to the endpoint at most every `WORK_SENT_EVERY`.
"""

from __future__ import annotations

from datetime import timedelta

from stratus_core.dispatch import WORK_SENT_EVERY
from stratus_core.jobs import INLINE_BODY_BYTES, JobStatus
from stratus_core.tenants import TenantCreate
from tests.memory import MemoryWorld, chat_request


def world_with_tenant(**options: int) -> MemoryWorld:
    world = MemoryWorld(**options)
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme"))
    return world


def test_a_small_body_rides_on_the_job_until_it_is_packed_and_no_object_is_written() -> None:
    world = world_with_tenant()
    request = chat_request(content="hello")

    job = world.intake.accept(request)

    assert job.body == request.model_dump_json()
    assert world.objects.objects == {}  # nothing in S3
    assert world.dispatch() == 1
    (pack_key,) = world.objects.objects
    assert pack_key.startswith("packs/") and request.job_id.encode() in world.objects.objects[pack_key]
    stored = world.job_store.get("acme", request.job_id)
    assert stored is not None and stored.status is JobStatus.DISPATCHED and stored.body is None
    world.run_endpoint()
    done = world.job_store.get("acme", request.job_id)
    assert done is not None and done.status is JobStatus.COMPLETED


def test_a_body_over_the_limit_is_stored_in_s3_and_answered_the_same() -> None:
    request = chat_request(content="x")
    size = len(request.model_dump_json().encode())
    at_limit, over_limit = world_with_tenant(inline_body_bytes=size), world_with_tenant(inline_body_bytes=size - 1)

    inline = at_limit.intake.accept(request)
    stored = over_limit.intake.accept(request)

    assert inline.body is not None and at_limit.objects.objects == {}
    assert stored.body is None and set(over_limit.objects.objects) == {stored.body_key}
    for world in (at_limit, over_limit):
        world.dispatch()
        world.run_endpoint()
        done = world.job_store.get("acme", request.job_id)
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.result is not None and done.result["choices"][0]["message"]["content"] == "echo: x"


def test_the_default_limit_keeps_a_chat_request_inline_and_a_long_prompt_in_s3() -> None:
    world = world_with_tenant()

    short = world.intake.accept(chat_request(content="what is the capital of France?"))
    long = world.intake.accept(chat_request(content="lorem ipsum " * (INLINE_BODY_BYTES // 12 + 1)))

    assert short.body is not None
    assert long.body is None and long.body_key in world.objects.objects


def held_lines(world: MemoryWorld, count: int) -> list[str]:
    deadline = world.clock() + timedelta(hours=24)
    return [world.intake.accept(chat_request(), "batch", deadline=deadline).job_id for _ in range(count)]


def test_held_jobs_are_let_go_in_batches_and_one_sqs_refused_stays_held_for_the_next_run() -> None:
    world = world_with_tenant()  # one instance in service: held work runs at once ("up anyway")
    jobs = held_lines(world, 12)
    world.batch_requests.refuse_in_next_batch = 1

    first = world.scheduler.run()

    assert first.released == 11
    sent = {message.job_id for message in world.batch_requests.messages}
    (kept,) = set(jobs) - sent
    assert world.job_store.held_summary()[0] == 1  # the refused one is still held, nothing is lost

    second = world.scheduler.run()

    assert second.released == 1
    assert world.batch_requests.messages[-1].job_id == kept
    assert world.job_store.held_summary()[0] == 0
    world.dispatch()
    world.run_endpoint()
    assert all(world.job_store.get("acme", j).status is JobStatus.COMPLETED for j in jobs)  # type: ignore[union-attr]


def test_the_dispatcher_records_work_sent_at_most_every_thirty_seconds() -> None:
    world = world_with_tenant()
    recorded: list[object] = []
    world.dispatcher._work_sent = recorded.append  # the scheduler table's write
    start = world.clock()

    for offset in (0, 10, 25, 31, 45, 62):  # a pack dispatched at each of these seconds
        world.clock.now = start + timedelta(seconds=offset)
        world.intake.accept(chat_request())
        world.dispatch()

    assert timedelta(seconds=30) == WORK_SENT_EVERY
    assert recorded == [start, start + timedelta(seconds=31), start + timedelta(seconds=62)]
