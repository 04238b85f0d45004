"""A client's retry attaches to the job its first attempt made, and a waiting client is told honestly
whether the model is starting: the protocol's domain, over in-memory stores."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stratus_core.endpoint_state import Capacity
from stratus_core.errors import IdempotencyMismatch, Limit, LimitIsZero
from stratus_core.inference import retry_identity
from stratus_core.jobs import JobStatus
from stratus_core.openai_types import ChatCompletionRequest
from stratus_core.tenants import TenantCreate, TenantLimits
from tests.memory import MemoryWorld

MODEL = "smollm2-135m-instruct"
BODY = '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}'
ROUTE = "/v1/chat/completions"


def world_with_tenant(**limits: int) -> MemoryWorld:
    world = MemoryWorld()
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme", limits=TenantLimits(**limits)))
    return world


def request(body: str = BODY) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate_json(body)


def sdk_attempt(world: MemoryWorld, attempt: int, body: str = BODY) -> tuple[str, bool]:
    """What the official SDK sends: the same body, `x-stainless-retry-count` counting the attempts."""
    identity = retry_identity("acme", "key_1", ROUTE, body, {"x-stainless-retry-count": str(attempt)})
    submitted = world.inference.submit("acme", request(body), identity)
    return submitted.job.job_id, submitted.attached


def test_an_sdk_retry_attaches_to_the_first_attempts_job_and_is_reserved_once() -> None:
    world = world_with_tenant()

    first, attached_first = sdk_attempt(world, 0)
    again, attached_again = sdk_attempt(world, 1)
    third, _ = sdk_attempt(world, 2)

    assert (attached_first, attached_again) == (False, True)
    assert first == again == third
    assert len(world.job_store.items) == 1
    assert world.tenants.get("acme").in_flight == 1
    month = world.admission_store.months[("acme", world.clock().strftime("%Y-%m"))]
    assert month.requests == 1


def test_a_retry_after_the_job_finished_gets_the_finished_job() -> None:
    world = world_with_tenant()
    first, _ = sdk_attempt(world, 0)
    world.run()

    again, attached = sdk_attempt(world, 1)

    assert (again, attached) == (first, True)
    assert world.job_store.get("acme", again).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    assert world.usage.report("acme", world.clock().date(), world.clock().date()).totals.requests == 1


def test_the_same_body_sent_again_as_a_new_request_is_a_new_job() -> None:
    world = world_with_tenant()
    first, _ = sdk_attempt(world, 0)
    second, attached = sdk_attempt(world, 0)  # a first attempt again: the user asked twice
    assert second != first and not attached
    assert sdk_attempt(world, 1)[0] == second  # a retry now attaches to the newest


def test_a_different_body_is_never_attached_to() -> None:
    world = world_with_tenant()
    first, _ = sdk_attempt(world, 0)
    other = BODY.replace('"hi"', '"hello"')
    second, attached = sdk_attempt(world, 1, other)  # its first attempt never arrived
    assert second != first and not attached


def test_requests_with_one_idempotency_key_share_one_job_and_a_different_body_is_refused() -> None:
    world = world_with_tenant()
    keyed = {"idempotency-key": "order-42"}

    first = world.inference.submit("acme", request(), retry_identity("acme", "key_1", ROUTE, BODY, keyed))
    second = world.inference.submit("acme", request(), retry_identity("acme", "key_2", ROUTE, BODY, keyed))

    assert (first.attached, second.attached) == (False, True)
    assert first.job.job_id == second.job.job_id
    other = BODY.replace('"hi"', '"hello"')
    with pytest.raises(IdempotencyMismatch):
        world.inference.submit("acme", request(other), retry_identity("acme", "key_1", ROUTE, other, keyed))
    assert len(world.job_store.items) == 1


def test_a_claim_expires_and_then_a_keyed_request_is_new() -> None:
    world = world_with_tenant()
    keyed = {"idempotency-key": "order-42"}
    first = world.inference.submit("acme", request(), retry_identity("acme", "key_1", ROUTE, BODY, keyed))
    world.clock.advance(hours=25)
    later = world.inference.submit("acme", request(), retry_identity("acme", "key_1", ROUTE, BODY, keyed))
    assert later.job.job_id != first.job.job_id and not later.attached


def test_a_client_that_cannot_retry_identically_writes_no_claim() -> None:
    assert retry_identity("acme", "key_1", ROUTE, BODY, {}) is None
    world = world_with_tenant()
    world.inference.submit("acme", request(), None)
    assert world.admission_store.claims == {}


def test_the_rate_window_counts_this_request() -> None:
    world = world_with_tenant(requests_per_minute=10, tokens_per_minute=10_000)
    world.clock.now = world.clock.now.replace(second=37)
    submitted = world.inference.submit("acme", request(), None)
    window = submitted.window
    assert window is not None
    reserved = world.admission_store.get("acme", submitted.job.job_id).tokens  # type: ignore[union-attr]
    assert (window.requests_limit, window.requests_remaining) == (10, 9)
    assert (window.tokens_limit, window.tokens_remaining) == (10_000, 10_000 - reserved)
    assert window.resets_in_seconds == 23


@pytest.mark.parametrize("limit", [Limit.REQUESTS_PER_MINUTE, Limit.TOKENS_PER_MINUTE, Limit.MAX_IN_FLIGHT])
def test_a_zero_limit_refuses_for_good(limit: Limit) -> None:
    world = world_with_tenant(**{limit.value: 0})
    with pytest.raises(LimitIsZero) as refused:
        world.inference.submit("acme", request(), None)
    assert refused.value.limit is limit
    assert world.job_store.items == {}


def test_a_request_waiting_on_an_endpoint_at_zero_is_told_the_model_is_starting_and_how_long_is_left() -> None:
    world = world_with_tenant()
    job = world.inference.submit("acme", request(), None).job
    scaling_since = world.clock() - timedelta(seconds=100)  # the expected cold start is 300 s

    world.endpoint_state.current = Capacity(instances=0, desired=1, changed_at=scaling_since)
    starting = world.inference.not_ready(job)
    world.endpoint_state.current = Capacity(instances=0, desired=1, changed_at=world.clock() - timedelta(seconds=290))
    nearly = world.inference.not_ready(job)
    world.endpoint_state.current = Capacity(instances=0, desired=0, changed_at=None)  # not asked to scale yet
    asleep = world.inference.not_ready(job)
    world.endpoint_state.current = Capacity(instances=1, desired=1, changed_at=scaling_since)
    running = world.inference.not_ready(job)
    world.endpoint_state.current = None
    unknown = world.inference.not_ready(job)

    assert (starting.code, starting.retry_after) == ("model_starting", 60)  # 200 s left, capped at 60
    assert (nearly.code, nearly.retry_after) == ("model_starting", 10)
    assert "about 10 s left" in str(nearly)
    assert (asleep.code, asleep.retry_after) == ("model_starting", 60)
    assert (running.code, running.retry_after) == ("still_running", 1)
    assert (unknown.code, unknown.retry_after) == ("still_running", 5)
    assert {starting.job_id, running.job_id} == {job.job_id}


def test_an_sdk_retry_of_a_failed_job_is_a_fresh_try_and_only_the_success_is_billed() -> None:
    world = world_with_tenant()
    first, _ = sdk_attempt(world, 0)
    world.endpoint.fail_packs = True
    world.run()  # the first attempt's job fails: a 502 the SDK retries
    assert world.job_store.get("acme", first).status is JobStatus.FAILED  # type: ignore[union-attr]

    world.endpoint.fail_packs = False
    again, attached = sdk_attempt(world, 1)
    world.run()

    assert again != first and not attached
    assert world.job_store.get("acme", again).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    assert world.usage.report("acme", world.clock().date(), world.clock().date()).totals.requests == 1
    assert sdk_attempt(world, 2) == (again, True)  # a later retry finds the one that completed


def test_a_keyed_retry_of_a_request_that_could_not_be_queued_is_a_fresh_try_billed_once() -> None:
    """The first attempt was admitted, stored, then could not be queued: its client got a 500
    (`enqueue_failed`), nothing ran and nothing was billed. A retry with the same Idempotency-Key runs
    the request afresh and takes over the key; it used to get that 500 again, for every retry until
    the key expired a day later (`make reliability` found it on the local cloud)."""
    world = world_with_tenant()
    keyed = {"idempotency-key": "order-42"}
    world.requests.broken = True
    with pytest.raises(ConnectionError):
        world.inference.submit("acme", request(), retry_identity("acme", "key_1", ROUTE, BODY, keyed))
    (failed,) = world.job_store.items.values()
    assert failed.error is not None and failed.error.code == "enqueue_failed"

    world.requests.broken = False
    retried = world.inference.submit("acme", request(), retry_identity("acme", "key_1", ROUTE, BODY, keyed))
    world.run()
    again = world.inference.submit("acme", request(), retry_identity("acme", "key_1", ROUTE, BODY, keyed))

    assert retried.job.job_id != failed.job_id and not retried.attached
    assert (again.job.job_id, again.attached) == (retried.job.job_id, True)  # the key now names the one that ran
    assert world.job_store.get("acme", retried.job.job_id).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    assert world.usage.report("acme", world.clock().date(), world.clock().date()).totals.requests == 1


def test_a_keyed_retry_of_a_job_that_failed_on_the_endpoint_gets_that_failure() -> None:
    world = world_with_tenant()
    keyed = {"idempotency-key": "order-43"}
    first = world.inference.submit("acme", request(), retry_identity("acme", "key_1", ROUTE, BODY, keyed))
    world.endpoint.fail_packs = True
    world.run()

    again = world.inference.submit("acme", request(), retry_identity("acme", "key_1", ROUTE, BODY, keyed))

    assert (again.job.job_id, again.attached, again.job.status) == (first.job.job_id, True, JobStatus.FAILED)
