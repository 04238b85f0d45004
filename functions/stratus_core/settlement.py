"""Settlement: the one home of "a job reached its terminal state".

Whoever notices that a job is over (the results function reading SageMaker's output, the
dispatcher finding its body gone, the dead-letter handler, the sweeper, a batch's cancellation,
a batch line refused at admission) calls one method here, and this service decides the rest:

- **completed** → the reservation is *settled*: its worst-case bound is replaced by the model
  server's counts, the usage row for billing gets the tokens and their exact cost;
- **failed / expired / cancelled** → the reservation is *released*: its tokens and in-flight slot
  go back, nothing is billed;
- the job's batch counts the outcome, and is asked to finalize when that was its last request.

`Ledger.finish` moves the job, the reservation and the batch's counter, each conditional on the job
not being terminal and the reservation still being held, so a duplicate, late or concurrent call
changes nothing and returns `False`. For a batch line they are one DynamoDB transaction. For an
interactive request they are two single-item writes, the job first: the job is the record of how
it ended, and a reservation still held after its job ended is settled from the job (`reconcile`),
by the next delivery of the same outcome or by the sweeper. A job whose reservation is no longer
held (the API released it when storing the request failed) can still end, but nothing is billed
for it.

Requests that never became a job (the API died between admission and writing the job) hold a
reservation with no job: `release_unrecorded` and `release_orphans` give those back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from stratus_core.admission import Reservation, ReservationState
from stratus_core.batches.chunks import answered_line, line_request_id, lines_of
from stratus_core.clock import utcnow
from stratus_core.contract import JobError, RequestResult, Usage
from stratus_core.jobs import Job, JobStatus
from stratus_core.pricing import Cost, PriceCatalog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settle:
    """Bill the model server's counts at this cost (for `requests` requests: a batch chunk's
    completed lines, summed)."""

    usage: Usage
    cost: Cost
    requests: int = 1


@dataclass(frozen=True)
class Release:
    """Give the reservation back; nothing is billed."""

    reason: str


@dataclass(frozen=True)
class TerminalChange:
    """Everything one terminal transition writes, in one transaction."""

    job: Job
    status: JobStatus
    at: datetime
    reservation: Reservation | None  # the reservation still held, or None when nothing is held
    billing: Settle | Release | None  # what happens to it (None exactly when nothing is held)
    result: dict[str, Any] | None = None  # the OpenAI-shaped completion, when completed (a chunk's are in S3)
    error: JobError | None = None
    lines: tuple[int, int] = (0, 1)  # (completed, failed) requests the job counts in its batch
    output_location: str | None = None  # a batch chunk's: the output file its answers are read from

    @property
    def batch_usage(self) -> Usage | None:
        """The tokens the batch adds up: what was billed."""
        return self.billing.usage if isinstance(self.billing, Settle) else None


class ReservationReader(Protocol):
    def get(self, tenant_id: str, job_id: str) -> Reservation | None: ...

    def pending_before(self, before: datetime, limit: int) -> list[Reservation]: ...


class Ledger(Protocol):
    """The store side of settlement: each call is one atomic write."""

    def finish(self, change: TerminalChange) -> bool:
        """Apply `change`; False if the job was already terminal or the reservation already done."""
        ...

    def record_rejected(self, job: Job) -> bool:
        """Record a job born failed (a batch line refused at admission), counted once in its batch."""
        ...

    def release(self, reservation: Reservation, reason: str, at: datetime) -> bool:
        """Give back a reservation that has no job; False if it was no longer reserved."""
        ...

    def settle_reservation(self, reservation: Reservation, billing: Settle | Release, at: datetime) -> bool:
        """Settle or release a reservation whose job ended already; False if it was no longer reserved."""
        ...


class JobReader(Protocol):
    def get(self, tenant_id: str, job_id: str) -> Job | None: ...


class BatchProgress(Protocol):
    def maybe_finalize(self, tenant_id: str, batch_id: str) -> bool: ...


class Settlement:
    def __init__(
        self,
        reservations: ReservationReader,
        ledger: Ledger,
        catalog: PriceCatalog,
        *,
        batches: BatchProgress | None = None,
        jobs: JobReader | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._jobs = jobs
        self._reservations = reservations
        self._ledger = ledger
        self._catalog = catalog
        self._batches = batches
        self._clock = clock
        self.billed_tokens = 0
        """Tokens this process has billed so far (the `TokensBilled` metric is its increase)."""

    def complete(self, job: Job, usage: Usage, result: dict[str, Any]) -> bool:
        """The job produced `result` (its client's answer) with the model server's `usage`: bill it."""
        reservation = self._held(job)
        if reservation is None:  # released already (the API failed after admitting it, as its client was told)
            error = JobError(code="not_admitted", message="the request was released before its result arrived")
            return self.fail(job, JobStatus.FAILED, error)
        if usage.total_tokens > reservation.tokens:
            logger.warning(
                "usage above the reserved bound",
                extra={"job_id": job.job_id, "reserved": reservation.tokens, "used": usage.total_tokens},
            )
        cost = self._catalog.cost(reservation.model, usage.prompt_tokens, usage.completion_tokens, reservation.lane)
        change = TerminalChange(
            job=job,
            status=JobStatus.COMPLETED,
            at=self._clock(),
            reservation=reservation,
            billing=Settle(usage, cost),
            result=result,
            lines=(1, 0),
        )
        finished = self._finish(change)
        if finished:
            self.billed_tokens += usage.total_tokens
        return finished

    def complete_chunk(self, job: Job, results: list[RequestResult], output_location: str) -> bool:
        """A batch chunk's pack ran (`batches.chunks`): bill, in one settlement, the model server's
        counts summed over the lines that completed; the chunk's other lines (an error from the
        model server, no result, refused at admission) count as failed in the batch. The lines'
        answers stay in the pack's output file (`output_location`, recorded on the job as it ends:
        the pack that answered may not be the one the job was last dispatched with, when a dispatch
        whose record failed was sent again), which the batch's finalizer reads."""
        reservation = self._held(job)
        if reservation is None:
            error = JobError(code="not_admitted", message="the request was released before its result arrived")
            return self.fail(job, JobStatus.FAILED, error)
        admitted = {line_request_id(job.job_id, line) for line in reservation.lines or []}
        done = {r.job_id: r.usage for r in results if r.job_id in admitted and answered_line(r)}
        usage = Usage(
            prompt_tokens=sum(u.prompt_tokens for u in done.values() if u is not None),
            completion_tokens=sum(u.completion_tokens for u in done.values() if u is not None),
            total_tokens=sum(u.total_tokens for u in done.values() if u is not None),
        )
        if usage.total_tokens > reservation.tokens:
            logger.warning(
                "usage above the reserved bound",
                extra={"job_id": job.job_id, "reserved": reservation.tokens, "used": usage.total_tokens},
            )
        billing: Settle | Release = Release("no line of the chunk completed")
        if done:
            cost = self._catalog.cost(reservation.model, usage.prompt_tokens, usage.completion_tokens, reservation.lane)
            billing = Settle(usage, cost, requests=len(done))
        lines = (len(done), lines_of(job.job_id) - len(done))
        change = TerminalChange(
            job, JobStatus.COMPLETED, self._clock(), reservation, billing, lines=lines, output_location=output_location
        )
        finished = self._finish(change)
        if finished and done:
            self.billed_tokens += usage.total_tokens
        return finished

    def fail(self, job: Job, status: JobStatus, error: JobError) -> bool:
        """The job ends without a result (`failed`, `expired` or `cancelled`): nothing is billed."""
        if not status.is_terminal or status is JobStatus.COMPLETED:
            raise ValueError(f"{status} is not an unbilled terminal status")
        reservation = self._held(job)
        billing = Release(f"{status.value}: {error.code}") if reservation is not None else None
        change = TerminalChange(
            job, status, self._clock(), reservation, billing, error=error, lines=(0, lines_of(job.job_id))
        )
        return self._finish(change)

    def reject(self, job: Job, error: JobError) -> bool:
        """A batch line (or a chunk with every line) refused at admission: its job is recorded
        failed, each of its lines counted failed in the batch (nothing was reserved)."""
        rejected = job.model_copy(update={"status": JobStatus.FAILED, "finished_at": self._clock(), "error": error})
        recorded = self._ledger.record_rejected(rejected)
        self._after(job, recorded)
        return recorded

    def release_unrecorded(self, tenant_id: str, job_id: str, reason: str) -> bool:
        """Give back the reservation of a request that never became a job."""
        reservation = self._reservations.get(tenant_id, job_id)
        if reservation is None or reservation.state is not ReservationState.RESERVED:
            return False
        return self._ledger.release(reservation, reason, self._clock())

    def release_orphans(self, older_than: timedelta, limit: int = 100) -> int:
        """Reservations older than `older_than` still held: give back those whose job was never
        recorded (a crash between admission and the job's creation), and settle from the job those
        whose job already ended (a crash between the job's end and its reservation's); without this a
        tenant could lose in-flight slots for good. Returns how many were released or settled."""
        done = 0
        for reservation in self._reservations.pending_before(self._clock() - older_than, limit):
            job = self._jobs.get(reservation.tenant_id, reservation.job_id) if self._jobs is not None else None
            if job is None:
                done += self._ledger.release(reservation, "orphaned: no live job", self._clock())
            elif job.status.is_terminal:
                done += self.reconcile(job)
        return done

    def reconcile(self, job: Job) -> bool:
        """Settle from the stored job a reservation still held after the job ended: billed at the
        job's own usage when it completed, given back otherwise. False when there is nothing to do."""
        stored = self._jobs.get(job.tenant_id, job.job_id) if self._jobs is not None else None
        if stored is None or not stored.status.is_terminal:
            return False
        reservation = self._held(stored)
        if reservation is None:
            return False
        billing: Settle | Release
        if stored.status is JobStatus.COMPLETED and stored.usage is not None:
            usage = stored.usage
            cost = self._catalog.cost(reservation.model, usage.prompt_tokens, usage.completion_tokens, reservation.lane)
            billing = Settle(usage, cost)
        else:
            billing = Release(f"{stored.status.value}: {stored.error.code if stored.error else 'ended'}")
        settled = self._ledger.settle_reservation(reservation, billing, self._clock())
        if settled and isinstance(billing, Settle):
            self.billed_tokens += billing.usage.total_tokens
        return settled

    def _held(self, job: Job) -> Reservation | None:
        reservation = self._reservations.get(job.tenant_id, job.job_id)
        if reservation is None or reservation.state is not ReservationState.RESERVED:
            return None
        if reservation.layout == "held":  # the tenant item records tokens and time; the rest is the job's
            return reservation.model_copy(update={"model": job.model, "lane": job.lane})
        return reservation

    def _finish(self, change: TerminalChange) -> bool:
        finished = self._ledger.finish(change)
        if not finished and change.reservation is not None and change.reservation.layout == "held":
            # the job ended before, in its own write: its reservation may still be held (a `RESV#`
            # one moves in the same transaction as its job, so it cannot be)
            self.reconcile(change.job)
        # asked even when this call did not end the job (a redelivery): see `recheck_batch`
        self._after(change.job, True)
        return finished

    def recheck_batch(self, job: Job) -> None:
        """A redelivered outcome of a job that is terminal already: ask its batch again. The first
        delivery ended the job and then failed before (or while) asking, e.g. DynamoDB still throttled
        after botocore's retries; nothing else would ever ask, and the batch would stay
        `in_progress` with every request counted."""
        self._after(job, True)

    def _after(self, job: Job, changed: bool) -> None:
        """A batch request that just ended may have been its batch's last one."""
        if changed and job.batch_id is not None and self._batches is not None:
            self._batches.maybe_finalize(job.tenant_id, job.batch_id)
