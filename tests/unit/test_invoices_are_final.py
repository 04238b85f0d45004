"""Late settlements: a month's invoice is written once, when every reservation admitted in it has ended.

Settlement bills a request on the day it was admitted. A request admitted on a month's last day
and settled after the 1st's 02:00 billing run is that month's usage, so the run leaves its tenant's
invoice open; a later daily run writes it, once. The tokens on the stored invoices equal the tokens
billed in the usage table for the month, and a stored invoice is never written again.

Domain tests over the in-memory stores (`tests/memory.py`): no moto, no sockets.
"""

from __future__ import annotations

from datetime import UTC, datetime

from stratus_core.batches.models import COMPLETION_WINDOW
from stratus_core.billing import Invoice, MonthClose
from stratus_core.clock import month_bounds
from stratus_core.contract import Usage
from stratus_core.jobs import Job, JobStatus
from stratus_core.tenants import TenantCreate, TenantLimits
from tests.memory import Clock, MemoryInvoiceArchive, MemoryWorld, chat_request

OCTOBER = "2026-10"
LAST_MINUTE = datetime(2026, 10, 31, 23, 59, 59, 999_999, tzinfo=UTC)
FIRST_RUN = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
SECOND_RUN = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
RESULT = {"object": "chat.completion"}


def world_at(now: datetime) -> MemoryWorld:
    world = MemoryWorld(Clock(now))
    for tenant_id in ("acme", "globex"):
        limits = TenantLimits(tokens_per_minute=10**6, tokens_per_month=10**7)
        world.tenants.create(TenantCreate(tenant_id=tenant_id, name=tenant_id.title(), limits=limits))
    return world


def completed(world: MemoryWorld, tenant_id: str, usage: Usage) -> Job:
    job = world.intake.accept(chat_request(tenant_id))
    assert world.settlement.complete(job, usage, RESULT)
    return job


def batch_request(world: MemoryWorld, tenant_id: str) -> Job:
    """A batch-lane request admitted now: it may run until its 24 h completion window ends."""
    return world.intake.accept(chat_request(tenant_id), "batch", deadline=world.clock() + COMPLETION_WINDOW)


def billed_tokens(world: MemoryWorld, tenant_id: str, month: str = OCTOBER) -> int:
    return world.usage.report(tenant_id, *month_bounds(month)).totals.total_tokens


def outcome(closed: MonthClose) -> tuple[list[str], list[str], list[str]]:
    """Whose invoice the run wrote, whose an earlier run had written, who is still open."""
    return [invoice.tenant_id for invoice in closed.written], closed.final, closed.open


def archived(world: MemoryWorld) -> dict[str, Invoice]:
    return world.invoice_archive.invoices()


