"""Admission's limits, exact under concurrency, in the domain over the in-memory store (the same
checks run against DynamoDB on moto in `tests/integration/test_admission.py`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from stratus_core.errors import Limit, LimitExceeded, RequestExceedsLimit, TenantSuspended
from stratus_core.tenants import TenantCreate, TenantLimits, TenantStatus, TenantUpdate
from tests.memory import MemoryWorld

MODEL = "smollm2-135m-instruct"


def world_with_tenant(**limits: int) -> MemoryWorld:
    world = MemoryWorld()
    world.tenants.create(TenantCreate(tenant_id="acme", name="Acme", limits=TenantLimits(**limits)))
    return world


def race(world: MemoryWorld, threads: int, tokens: int) -> list[str]:
    start = threading.Barrier(threads)

    def attempt(i: int) -> str:
        start.wait()
        try:
            world.admission.reserve("acme", f"job-{i}", MODEL, prompt_tokens_bound=tokens // 2, max_tokens=tokens // 2)
        except LimitExceeded as refused:
            return refused.limit.value
        return "admitted"

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(attempt, range(threads)))


@pytest.mark.parametrize(
    ("limits", "admitted", "limit"),
    [
        ({"requests_per_minute": 10, "max_in_flight": 1000}, 10, Limit.REQUESTS_PER_MINUTE),
        ({"requests_per_minute": 1000, "tokens_per_minute": 1000, "max_in_flight": 1000}, 10, Limit.TOKENS_PER_MINUTE),
        ({"requests_per_minute": 1000, "tokens_per_month": 700, "max_in_flight": 1000}, 7, Limit.TOKENS_PER_MONTH),
        ({"requests_per_minute": 1000, "max_in_flight": 5}, 5, Limit.MAX_IN_FLIGHT),
    ],
)
def test_fifty_threads_admit_exactly_what_the_limit_allows(limits: dict[str, int], admitted: int, limit: Limit) -> None:
    world = world_with_tenant(**limits)

    results = race(world, 50, tokens=100)

    assert results.count("admitted") == admitted
    assert results.count(limit.value) == 50 - admitted


def test_a_request_larger_than_a_limit_could_ever_allow_is_refused_outright() -> None:
    world = world_with_tenant(tokens_per_minute=100)
    with pytest.raises(RequestExceedsLimit):
        world.admission.reserve("acme", "big", MODEL, prompt_tokens_bound=60, max_tokens=60)


def test_a_suspended_tenant_is_refused_and_its_counters_do_not_move() -> None:
    world = world_with_tenant()
    world.tenants.update("acme", TenantUpdate(status=TenantStatus.SUSPENDED))
    with pytest.raises(TenantSuspended):
        world.admission.reserve("acme", "a", MODEL, prompt_tokens_bound=10, max_tokens=10)
    assert world.admission_store.reservations == {}
