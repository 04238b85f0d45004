"""The tenant item as ledger (`tenant_counters.py`): what its two single-item writes guarantee when a
process stops between them, when a day ends, and when a deploy finds the previous layout's items."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo import tenant_counters as tc
from stratus_core.adapters.dynamo.admission_store import DynamoAdmissionStore
from stratus_core.adapters.dynamo.codec import from_item, to_item
from stratus_core.adapters.dynamo.job_store import job_item
from stratus_core.admission import Claim, ClaimedJob
from stratus_core.contract import Usage
from stratus_core.errors import Limit, LimitExceeded
from stratus_core.jobs import Job, JobStatus, Lane, request_body_key
from stratus_core.keys import IssuedKey
from stratus_core.services import Services

MODEL = "smollm2-135m-instruct"
NOW = datetime(2026, 11, 28, 23, 12, 40, tzinfo=UTC)
ANSWER = {"object": "chat.completion"}


def at(when: datetime) -> Services:
    return Services(clock=lambda: when)


def a_job(job_id: str, status: JobStatus, created_at: datetime, deadline: datetime, lane: Lane = "interactive") -> Job:
    return Job(
        job_id=job_id,
        tenant_id="acme",
        kind="chat",
        model=MODEL,
        status=status,
        created_at=created_at,
        deadline=deadline,
        body_key=request_body_key("acme", job_id),
        lane=lane,
    )


def admitted_job(services: Services, job_id: str, *, bound: int = 300, max_tokens: int = 200) -> Job:
    """A request admitted at `services`' clock and its job stored, as the intake does."""
    reservation = services.admission.reserve("acme", job_id, MODEL, prompt_tokens_bound=bound, max_tokens=max_tokens)
    created = reservation.created_at
    job = a_job(job_id, JobStatus.QUEUED, created, created + timedelta(hours=1))
    services.job_store.create(job)
    return job


def store_previous_layout(services: Services, usage_items: dict[str, dict[str, Any]], job: Job) -> None:
    """Items as the previous layout wrote them: acme's usage items by sort key, and the job."""
    client = aws.dynamodb()
    for sk, values in usage_items.items():
        item = {**to_item(values), "pk": {"S": "TENANT#acme"}, "sk": {"S": sk}}
        client.put_item(TableName=services.settings.usage_table, Item=item)
    item = job_item(job, 86_400, timedelta(minutes=5))
    if "sweep" in item:  # the previous layout's index attribute instead of this one's
        item["active"] = item.pop("sweep")
        del item["sweep_at"]
    client.put_item(TableName=services.settings.jobs_table, Item=item)


def tenant_item(services: Services) -> dict[str, Any]:
    key = {"tenant_id": {"S": "acme"}}
    return from_item(aws.dynamodb().get_item(TableName=services.settings.tenants_table, Key=key)["Item"])


def billed(services: Services, day: datetime = NOW) -> tuple[int, int]:
    totals = services.usage.report("acme", day.date(), day.date()).totals
    return totals.requests, totals.total_tokens


@pytest.fixture
def failing_settle_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The tenant item's settlement write fails once (a throttle outlasting botocore's retries, or the
    process stopping right after the job's write); later ones go through."""
    calls: list[int] = []
    real = DynamoAdmissionStore.settle_held

    def settle_held(self: DynamoAdmissionStore, *args: Any, **kwargs: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("the process stopped between the job's write and the tenant item's")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DynamoAdmissionStore, "settle_held", settle_held)
    return calls


def test_a_job_that_ended_while_its_reservation_stayed_held_is_settled_by_the_redelivery_once(
    services: Services, make_tenant: Callable[..., IssuedKey], failing_settle_once: list[int]
) -> None:
    # GIVEN a completed job whose reservation the tenant item still holds (the second write failed)
    make_tenant("acme")
    job = admitted_job(at(NOW), "job-1")
    with pytest.raises(ConnectionError):
        at(NOW).settlement.complete(job, Usage.of(42, 17), ANSWER)
    stored = services.job_store.get("acme", "job-1")
    assert stored is not None and stored.status is JobStatus.COMPLETED
    assert services.tenants.get("acme").in_flight == 1
    assert billed(services) == (0, 0)

    # WHEN the notification is delivered again (SQS redelivers what the failed invocation left)
    assert at(NOW).settlement.complete(job, Usage.of(42, 17), ANSWER) is False  # the job had ended

    # THEN the reservation is settled from the job, once, at the job's own usage
    assert services.tenants.get("acme").in_flight == 0
    assert billed(services) == (1, 59)
    assert int(tenant_item(services)[tc.MONTH_TOKENS]) == 59
    assert at(NOW).settlement.complete(job, Usage.of(42, 17), ANSWER) is False
    assert billed(services) == (1, 59)