def test_a_request_settled_after_the_billing_run_is_on_its_months_one_final_invoice() -> None:
    # GIVEN October's last day: acme and globex complete a request each; acme starts a batch request
    world = world_at(datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    completed(world, "acme", Usage.of(10, 5))
    completed(world, "globex", Usage.of(7, 3))
    world.clock.now = LAST_MINUTE
    late = batch_request(world, "acme")
    world.clock.now = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    batch_request(world, "globex")  # November's: it holds nothing of October open

    # WHEN the 1st's run closes October, while acme's batch request is still running
    world.clock.now = FIRST_RUN
    first = world.billing.close_month(OCTOBER, world.invoice_archive)

    # THEN globex's invoice is final; acme's waits
    assert (outcome(first), first.overdue) == ((["globex"], [], ["acme"]), False)
    assert sorted(world.invoice_archive.objects) == ["invoices/2026-10/globex.csv", "invoices/2026-10/globex.json"]

    # WHEN the request settles on November 1st at 09:00, it is October's usage
    world.clock.now = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert world.settlement.complete(late, Usage.of(100, 40), RESULT)
    assert (billed_tokens(world, "acme"), billed_tokens(world, "acme", "2026-11")) == (155, 0)

    # AND the next day's run closes acme's October
    world.clock.now = SECOND_RUN
    second = world.billing.close_month(OCTOBER, world.invoice_archive)

    assert outcome(second) == (["acme"], ["globex"], [])
    assert sorted(world.invoice_archive.objects) == [
        "invoices/2026-10/acme.csv",
        "invoices/2026-10/acme.json",
        "invoices/2026-10/globex.csv",
        "invoices/2026-10/globex.json",
    ]
    invoices = archived(world)
    acme, globex = invoices["invoices/2026-10/acme.json"], invoices["invoices/2026-10/globex.json"]
    assert (acme.total_tokens, acme.lines[0].requests, acme.generated_at) == (155, 2, SECOND_RUN)
    assert (globex.total_tokens, globex.generated_at) == (10, FIRST_RUN)
    for tenant_id in ("acme", "globex"):
        stored = sum(i.total_tokens for i in invoices.values() if i.tenant_id == tenant_id)
        assert stored == billed_tokens(world, tenant_id)


def test_a_closed_month_is_never_written_again() -> None:
    world = world_at(datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    completed(world, "acme", Usage.of(10, 5))
    world.clock.now = FIRST_RUN
    first = world.billing.close_month(OCTOBER, world.invoice_archive)
    assert (outcome(first), first.nothing_due) == ((["acme"], [], []), ["globex"])
    stored = dict(world.invoice_archive.objects)
    puts = world.invoice_archive.puts

    world.clock.now = SECOND_RUN
    again = world.billing.close_month(OCTOBER, world.invoice_archive)

    assert (outcome(again), again.nothing_due) == (([], ["acme"], []), ["globex"])
    assert world.invoice_archive.objects == stored
    assert world.invoice_archive.puts == puts  # a final invoice is not even computed again


def test_a_concurrent_run_that_finds_the_invoice_written_leaves_it_as_it_is() -> None:
    world = world_at(datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    completed(world, "acme", Usage.of(10, 5))
    world.clock.now = FIRST_RUN
    world.billing.close_month(OCTOBER, world.invoice_archive)
    stored = dict(world.invoice_archive.objects)

    class ListedBeforeTheOtherRunWrote(MemoryInvoiceArchive):
        def finalized(self, month: str) -> set[str]:
            return set()

    racing = ListedBeforeTheOtherRunWrote()
    racing.objects = world.invoice_archive.objects
    world.clock.now = datetime(2026, 11, 1, 2, 0, 1, tzinfo=UTC)
    closed = world.billing.close_month(OCTOBER, racing)

    assert (outcome(closed), closed.nothing_due) == (([], ["acme"], []), ["globex"])
    assert racing.objects == stored


def test_a_reservation_released_after_the_run_closes_its_month_with_nothing_billed_for_it() -> None:
    world = world_at(datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    completed(world, "acme", Usage.of(10, 5))
    world.clock.now = LAST_MINUTE
    expiring = batch_request(world, "acme")
    world.clock.now = FIRST_RUN
    assert world.billing.close_month(OCTOBER, world.invoice_archive).open == ["acme"]

    world.clock.now = datetime(2026, 11, 2, 0, 1, tzinfo=UTC)  # a minute past its deadline
    assert world.sweeper.run().resolved == 1  # past its deadline: expired, its reservation released
    stored = world.job_store.get("acme", expiring.job_id)
    assert stored is not None and stored.status is JobStatus.EXPIRED
    world.clock.now = SECOND_RUN
    closed = world.billing.close_month(OCTOBER, world.invoice_archive)

    assert (outcome(closed), closed.nothing_due) == ((["acme"], [], []), ["globex"])
    assert archived(world)["invoices/2026-10/acme.json"].total_tokens == billed_tokens(world, "acme") == 15


def test_a_tenant_still_holding_a_reservation_past_every_deadline_is_overdue_and_gets_no_invoice() -> None:
    world = world_at(LAST_MINUTE)
    batch_request(world, "acme")
    world.clock.now = datetime(2026, 11, 2, 0, 59, 59, tzinfo=UTC)  # 24 h + 1 h after October, less a second
    assert world.billing.close_month(OCTOBER, world.invoice_archive).overdue is False

    world.clock.now = SECOND_RUN
    closed = world.billing.close_month(OCTOBER, world.invoice_archive)

    assert (closed.open, closed.overdue, closed.nothing_due) == (["acme"], True, ["globex"])
    assert world.invoice_archive.objects == {}


def test_a_month_still_running_gets_no_invoice() -> None:
    world = world_at(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    completed(world, "acme", Usage.of(10, 5))

    closed = world.billing.close_month("2026-11", world.invoice_archive)

    assert (outcome(closed), closed.overdue) == (([], [], ["acme", "globex"]), False)
    assert world.invoice_archive.objects == {}
    assert world.billing.month_just_ended() == OCTOBER
