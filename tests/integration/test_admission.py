"""Admission against DynamoDB (moto): exact accounting, refusals that name their limit, idempotency;
and settlement of what was admitted, through the one settlement service."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo import tenant_counters as tc
from stratus_core.adapters.dynamo.codec import from_item
from stratus_core.admission import AdmissionService
from stratus_core.contract import JobError, Usage
from stratus_core.errors import Limit, LimitExceeded, NotFound, RequestExceedsLimit, TenantSuspended
from stratus_core.jobs import Job, JobStatus, request_body_key
from stratus_core.keys import IssuedKey
from stratus_core.services import Services
from stratus_core.tenants import TenantLimitsPatch, TenantStatus, TenantUpdate

MODEL = "smollm2-135m-instruct"


def counters(tenant_id: str, month: str, minute: str) -> dict[str, int]:
    """The tenant item's counts for `month` and `minute` (0 when it counts another window)."""
    services = Services()
    key = {"tenant_id": {"S": tenant_id}}
    item = from_item(aws.dynamodb().get_item(TableName=services.settings.tenants_table, Key=key)["Item"])
    same_month, same_minute = item.get(tc.MONTH) == month, item.get(tc.MINUTE) == minute
    return {
        "month_tokens": int(item.get(tc.MONTH_TOKENS, 0)) if same_month else 0,
        "minute_tokens": int(item.get(tc.MINUTE_TOKENS, 0)) if same_minute else 0,
        "minute_requests": int(item.get(tc.MINUTE_REQUESTS, 0)) if same_minute else 0,
        "in_flight": services.tenants.get(tenant_id).in_flight,
    }


def fixed_clock(at: datetime) -> AdmissionService:
    return Services(clock=lambda: at).admission


def job_of(tenant_id: str, job_id: str) -> Job:
    """The job row an admitted request gets (what the intake writes after reserving)."""
    services = Services()
    found = services.job_store.get(tenant_id, job_id)
    if found is not None:
        return found
    reservation = services.admission_store.get(tenant_id, job_id)
    created = reservation.created_at if reservation else NOW
    job = Job(
        job_id=job_id,
        tenant_id=tenant_id,
        kind="chat",
        model=MODEL,
        status=JobStatus.QUEUED,
        created_at=created,
        deadline=created + timedelta(hours=1),
        body_key=request_body_key(tenant_id, job_id),
    )
    services.job_store.create(job)
    return job


def settle(tenant_id: str, job_id: str, usage: Usage, at: datetime | None = None) -> bool:
    """The job completes with the model server's `usage`, settled at `at`."""
    services = Services(clock=lambda: at or NOW)
    return services.settlement.complete(job_of(tenant_id, job_id), usage, {"object": "chat.completion"})


def release(tenant_id: str, job_id: str) -> bool:
    """The job fails: its reservation is given back."""
    error = JobError(code="inference_failed", message="endpoint failed")
    return Services(clock=lambda: NOW).settlement.fail(job_of(tenant_id, job_id), JobStatus.FAILED, error)


NOW = datetime(2026, 11, 28, 23, 12, 40, tzinfo=UTC)


def test_fifty_threads_admit_exactly_what_the_request_limit_allows(
    make_tenant: Callable[..., IssuedKey], linearizable_moto: None
) -> None:
    # GIVEN a tenant allowed 10 requests a minute (tokens and in-flight are not the constraint)
    make_tenant("acme", requests_per_minute=10, tokens_per_minute=10**9, max_in_flight=1000)
    admission = fixed_clock(NOW)
    start = threading.Barrier(50)

    def attempt(i: int) -> str:
        start.wait()
        try:
            admission.reserve("acme", f"job-{i}", MODEL, prompt_tokens_bound=100, max_tokens=50)
        except LimitExceeded as refused:
            return refused.limit.value
        return "admitted"

    # WHEN 50 threads try at once
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(attempt, range(50)))

    # THEN exactly 10 are admitted and each of the other 40 is told it was the request limit
    assert results.count("admitted") == 10
    assert results.count(Limit.REQUESTS_PER_MINUTE.value) == 40
    assert counters("acme", "2026-11", "2026-11-28T23:12") == {
        "month_tokens": 10 * 150,
        "minute_tokens": 10 * 150,
        "minute_requests": 10,
        "in_flight": 10,
    }


def test_fifty_threads_admit_exactly_what_the_token_limits_allow(
    make_tenant: Callable[..., IssuedKey], linearizable_moto: None
) -> None:
    # GIVEN 1,000 tokens a minute and 700 a month; each request reserves 100
    make_tenant("acme", requests_per_minute=1000, tokens_per_minute=1000, tokens_per_month=700, max_in_flight=1000)
    admission = fixed_clock(NOW)
    start = threading.Barrier(50)

    def attempt(i: int) -> str:
        start.wait()
        try:
            admission.reserve("acme", f"job-{i}", MODEL, prompt_tokens_bound=60, max_tokens=40)
        except LimitExceeded as refused:
            return refused.limit.value
        return "admitted"

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(attempt, range(50)))

    # THEN the month's 700 admit exactly 7 (the tighter of the two token limits)
    assert results.count("admitted") == 7
    assert results.count(Limit.TOKENS_PER_MONTH.value) == 43
    assert counters("acme", "2026-11", "2026-11-28T23:12")["month_tokens"] == 700