def test_the_sweeper_settles_a_held_reservation_whose_job_ended_and_releases_one_whose_job_never_came(
    services: Services, make_tenant: Callable[..., IssuedKey], failing_settle_once: list[int]
) -> None:
    # GIVEN a completed job still held (no redelivery comes), and an admission whose job was never written
    make_tenant("acme")
    job = admitted_job(at(NOW), "job-1")
    with pytest.raises(ConnectionError):
        at(NOW).settlement.complete(job, Usage.of(42, 17), ANSWER)
    at(NOW).admission.reserve("acme", "job-2", MODEL, prompt_tokens_bound=30, max_tokens=20)
    assert services.tenants.get("acme").in_flight == 2

    # WHEN the sweeper runs within the grace, then after it
    assert at(NOW + timedelta(minutes=1)).sweeper.run().orphans_released == 0
    assert at(NOW + timedelta(minutes=16)).sweeper.run().orphans_released == 2

    # THEN the first is billed at its usage and the second given back, each once
    assert services.tenants.get("acme").in_flight == 0
    assert billed(services) == (1, 59)
    assert int(tenant_item(services)[tc.MONTH_TOKENS]) == 59
    assert at(NOW + timedelta(minutes=30)).sweeper.run().orphans_released == 0


def test_a_days_usage_moves_to_its_day_row_once_the_day_is_over_and_reads_the_same_before_and_after(
    services: Services, make_tenant: Callable[..., IssuedKey]
) -> None:
    # GIVEN two requests settled on the 28th (usage on the tenant item)
    make_tenant("acme")
    for job_id in ("job-1", "job-2"):
        assert at(NOW).settlement.complete(admitted_job(at(NOW), job_id), Usage.of(42, 17), ANSWER) is True
    before = services.usage.report("acme", NOW.date(), NOW.date())
    assert tc.open_usage(tenant_item(services))

    # WHEN the sweeper runs on the 28th, then on the 29th
    assert at(NOW + timedelta(minutes=20)).sweeper.run().usage_rows_moved == 0
    next_day = NOW + timedelta(hours=1)
    assert at(next_day).sweeper.run().usage_rows_moved == 1

    # THEN the tenant item no longer carries it, and the report (and so the invoice) is unchanged
    assert tc.open_usage(tenant_item(services)) == {}
    assert services.usage.report("acme", NOW.date(), NOW.date()) == before
    assert before.totals.total_tokens == 118 and before.data[0].cost == 2 * (
        Decimal("0.0000021") + Decimal("0.00000255")
    )

    # AND a request admitted on the 28th and settled on the 29th is added to the same day's row
    late = admitted_job(at(NOW), "job-3")
    assert at(next_day).settlement.complete(late, Usage.of(1, 1), ANSWER) is True
    assert at(next_day).sweeper.run().usage_rows_moved == 1
    assert billed(services) == (3, 120)