def test_fifty_threads_never_exceed_max_in_flight_and_settling_frees_slots(
    make_tenant: Callable[..., IssuedKey], linearizable_moto: None
) -> None:
    make_tenant("acme", requests_per_minute=1000, tokens_per_minute=10**9, max_in_flight=5)
    admission = fixed_clock(NOW)
    start = threading.Barrier(50)

    def attempt(i: int) -> str:
        start.wait()
        try:
            admission.reserve("acme", f"job-{i}", MODEL, prompt_tokens_bound=10, max_tokens=10)
        except LimitExceeded as refused:
            return refused.limit.value
        return f"job-{i}"

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(attempt, range(50)))
    admitted = [r for r in results if r.startswith("job-")]
    assert len(admitted) == 5
    assert results.count(Limit.MAX_IN_FLIGHT.value) == 45

    # WHEN one finishes, exactly one more fits
    settle("acme", admitted[0], Usage.of(5, 5))
    admission.reserve("acme", "job-after", MODEL, prompt_tokens_bound=10, max_tokens=10)
    with pytest.raises(LimitExceeded) as refused:
        admission.reserve("acme", "job-one-too-many", MODEL, prompt_tokens_bound=10, max_tokens=10)
    assert refused.value.limit is Limit.MAX_IN_FLIGHT
    assert refused.value.retry_after == 1


def test_refusals_name_the_limit_and_when_to_retry(make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme", requests_per_minute=100, tokens_per_minute=300, tokens_per_month=10_000, max_in_flight=100)
    admission = fixed_clock(NOW)  # 23:12:40, so the next minute is 20 s away
    admission.reserve("acme", "a", MODEL, prompt_tokens_bound=150, max_tokens=100)

    with pytest.raises(LimitExceeded) as refused:
        admission.reserve("acme", "b", MODEL, prompt_tokens_bound=51, max_tokens=0)

    assert refused.value.limit is Limit.TOKENS_PER_MINUTE
    assert refused.value.retry_after == 20
    assert "tokens_per_minute" in str(refused.value)


def test_monthly_quota_refusal_waits_for_next_month(make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme", tokens_per_month=200, tokens_per_minute=10_000)
    admission = fixed_clock(NOW)
    admission.reserve("acme", "a", MODEL, prompt_tokens_bound=150, max_tokens=50)

    with pytest.raises(LimitExceeded) as refused:
        admission.reserve("acme", "b", MODEL, prompt_tokens_bound=1, max_tokens=0)

    assert refused.value.limit is Limit.TOKENS_PER_MONTH
    # 2026-11-28T23:12:40 to 2026-12-01T00:00:00
    assert refused.value.retry_after == 2 * 86_400 + 47 * 60 + 20


def test_a_request_bigger_than_a_limit_is_refused_outright(make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme", tokens_per_minute=1000)
    with pytest.raises(RequestExceedsLimit) as refused:
        fixed_clock(NOW).reserve("acme", "a", MODEL, prompt_tokens_bound=500, max_tokens=501)
    assert refused.value.limit is Limit.TOKENS_PER_MINUTE


def test_suspended_tenant_is_refused_with_403_error(services: Services, make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme")
    services.tenants.update("acme", TenantUpdate(status=TenantStatus.SUSPENDED))
    with pytest.raises(TenantSuspended):
        fixed_clock(NOW).reserve("acme", "a", MODEL, prompt_tokens_bound=10, max_tokens=10)


def test_model_outside_the_tenants_list_is_not_found(services: Services, make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme")
    services.tenants.update("acme", TenantUpdate(allowed_models=["other-model"]))
    with pytest.raises(NotFound):
        fixed_clock(NOW).reserve("acme", "a", MODEL, prompt_tokens_bound=10, max_tokens=10)
    with pytest.raises(NotFound):
        fixed_clock(NOW).reserve("acme", "b", "no-such-model", prompt_tokens_bound=10, max_tokens=10)


def test_raised_limits_apply_to_the_next_request(services: Services, make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme", requests_per_minute=1)
    admission = fixed_clock(NOW)
    admission.reserve("acme", "a", MODEL, prompt_tokens_bound=10, max_tokens=10)
    with pytest.raises(LimitExceeded):
        admission.reserve("acme", "b", MODEL, prompt_tokens_bound=10, max_tokens=10)

    services.tenants.update("acme", TenantUpdate(limits=TenantLimitsPatch(requests_per_minute=2)))

    admission.reserve("acme", "b", MODEL, prompt_tokens_bound=10, max_tokens=10)


def test_reserving_the_same_job_twice_counts_it_once(make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme")
    admission = fixed_clock(NOW)
    first = admission.reserve("acme", "job-1", MODEL, prompt_tokens_bound=100, max_tokens=100)
    second = admission.reserve("acme", "job-1", MODEL, prompt_tokens_bound=100, max_tokens=100)
    assert second == first
    assert counters("acme", "2026-11", "2026-11-28T23:12") == {
        "month_tokens": 200,
        "minute_tokens": 200,
        "minute_requests": 1,
        "in_flight": 1,
    }


def test_settling_twice_replaces_the_reservation_once(
    services: Services, make_tenant: Callable[..., IssuedKey]
) -> None:
    make_tenant("acme")
    fixed_clock(NOW).reserve("acme", "job-1", MODEL, prompt_tokens_bound=300, max_tokens=200)

    assert settle("acme", "job-1", Usage.of(42, 17)) is True
    assert settle("acme", "job-1", Usage.of(42, 17)) is False
    assert release("acme", "job-1") is False

    assert counters("acme", "2026-11", "2026-11-28T23:12") == {
        "month_tokens": 59,
        "minute_tokens": 59,
        "minute_requests": 1,
        "in_flight": 0,
    }
    assert services.admission_store.get("acme", "job-1") is None  # no longer held: the job is its record
    usage = services.usage.report("acme", NOW.date(), NOW.date())
    assert [(row.requests, row.prompt_tokens, row.completion_tokens) for row in usage.data] == [(1, 42, 17)]
    assert usage.data[0].cost == Decimal("0.0000021") + Decimal("0.00000255")
    job = services.job_store.get("acme", "job-1")
    assert job is not None and (job.status, job.usage) == (JobStatus.COMPLETED, Usage.of(42, 17))


def test_releasing_twice_returns_the_reservation_once(
    services: Services, make_tenant: Callable[..., IssuedKey]
) -> None:
    make_tenant("acme")
    admission = fixed_clock(NOW)
    admission.reserve("acme", "job-1", MODEL, prompt_tokens_bound=300, max_tokens=200)
    admission.reserve("acme", "job-2", MODEL, prompt_tokens_bound=30, max_tokens=20)

    assert release("acme", "job-1") is True
    assert release("acme", "job-1") is False
    assert settle("acme", "job-1", Usage.of(1, 1)) is False

    assert counters("acme", "2026-11", "2026-11-28T23:12") == {
        "month_tokens": 50,
        "minute_tokens": 50,
        "minute_requests": 2,
        "in_flight": 1,
    }
    assert services.admission_store.get("acme", "job-1") is None
    released = services.job_store.get("acme", "job-1")
    assert released is not None and released.error is not None and released.error.code == "inference_failed"
    assert services.usage.report("acme", NOW.date(), NOW.date()).data == []


def test_concurrent_duplicate_settlements_bill_once(
    services: Services, make_tenant: Callable[..., IssuedKey], linearizable_moto: None
) -> None:
    make_tenant("acme")
    fixed_clock(NOW).reserve("acme", "job-1", MODEL, prompt_tokens_bound=300, max_tokens=200)
    job = job_of("acme", "job-1")
    start = threading.Barrier(20)

    def complete(_: int) -> bool:
        start.wait()
        return Services(clock=lambda: NOW).settlement.complete(job, Usage.of(42, 17), {"object": "chat.completion"})

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(complete, range(20)))

    assert outcomes.count(True) == 1
    assert outcomes.count(False) == 19
    report = services.usage.report("acme", NOW.date(), NOW.date())
    assert report.totals.total_tokens == 59
    assert report.totals.requests == 1


def test_a_job_whose_reservation_is_not_held_ends_failed_and_bills_nothing(
    services: Services, make_tenant: Callable[..., IssuedKey]
) -> None:
    # GIVEN a job whose reservation was released already (the API gave it back when storing failed)
    make_tenant("acme")
    fixed_clock(NOW).reserve("acme", "job-1", MODEL, prompt_tokens_bound=30, max_tokens=20)
    job_of("acme", "job-1")
    assert services.settlement.release_unrecorded("acme", "job-1", "not queued") is True

    # WHEN its result arrives anyway
    assert settle("acme", "job-1", Usage.of(10, 5)) is True

    # THEN the job ends failed, and nothing is billed or held
    ended = services.job_store.get("acme", "job-1")
    assert ended is not None and ended.status is JobStatus.FAILED
    assert ended.error is not None and ended.error.code == "not_admitted"
    assert services.usage.report("acme", NOW.date(), NOW.date()).data == []
    assert counters("acme", "2026-11", "2026-11-28T23:12")["in_flight"] == 0


def test_settling_after_the_minute_ended_still_corrects_the_month(
    services: Services, make_tenant: Callable[..., IssuedKey]
) -> None:
    make_tenant("acme")
    fixed_clock(NOW).reserve("acme", "job-1", MODEL, prompt_tokens_bound=300, max_tokens=200)

    assert settle("acme", "job-1", Usage.of(42, 17), at=NOW + timedelta(minutes=3)) is True

    after = counters("acme", "2026-11", "2026-11-28T23:12")
    assert after["month_tokens"] == 59
    assert after["in_flight"] == 0
    assert after["minute_requests"] == 1
    assert services.usage.report("acme", NOW.date(), NOW.date()).totals.total_tokens == 59