def test_requests_admitted_by_the_previous_layout_settle_as_they_were_admitted_and_still_count(
    services: Services, make_tenant: Callable[..., IssuedKey]
) -> None:
    """A deploy finds the previous layout's items: a `RESV#` reservation with its month and minute
    counter items and the tenant's `in_flight`, and its job dispatched."""
    make_tenant("acme", max_in_flight=1, requests_per_minute=2, tokens_per_month=1_000)
    settings, client = services.settings, aws.dynamodb()
    client.update_item(
        TableName=settings.tenants_table,
        Key={"tenant_id": {"S": "acme"}},
        UpdateExpression="SET in_flight = :one REMOVE held",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    legacy = {
        "MONTH#2026-11": {"tokens": 500, "requests": 1},
        "MINUTE#2026-11-28T23:12": {"tokens": 500, "requests": 1},
        "RESV#job-old": {
            "job_id": "job-old",
            "tenant_id": "acme",
            "model": MODEL,
            "tokens": 500,
            "minute": "2026-11-28T23:12",
            "day": "2026-11-28",
            "month": "2026-11",
            "created_at": NOW - timedelta(seconds=10),
            "state": "reserved",
            "lane": "interactive",
            "pending": "3",
        },
    }
    old_job = a_job("job-old", JobStatus.DISPATCHED, NOW - timedelta(seconds=10), NOW + timedelta(hours=1))
    store_previous_layout(services, legacy, old_job)
    assert services.tenants.get("acme").in_flight == 1

    # WHEN a new request comes while the old one is in flight: its one slot is taken
    with pytest.raises(LimitExceeded) as refused:
        at(NOW).admission.reserve("acme", "job-new", MODEL, prompt_tokens_bound=100, max_tokens=100)
    assert refused.value.limit is Limit.MAX_IN_FLIGHT

    # WHEN the old one settles, as the previous layout would have settled it
    assert at(NOW).settlement.complete(old_job, Usage.of(40, 20), ANSWER) is True
    assert services.tenants.get("acme").in_flight == 0
    assert billed(services) == (1, 60)
    month = client.get_item(
        TableName=settings.usage_table, Key={"pk": {"S": "TENANT#acme"}, "sk": {"S": "MONTH#2026-11"}}
    )
    assert month["Item"]["tokens"]["N"] == "60"

    # THEN the tenant item's first counts start from the previous layout's: the month has 60 tokens,
    # the minute one request, so 2 more tokens than 940 are refused, and a third request this minute too
    with pytest.raises(LimitExceeded) as refused:
        at(NOW).admission.reserve("acme", "job-big", MODEL, prompt_tokens_bound=900, max_tokens=42)
    assert refused.value.limit is Limit.TOKENS_PER_MONTH
    at(NOW).admission.reserve("acme", "job-new", MODEL, prompt_tokens_bound=100, max_tokens=100)
    item = tenant_item(services)
    assert (int(item[tc.MONTH_TOKENS]), int(item[tc.MINUTE_REQUESTS])) == (260, 2)
    at(NOW).settlement.release_unrecorded("acme", "job-new", "test")
    with pytest.raises(LimitExceeded) as refused:
        at(NOW).admission.reserve("acme", "job-third", MODEL, prompt_tokens_bound=10, max_tokens=10)
    assert refused.value.limit is Limit.REQUESTS_PER_MINUTE


def test_a_job_answered_before_answers_were_compressed_still_reads(services: Services) -> None:
    job = a_job("job-old", JobStatus.COMPLETED, NOW, NOW + timedelta(hours=1))
    item = job_item(job, 86_400, timedelta(minutes=5))
    item["result_json"] = {"S": '{"object": "chat.completion", "choices": []}'}
    aws.dynamodb().put_item(TableName=services.settings.jobs_table, Item=item)

    stored = services.job_store.get("acme", "job-old")

    assert stored is not None and stored.result == {"object": "chat.completion", "choices": []}


def test_an_admission_whose_write_had_landed_on_an_attempt_answered_500_still_writes_its_claim(
    services: Services, make_tenant: Callable[..., IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore retries the tenant item's write after a 500; the retry fails its condition and the
    item it returns holds the request already. The claim comes next all the same: without it, a
    client's retry with the same Idempotency-Key would find nothing and admit a second job."""
    make_tenant("acme")
    real = DynamoAdmissionStore._apply

    def landed_then_retried(params: dict[str, Any]) -> dict[str, Any] | None:
        refused = real(params)
        if refused is not None:
            return refused  # built on a stale view of the item (its first minute): rebuilt by the store
        return real(params)  # it landed: the retry of the same write fails its condition, returning the item

    monkeypatch.setattr(DynamoAdmissionStore, "_apply", staticmethod(landed_then_retried))
    claim = Claim("fingerprint-1", "body-1", exclusive=True, expires_at=int(NOW.timestamp()) + 3600)
    admitted = at(NOW).admission.admit("acme", "job-1", MODEL, 100, 100, claim=claim)

    assert admitted.reservation.job_id == "job-1"
    assert services.admission_store.find_claim("acme", "fingerprint-1", NOW) == ClaimedJob("job-1", "body-1")
    assert services.tenants.get("acme").in_flight == 1


def test_a_batch_line_admitted_by_the_previous_layout_settles_on_its_own_counters(
    services: Services, make_tenant: Callable[..., IssuedKey]
) -> None:
    """A batch-lane `RESV#` item of the previous layout (no `layout`): its settlement corrects its own
    `MONTH#` item and writes its `DAY#` row, in one transaction with the job, as it was admitted."""
    make_tenant("acme")
    settings, client = services.settings, aws.dynamodb()
    created = NOW - timedelta(hours=2)
    legacy = {
        "MONTH#2026-11": {"tokens": 300, "requests": 1},
        "RESV#line-old": {
            "job_id": "line-old",
            "tenant_id": "acme",
            "model": MODEL,
            "tokens": 300,
            "minute": "2026-11-28T21:12",
            "day": "2026-11-28",
            "month": "2026-11",
            "created_at": created,
            "state": "reserved",
            "lane": "batch",
            "pending": "5",
        },
    }
    line = a_job("line-old", JobStatus.DISPATCHED, created, NOW + timedelta(hours=20), lane="batch")
    store_previous_layout(services, legacy, line)

    assert at(NOW).settlement.complete(line, Usage.of(30, 20), ANSWER) is True
    assert at(NOW).settlement.complete(line, Usage.of(30, 20), ANSWER) is False

    month = client.get_item(
        TableName=settings.usage_table, Key={"pk": {"S": "TENANT#acme"}, "sk": {"S": "MONTH#2026-11"}}
    )
    assert month["Item"]["tokens"]["N"] == "50"
    assert billed(services) == (1, 50)
    assert services.admission_store.get("acme", "line-old").state.value == "settled"  # type: ignore[union-attr]
    assert services.tenants.get("acme").in_flight == 0
