"""In-memory implementations of the domain's ports, for domain tests without moto or sockets.

Each store keeps the semantics its DynamoDB adapter guarantees — conditional writes, the atomic
terminal transition, the limits checked together with the counters they move — under one lock per
world, which is what a linearizable store gives. `tests/integration/test_store_contracts.py` runs
the same checks against these and the DynamoDB adapters on moto, so the two cannot drift apart.

`MemoryWorld` assembles the domain services over these stores the way `stratus_core.services`
assembles them over AWS.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from stratus_core.admission import (
    AdmissionService,
    Claim,
    ClaimedJob,
    ClaimTaken,
    LimitHit,
    Reservation,
    ReservationState,
    RetryableConflict,
    TenantInactive,
    fit_lines,
)
from stratus_core.batches.chunks import ChunkBody, lines_of
from stratus_core.batches.models import BatchMessage, BatchPage, BatchStatus, StoredBatch
from stratus_core.batches.progress import BatchProgress
from stratus_core.batches.service import BatchService
from stratus_core.batches.worker import BatchWorker
from stratus_core.billing import BillingService, Invoice
from stratus_core.clock import minute_key
from stratus_core.contract import (
    InferencePack,
    Message,
    PackedRequest,
    PackResult,
    RequestResult,
    SamplingParams,
    Usage,
)
from stratus_core.dispatch import Dispatcher, EndpointBusy, Invocation
from stratus_core.endpoint_history import EndpointHistory, RunRecord
from stratus_core.endpoint_state import Capacity
from stratus_core.errors import Conflict, Limit, NotFound
from stratus_core.files import FileService, StoredFile
from stratus_core.inference import InferenceService
from stratus_core.intake import JobIntake
from stratus_core.jobs import INLINE_BODY_BYTES, Job, JobStatus, JobSummary, Lane, RequestMessage, new_job_id
from stratus_core.pricing import load_catalog
from stratus_core.results import ResultsProcessor
from stratus_core.scheduler import Remembered, Scheduler
from stratus_core.scheduling import SchedulerConfig, SchedulerState
from stratus_core.settlement import Release, Settle, Settlement, TerminalChange
from stratus_core.sweep import Sweeper
from stratus_core.tenants import Tenant, TenantPage, TenantService, TenantUpdate
from stratus_core.usage import UsageRow, UsageService
from tests.fakes import echo

MAX_RECHECK = timedelta(hours=1)
MODEL = "smollm2-135m-instruct"


class MemoryTenantStore:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.items: dict[str, Tenant] = {}

    def create(self, tenant: Tenant) -> None:
        with self.lock:
            if tenant.tenant_id in self.items:
                if self.items[tenant.tenant_id] == tenant:  # the same create again (a retried write): a no-op
                    return
                raise Conflict(f"tenant '{tenant.tenant_id}' already exists")
            self.items[tenant.tenant_id] = tenant

    def get(self, tenant_id: str) -> Tenant | None:
        with self.lock:
            return self.items.get(tenant_id)

    def list(self) -> list[Tenant]:
        with self.lock:
            return list(self.items.values())

    def page(self, limit: int, after: str | None) -> TenantPage:
        with self.lock:
            ids = sorted(i for i in self.items if after is None or i > after)
            tenants = [self.items[i] for i in ids[:limit]]
            return TenantPage(tenants, tenants[-1].tenant_id if tenants else None, has_more=len(ids) > limit)

    def update(self, tenant_id: str, update: TenantUpdate, updated_at: datetime) -> Tenant:
        with self.lock:
            tenant = self.items.get(tenant_id)
            if tenant is None:
                raise NotFound("tenant", tenant_id)
            changes: dict[str, Any] = {"updated_at": updated_at}
            for name in ("name", "status"):
                if getattr(update, name) is not None:
                    changes[name] = getattr(update, name)
            if "allowed_models" in update.model_fields_set:
                changes["allowed_models"] = update.allowed_models
            if update.limits is not None:
                changes["limits"] = tenant.limits.model_copy(update=update.limits.model_dump(exclude_none=True))
            self.items[tenant_id] = tenant.model_copy(update=changes)
            return self.items[tenant_id]


@dataclass
class Counters:
    tokens: int = 0
    requests: int = 0


class MemoryAdmissionStore:
    """Reservations and the limit counters they move (month, minute, the tenant's in-flight)."""

    def __init__(self, tenants: MemoryTenantStore) -> None:
        self.tenants = tenants
        self.lock = tenants.lock
        self.reservations: dict[tuple[str, str], Reservation] = {}
        self.months: dict[tuple[str, str], Counters] = defaultdict(Counters)
        self.minutes: dict[tuple[str, str], Counters] = defaultdict(Counters)
        self.days: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.claims: dict[tuple[str, str], tuple[ClaimedJob, int]] = {}

    def reserve(
        self, tenant: Tenant, reservation: Reservation, expires_at: int, claim: Claim | None = None
    ) -> Reservation:
        with self.lock:
            existing = self.reservations.get((tenant.tenant_id, reservation.job_id))
            if existing is not None:
                return existing
            if claim is not None and claim.exclusive:
                held = self.claims.get((tenant.tenant_id, claim.fingerprint))
                if (
                    held is not None
                    and held[1] >= int(reservation.created_at.timestamp())
                    and held[0].job_id != claim.replaces
                ):
                    raise ClaimTaken(held[0])
            current = self._current(tenant)
            limits = current.limits
            if current.in_flight >= limits.max_in_flight:
                raise LimitHit(Limit.MAX_IN_FLIGHT)
            month = self.months[(tenant.tenant_id, reservation.month)]
            if month.tokens + reservation.tokens > limits.tokens_per_month:
                raise LimitHit(Limit.TOKENS_PER_MONTH)
            minute = self.minutes[(tenant.tenant_id, reservation.minute)]
            if minute.requests + 1 > limits.requests_per_minute:
                raise LimitHit(Limit.REQUESTS_PER_MINUTE)
            if minute.tokens + reservation.tokens > limits.tokens_per_minute:
                raise LimitHit(Limit.TOKENS_PER_MINUTE)
            self.tenants.items[tenant.tenant_id] = current.model_copy(update={"in_flight": current.in_flight + 1})
            month.tokens += reservation.tokens
            month.requests += 1
            minute.tokens += reservation.tokens
            minute.requests += 1
            self.reservations[(tenant.tenant_id, reservation.job_id)] = reservation
            if claim is not None:
                self.claims[(tenant.tenant_id, claim.fingerprint)] = (
                    ClaimedJob(reservation.job_id, claim.body_hash),
                    claim.expires_at,
                )
            return reservation

    def put_claim(self, tenant_id: str, job_id: str, claim: Claim, now: datetime) -> None:
        with self.lock:
            held = self.claims.get((tenant_id, claim.fingerprint))
            live = held is not None and held[1] >= int(now.timestamp()) and held[0].job_id != job_id
            if claim.exclusive and live and held is not None:
                raise ClaimTaken(held[0])
            self.claims[(tenant_id, claim.fingerprint)] = (ClaimedJob(job_id, claim.body_hash), claim.expires_at)

    def find_claim(self, tenant_id: str, fingerprint: str, now: datetime) -> ClaimedJob | None:
        with self.lock:
            held = self.claims.get((tenant_id, fingerprint))
            return held[0] if held is not None and held[1] >= now.timestamp() else None

    def minute_counts(self, tenant_id: str, minute: str) -> tuple[int, int]:
        with self.lock:
            counters = self.minutes.get((tenant_id, minute), Counters())
            return counters.requests, counters.tokens

    def reserve_batch(
        self, tenant: Tenant, reservation: Reservation, expires_at: int, bounds: dict[int, int] | None = None
    ) -> Reservation:
        with self.lock:
            existing = self.reservations.get((tenant.tenant_id, reservation.job_id))
            if existing is not None:
                return existing
            current = self._current(tenant)
            month = self.months[(tenant.tenant_id, reservation.month)]
            if month.tokens + reservation.tokens > current.limits.tokens_per_month:
                fitted = fit_lines(bounds or {}, current.limits.tokens_per_month - month.tokens)
                if not fitted:
                    raise LimitHit(Limit.TOKENS_PER_MONTH)
                reservation = reservation.model_copy(update={"tokens": sum(fitted.values()), "lines": sorted(fitted)})
            month.tokens += reservation.tokens
            month.requests += 1
            self.reservations[(tenant.tenant_id, reservation.job_id)] = reservation
            return reservation

    def _current(self, seen: Tenant) -> Tenant:
        current = self.tenants.items[seen.tenant_id]
        if not current.is_active:
            raise TenantInactive()
        if current.updated_at != seen.updated_at:
            raise RetryableConflict()
        return current

    def get(self, tenant_id: str, job_id: str) -> Reservation | None:
        with self.lock:
            return self.reservations.get((tenant_id, job_id))

    def pending_before(self, before: datetime, limit: int) -> list[Reservation]:
        with self.lock:
            held = [r for r in self.reservations.values() if r.state is ReservationState.RESERVED]
            return sorted((r for r in held if r.created_at < before), key=lambda r: r.created_at)[:limit]

    def tenants_holding(self, start: datetime, end: datetime) -> set[str]:
        with self.lock:
            held = (r for r in self.reservations.values() if r.state is ReservationState.RESERVED)
            return {r.tenant_id for r in held if start <= r.created_at < end}

    def finish(self, reservation: Reservation, billing: Settle | Release, at: datetime) -> bool:
        """Settle or release, under the caller's lock; False if no longer reserved."""
        key = (reservation.tenant_id, reservation.job_id)
        stored = self.reservations.get(key)
        if stored is None or stored.state is not ReservationState.RESERVED:
            return False
        if isinstance(billing, Settle):
            usage, cost = billing.usage, billing.cost
            delta = usage.total_tokens - reservation.tokens
            self.reservations[key] = stored.model_copy(
                update={
                    "state": ReservationState.SETTLED,
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "cost": cost.total,
                    "finished_at": at,
                }
            )
            day = self.days.setdefault(
                (reservation.tenant_id, reservation.day, reservation.model),
                {
                    "requests": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "prompt_cost": Decimal(0),
                    "completion_cost": Decimal(0),
                },
            )
            day["requests"] += billing.requests
            day["prompt_tokens"] += usage.prompt_tokens
            day["completion_tokens"] += usage.completion_tokens
            day["prompt_cost"] += cost.prompt_cost
            day["completion_cost"] += cost.completion_cost
        else:
            delta = -reservation.tokens
            self.reservations[key] = stored.model_copy(
                update={"state": ReservationState.RELEASED, "release_reason": billing.reason[:1000], "finished_at": at}
            )
        self.months[(reservation.tenant_id, reservation.month)].tokens += delta
        if reservation.lane == "interactive":
            tenant = self.tenants.items[reservation.tenant_id]
            self.tenants.items[reservation.tenant_id] = tenant.model_copy(update={"in_flight": tenant.in_flight - 1})
            if minute_key(at) == reservation.minute:
                self.minutes[(reservation.tenant_id, reservation.minute)].tokens += delta
        return True

    def daily(self, tenant_id: str, start: date, end: date) -> list[UsageRow]:
        """The usage store's side of the same table."""
        with self.lock:
            rows = []
            for (tenant, day, model), values in sorted(self.days.items()):
                if tenant == tenant_id and start.isoformat() <= day <= end.isoformat():
                    rows.append(
                        UsageRow(
                            date=date.fromisoformat(day),
                            model=model,
                            requests=values["requests"],
                            prompt_tokens=values["prompt_tokens"],
                            completion_tokens=values["completion_tokens"],
                            total_tokens=values["prompt_tokens"] + values["completion_tokens"],
                            prompt_cost=values["prompt_cost"],
                            completion_cost=values["completion_cost"],
                            cost=values["prompt_cost"] + values["completion_cost"],
                        )
                    )
            return rows


class MemoryJobStore:
    def __init__(self, lock: threading.RLock, result_check: timedelta = timedelta(minutes=5)) -> None:
        self.lock = lock
        self.result_check = result_check
        self.items: dict[tuple[str, str], Job] = {}
        self.sweep_at: dict[tuple[str, str], datetime] = {}  # let go (or never held) and not finished
        self.waiting: set[tuple[str, str]] = set()  # deferrable jobs held for the scheduler

    def create(self, job: Job) -> None:
        with self.lock:
            if (job.tenant_id, job.job_id) in self.items:
                if self.items[(job.tenant_id, job.job_id)] == job:  # the same create again: a no-op
                    return
                raise Conflict(f"job {job.job_id} exists")
            self.items[(job.tenant_id, job.job_id)] = job
            if job.status is JobStatus.QUEUED and job.deferrable:
                self.waiting.add((job.tenant_id, job.job_id))
            elif not job.status.is_terminal:
                self.sweep_at[(job.tenant_id, job.job_id)] = min(job.created_at + self.result_check, job.deadline)

    def held_summary(self) -> tuple[int, datetime | None]:
        with self.lock:
            deadlines = [self.items[key].deadline for key in self.waiting]
            return sum(lines_of(job_id) for _, job_id in self.waiting), min(deadlines, default=None)

    def held(self, limit: int) -> list[Job]:
        with self.lock:
            jobs = sorted((self.items[key] for key in self.waiting), key=lambda j: (j.deadline, j.job_id))
            taken, requests = [], 0
            for job in jobs if limit > 0 else []:
                requests += lines_of(job.job_id)
                if taken and requests > limit:
                    break
                taken.append(job)
            return taken

    def let_go(self, job: Job, at: datetime) -> bool:
        with self.lock:
            key = (job.tenant_id, job.job_id)
            if key not in self.waiting or self.items[key].status is not JobStatus.QUEUED:
                return False
            self.waiting.discard(key)
            self.sweep_at[key] = min(at + self.result_check, self.items[key].deadline)
            return True

    def in_flight_count(self) -> int:
        with self.lock:
            return sum(lines_of(job_id) for _, job_id in self.sweep_at)

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        with self.lock:
            return self.items.get((tenant_id, job_id))

    def recent(self, tenant_id: str, limit: int, after: str | None) -> list[JobSummary]:
        with self.lock:
            ids = sorted((i for t, i in self.items if t == tenant_id and i.startswith("job_")), reverse=True)
            newer = [i for i in ids if after is None or i < after]
            return [JobSummary.of(self.items[(tenant_id, i)]) for i in newer[:limit]]

    def mark_dispatched(
        self, job: Job, pack_id: str, output_location: str | None, failure_location: str | None, at: datetime
    ) -> bool:
        with self.lock:
            key = (job.tenant_id, job.job_id)
            stored = self.items.get(key)
            if stored is None or stored.status is not JobStatus.QUEUED:
                return False
            self.items[key] = stored.model_copy(
                update={
                    "status": JobStatus.DISPATCHED,
                    "body": None,
                    "pack_id": pack_id,
                    "dispatched_at": at,
                    "output_location": output_location,
                    "failure_location": failure_location,
                }
            )
            self.sweep_at.setdefault(key, min(at + self.result_check, stored.deadline))
            self.waiting.discard(key)
            return True

    def for_batch(self, tenant_id: str, batch_id: str) -> list[Job]:
        with self.lock:
            return [j for (t, i), j in sorted(self.items.items()) if t == tenant_id and i.startswith(f"{batch_id}-")]

    def due(self, before: datetime, limit: int) -> list[Job]:
        with self.lock:
            looks = [(at, self.items[key]) for key, at in self.sweep_at.items() if at < before]
            looks += [(self.items[key].deadline, self.items[key]) for key in self.waiting]
            due = sorted(((at, j) for at, j in looks if at < before), key=lambda pair: (pair[0], pair[1].job_id))
            return [j for _, j in due][:limit]

    def recheck_later(self, job: Job, now: datetime) -> None:
        with self.lock:
            key = (job.tenant_id, job.job_id)
            stored = self.items.get(key)
            if stored is not None and not stored.status.is_terminal and key not in self.waiting:
                waited = now - (job.dispatched_at or job.created_at)  # the job as read, as DynamoDB's
                self.sweep_at[key] = min(now + min(max(self.result_check, waited), MAX_RECHECK), stored.deadline)

    def finish(self, change: TerminalChange) -> bool:
        """Move a non-terminal job to its terminal status, under the caller's lock."""
        key = (change.job.tenant_id, change.job.job_id)
        stored = self.items.get(key)
        if stored is None or stored.status.is_terminal:
            return False
        update: dict[str, Any] = {"status": change.status, "finished_at": change.at}
        if isinstance(change.billing, Settle):
            update["usage"] = change.billing.usage
            if change.result is not None:
                update["result"] = change.result
        if change.error is not None:
            update["error"] = change.error
        if change.output_location is not None:
            update["output_location"] = change.output_location
        self.items[key] = stored.model_copy(update=update)
        self.sweep_at.pop(key, None)
        self.waiting.discard(key)
        return True


class MemoryBatchStore:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.items: dict[tuple[str, str], StoredBatch] = {}

    def create(self, batch: StoredBatch) -> None:
        with self.lock:
            if (batch.tenant_id, batch.id) in self.items:
                if self.items[(batch.tenant_id, batch.id)] == batch:  # the same create again: a no-op
                    return
                raise Conflict(f"batch {batch.id} exists")
            self.items[(batch.tenant_id, batch.id)] = batch

    def get(self, tenant_id: str, batch_id: str) -> StoredBatch | None:
        with self.lock:
            return self.items.get((tenant_id, batch_id))

    def list(self, tenant_id: str, limit: int, after: str | None) -> list[StoredBatch]:
        with self.lock:
            batches = sorted(
                (b for (t, _), b in self.items.items() if t == tenant_id),
                key=lambda b: (b.created_at, b.id),
                reverse=True,
            )
        if after is not None:
            ids = [b.id for b in batches]
            batches = batches[ids.index(after) + 1 :] if after in ids else []
        return batches[:limit]

    def page_all(self, limit: int, after: tuple[str, str] | None) -> BatchPage:
        with self.lock:
            keys = sorted(key for key in self.items if after is None or key > after)
            batches = [self.items[key] for key in keys[:limit]]
            last = (batches[-1].tenant_id, batches[-1].id) if batches else None
            return BatchPage(batches, last, has_more=len(keys) > limit)

    def transition(
        self, batch: StoredBatch, to: BatchStatus, allowed_from: set[BatchStatus], sets: dict[str, Any]
    ) -> bool:
        with self.lock:
            stored = self.items.get((batch.tenant_id, batch.id))
            if stored is None or stored.status not in allowed_from:
                return False
            self.items[(batch.tenant_id, batch.id)] = StoredBatch.model_validate(
                {**stored.model_dump(), **sets, "status": to}
            )
            return True

    def count(self, job: Job, lines: tuple[int, int], usage: Usage | None) -> bool:
        """The batch's counters move with its job (under the caller's lock); False if no batch."""
        stored = self.items.get((job.tenant_id, job.batch_id or ""))
        if stored is None:
            return False
        counts = stored.request_counts.model_copy(
            update={
                "completed": stored.request_counts.completed + lines[0],
                "failed": stored.request_counts.failed + lines[1],
            }
        )
        totals = stored.usage
        if usage is not None:
            totals = totals.model_copy(
                update={
                    "input_tokens": totals.input_tokens + usage.prompt_tokens,
                    "output_tokens": totals.output_tokens + usage.completion_tokens,
                    "total_tokens": totals.total_tokens + usage.total_tokens,
                }
            )
        self.items[(job.tenant_id, stored.id)] = stored.model_copy(update={"request_counts": counts, "usage": totals})
        return True


class MemoryLedger:
    """`Settlement`'s store: the reservation, the job and the batch counters move together or not at all."""

    def __init__(self, admission: MemoryAdmissionStore, jobs: MemoryJobStore, batches: MemoryBatchStore) -> None:
        self.admission = admission
        self.jobs = jobs
        self.batches = batches
        self.lock = admission.lock

    def finish(self, change: TerminalChange) -> bool:
        with self.lock:
            job_key = (change.job.tenant_id, change.job.job_id)
            stored = self.jobs.items.get(job_key)
            if stored is None or stored.status.is_terminal:
                return False
            if change.reservation is not None and change.billing is not None:
                current = self.admission.reservations.get((change.reservation.tenant_id, change.reservation.job_id))
                if current is None or current.state is not ReservationState.RESERVED:
                    return False
            if change.job.batch_id is not None and self.batches.get(change.job.tenant_id, change.job.batch_id) is None:
                return False
            if change.reservation is not None and change.billing is not None:
                self.admission.finish(change.reservation, change.billing, change.at)
            self.jobs.finish(change)
            if change.job.batch_id is not None:
                self.batches.count(change.job, change.lines, change.batch_usage)
            return True

    def record_rejected(self, job: Job) -> bool:
        with self.lock:
            if (job.tenant_id, job.job_id) in self.jobs.items:
                return False
            if job.batch_id is not None and self.batches.get(job.tenant_id, job.batch_id) is None:
                return False
            self.jobs.items[(job.tenant_id, job.job_id)] = job
            if job.batch_id is not None:
                self.batches.count(job, (0, lines_of(job.job_id)), None)
            return True

    def settle_reservation(self, reservation: Reservation, billing: Settle | Release, at: datetime) -> bool:
        with self.lock:
            return self.admission.finish(reservation, billing, at)

    def release(self, reservation: Reservation, reason: str, at: datetime) -> bool:
        with self.lock:
            return self.admission.finish(reservation, Release(reason), at)


class MemoryObjects:
    """The data bucket: request bodies, packs, SageMaker's outputs and failure files, files' content."""

    bucket = "memory-bucket"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, bytes] = {}

    def _uri_key(self, uri: str) -> str:
        return uri.removeprefix(f"s3://{self.bucket}/")

    def put(self, key: str, request: PackedRequest) -> None:
        self.put_bytes(key, request.model_dump_json().encode(), "application/json")

    def get(self, key: str) -> PackedRequest | None:
        data = self.get_bytes(key)
        return PackedRequest.model_validate_json(data) if data is not None else None

    def put_chunk(self, key: str, body: ChunkBody) -> None:
        self.put_bytes(key, body.model_dump_json().encode(), "application/json")

    def get_chunk(self, key: str) -> ChunkBody | None:
        data = self.get_bytes(key)
        return ChunkBody.model_validate_json(data) if data is not None else None

    def put_pack(self, pack: InferencePack) -> str:
        key = f"packs/{pack.pack_id}.json"
        self.put_bytes(key, pack.model_dump_json().encode(), "application/json")
        return f"s3://{self.bucket}/{key}"

    def read_pack(self, uri: str) -> InferencePack | None:
        data = self.get_bytes(self._uri_key(uri))
        return InferencePack.model_validate_json(data) if data is not None else None

    def read_result(self, uri: str) -> PackResult | None:
        data = self.get_bytes(self._uri_key(uri))
        return PackResult.model_validate_json(data) if data is not None else None

    def read_text(self, uri: str) -> str | None:
        data = self.get_bytes(self._uri_key(uri))
        return data.decode() if data is not None else None

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with self.lock:
            self.objects[key] = data

    def get_bytes(self, key: str) -> bytes | None:
        with self.lock:
            return self.objects.get(key)

    def size(self, key: str) -> int | None:
        data = self.get_bytes(key)
        return len(data) if data is not None else None

    def delete(self, key: str) -> None:
        with self.lock:
            self.objects.pop(key, None)

    def presigned_put(self, key: str, expires_in: int) -> str:
        return f"https://memory.invalid/{key}?expires={expires_in}"


class MemoryInvoiceArchive:
    """The data bucket's `invoices/`: each key written once, as S3's `If-None-Match: *` put does."""

    def __init__(self) -> None:
        self.objects: dict[str, str] = {}
        self.puts = 0  # attempted writes, refused ones included

    def finalized(self, month: str) -> set[str]:
        prefix = f"invoices/{month}/"
        names = (key.removeprefix(prefix) for key in self.objects if key.startswith(prefix))
        return {name.removesuffix(".json") for name in names if name.endswith(".json")}

    def put(self, invoice: Invoice, csv_text: str) -> bool:
        base = f"invoices/{invoice.month}/{invoice.tenant_id}"
        self._put_once(f"{base}.csv", csv_text)
        return self._put_once(f"{base}.json", invoice.model_dump_json(indent=2))

    def _put_once(self, key: str, text: str) -> bool:
        self.puts += 1
        if key in self.objects:
            return False
        self.objects[key] = text
        return True

    def invoices(self) -> dict[str, Invoice]:
        """The stored JSON invoices by key."""
        return {key: Invoice.model_validate_json(text) for key, text in self.objects.items() if key.endswith(".json")}


class MemoryFileStore:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], StoredFile] = {}
        self.tombstones: dict[tuple[str, str], int] = {}  # deleted files' ids → until when they stay taken

    def put(self, stored: StoredFile) -> bool:
        if (stored.tenant_id, stored.id) in self.tombstones:
            return False
        self.items[(stored.tenant_id, stored.id)] = stored
        return True

    def get(self, tenant_id: str, file_id: str) -> StoredFile | None:
        return self.items.get((tenant_id, file_id))

    def list(self, tenant_id: str) -> list[StoredFile]:
        return [f for (t, _), f in self.items.items() if t == tenant_id]

    def delete(self, tenant_id: str, file_id: str, deleted_at: int, expires_at: int) -> None:
        self.items.pop((tenant_id, file_id), None)
        self.tombstones[(tenant_id, file_id)] = expires_at

    def mark_processed(self, tenant_id: str, file_id: str, size: int) -> None:
        stored = self.items.get((tenant_id, file_id))
        if stored is None:
            return
        self.items[(tenant_id, file_id)] = stored.model_copy(update={"status": "processed", "bytes": size})


@dataclass
class MemoryQueue:
    messages: list[Any] = field(default_factory=list)
    broken: bool = False
    refuse_in_next_batch: int = 0  # SendMessageBatch answers the first this many entries as failed

    def depth(self) -> int:
        return len(self.messages)

    def send(self, message: Any) -> None:
        if self.broken:
            raise ConnectionError("the queue is unreachable")
        self.messages.append(message)

    def send_batch(self, messages: Any) -> list[bool]:
        refused, self.refuse_in_next_batch = self.refuse_in_next_batch, 0
        for message in messages[refused:]:
            self.send(message)
        return [i >= refused for i in range(len(messages))]

    def take(self) -> list[Any]:
        taken, self.messages = self.messages, []
        return taken


def chat_request(
    tenant_id: str = "acme", content: str = "hello", max_tokens: int = 8, model: str = MODEL
) -> PackedRequest:
    """A one-message chat request with a fresh job id, as the API packs it."""
    return PackedRequest(
        job_id=new_job_id(),
        tenant_id=tenant_id,
        kind="chat",
        model=model,
        messages=[Message(role="user", content=content)],
        params=SamplingParams(max_tokens=max_tokens),
    )


@dataclass
class MemoryEndpoint:
    """The async endpoint: `invoke` queues a pack; `run` writes each pack's output (or failure file)
    and returns what SageMaker would notify, as `(status, input, output or failure location)`."""

    objects: MemoryObjects
    busy: int = 0  # the next `busy` invocations are refused
    fail_packs: bool = False
    engine: Callable[[PackedRequest], RequestResult] = echo
    pending: list[tuple[str, str]] = field(default_factory=list)  # (input location, inference id)
    invoked: int = 0

    def invoke(self, input_location: str, inference_id: str) -> Invocation:
        if self.busy > 0:
            self.busy -= 1
            raise EndpointBusy("ThrottlingException")
        self.invoked += 1
        self.pending.append((input_location, inference_id))
        base = f"s3://{self.objects.bucket}"
        return Invocation(inference_id, f"{base}/outputs/{inference_id}.out", f"{base}/failures/{inference_id}.out")

    def run(self) -> list[tuple[str, str, str]]:
        done = []
        for input_location, inference_id in self.pending:
            pack = self.objects.read_pack(input_location)
            assert pack is not None
            if self.fail_packs:
                self.objects.put_bytes(f"failures/{inference_id}.out", b"model crashed", "text/plain")
                done.append(("Failed", input_location, f"s3://{self.objects.bucket}/failures/{inference_id}.out"))
                continue
            result = PackResult(pack_id=pack.pack_id, model=pack.model, results=[self.engine(r) for r in pack.requests])
            self.objects.put_bytes(f"outputs/{inference_id}.out", result.model_dump_json().encode(), "application/json")
            done.append(("Completed", input_location, f"s3://{self.objects.bucket}/outputs/{inference_id}.out"))
        self.pending = []
        return done


@dataclass
class MemoryEndpointState:
    """The endpoint's capacity as `DescribeEndpoint` would tell it (set by the test)."""

    current: Capacity | None = None

    def capacity(self) -> Capacity | None:
        return self.current


@dataclass
class MemoryControlPlane:
    """The endpoint as the scheduler sees and sets it: `set` moves the desired count, and the
    instances follow at once unless `starts_at_once` is off (then they stay starting)."""

    instances: int = 1
    desired: int = 1
    starts_at_once: bool = True
    calls: list[int] = field(default_factory=list)

    def capacity(self) -> Capacity | None:
        status = "Updating" if self.desired != self.instances else "InService"
        return Capacity(self.instances, self.desired, None, status)

    def set(self, instances: int) -> None:
        self.calls.append(instances)
        self.desired = instances
        if self.starts_at_once or instances < self.instances:
            self.instances = instances


@dataclass
class MemorySchedulerMemory:
    state: SchedulerState = field(default_factory=SchedulerState)
    last_work_at: datetime | None = None
    version: int = 0
    last_run: RunRecord | None = None

    def load(self) -> Remembered:
        return Remembered(self.state, self.last_work_at, self.version, self.last_run)

    def save(self, state: SchedulerState, version: int, last_run: RunRecord | None = None) -> bool:
        if version != self.version:
            return False
        self.state, self.version = state, version + 1
        self.last_run = last_run or self.last_run
        return True

    def work_sent(self, at: datetime) -> None:
        self.last_work_at = at


@dataclass
class MemoryRunHistory:
    """The scheduler's recorded runs, by time (a record at the same millisecond replaces the first, as
    the item's sort key does); `broken` makes every write raise, as DynamoDB's 500 after retries."""

    runs: dict[float, RunRecord] = field(default_factory=dict)
    broken: bool = False

    def record(self, run: RunRecord) -> None:
        if self.broken:
            raise ConnectionError("the usage table is unreachable")
        self.runs[run.at] = run

    def window(self, start: float, end: float) -> list[RunRecord]:
        ordered = [self.runs[at] for at in sorted(self.runs)]
        before = [run for run in ordered if run.at < start][-1:]
        return before + [run for run in ordered if start <= run.at <= end]


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class MemoryWorld:
    """Every domain service over in-memory stores, with one clock: a whole Stratus in a test."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        max_pack_size: int = 32,
        request_ttl_seconds: int = 3600,
        inline_body_bytes: int = INLINE_BODY_BYTES,
    ) -> None:
        self.clock = clock or Clock()
        lock = threading.RLock()
        self.tenant_store = MemoryTenantStore(lock)
        self.admission_store = MemoryAdmissionStore(self.tenant_store)
        self.job_store = MemoryJobStore(lock)
        self.batch_store = MemoryBatchStore(lock)
        self.ledger = MemoryLedger(self.admission_store, self.job_store, self.batch_store)
        self.objects = MemoryObjects()
        self.requests = MemoryQueue()
        self.batch_requests = MemoryQueue()
        self.batch_queue = MemoryQueue()
        self.endpoint = MemoryEndpoint(self.objects)
        catalog = load_catalog()
        self.tenants = TenantService(self.tenant_store, self.clock)
        self.usage = UsageService(self.admission_store, catalog.currency)
        self.invoice_archive = MemoryInvoiceArchive()
        self.billing = BillingService(
            self.tenant_store, self.admission_store, self.admission_store, catalog.currency, clock=self.clock
        )
        self.admission = AdmissionService(self.tenant_store, self.admission_store, catalog, clock=self.clock)
        self.batch_progress = BatchProgress(self.batch_store, self.batch_queue)
        self.settlement = Settlement(
            self.admission_store,
            self.ledger,
            catalog,
            batches=self.batch_progress,
            jobs=self.job_store,
            clock=self.clock,
        )
        queues: dict[Lane, MemoryQueue] = {"interactive": self.requests}
        self.intake = JobIntake(
            self.admission,
            self.job_store,
            self.objects,
            queues,
            self.settlement,
            request_ttl_seconds=request_ttl_seconds,
            inline_body_bytes=inline_body_bytes,
            clock=self.clock,
        )
        self.endpoint_state = MemoryEndpointState()
        self.inference = InferenceService(
            self.intake,
            self.job_store,
            self.admission,
            self.endpoint_state,
            expected_cold_start_seconds=300,
            sleep=lambda _: None,
            clock=self.clock,
        )
        self.dispatcher = Dispatcher(
            self.job_store,
            self.objects,
            self.objects,
            self.endpoint,
            self.settlement,
            max_pack_size=max_pack_size,
            work_sent=lambda at: self.scheduler_memory.work_sent(at),
            clock=self.clock,
        )
        self.control = MemoryControlPlane()
        self.scheduler_memory = MemorySchedulerMemory()
        self.run_history = MemoryRunHistory()
        self.scheduler = Scheduler(
            self.job_store,
            self.batch_requests,
            self.requests,
            self.batch_requests,
            self.control,
            self.control,
            self.scheduler_memory,
            SchedulerConfig(instance_jobs_per_s=3.0),
            clock=self.clock,
            history=self.run_history,
        )
        self.endpoint_history = EndpointHistory(self.run_history, self.scheduler_memory, "memory-endpoint", self.clock)
        self.results = ResultsProcessor(self.job_store, self.settlement, self.objects)
        self.sweeper = Sweeper(self.job_store, self.results, self.objects, self.settlement, clock=self.clock)
        self.files = FileService(MemoryFileStore(), self.objects, clock=self.clock)
        self.batches = BatchService(self.batch_store, self.files, self.batch_queue, clock=self.clock)
        self.batch_worker = BatchWorker(
            self.batches,
            self.batch_store,
            self.files,
            self.job_store,
            self.intake,
            self.settlement,
            self.batch_progress,
            clock=self.clock,
            chunk_lines=max_pack_size,
            packs=self.objects,
        )

    def dispatch(self) -> int:
        """The dispatcher over whatever both lanes hold (a message per job); returns how many."""
        messages = self.requests.take() + self.batch_requests.take()
        report = self.dispatcher.dispatch({str(i): m for i, m in enumerate(messages) if isinstance(m, RequestMessage)})
        for message_id in report.retry:  # busy: back on the queue, as SQS would redeliver them
            self.requests.send(messages[int(message_id)])
        return len(messages)

    def run_endpoint(self) -> int:
        """Run every pack and deliver each notification to the results processor once."""
        from stratus_core.results import AsyncNotification

        finished = 0
        for status, input_location, location in self.endpoint.run():
            response = {"outputLocation": location} if status == "Completed" else {"failureLocation": location}
            notification = AsyncNotification.model_validate(
                {
                    "eventName": "InferenceResult",
                    "eventSource": "aws:sagemaker",
                    "invocationStatus": status,
                    "inferenceId": "memory",
                    "failureReason": "ModelError: model crashed" if status == "Failed" else None,
                    "requestParameters": {"inputLocation": input_location},
                    "responseParameters": response,
                }
            )
            finished += self.results.handle(notification)
        return finished

    def run_batches(self) -> int:
        messages = self.batch_queue.take()
        for message in messages:
            assert isinstance(message, BatchMessage)
            self.batch_worker.handle(message)
        return len(messages)

    def schedule(self) -> int:
        """One scheduler run; the held requests it let go."""
        return self.scheduler.run().released

    def run(self, rounds: int = 20) -> None:
        """Until nothing moves: batch work, the scheduler, dispatch, the endpoint, notifications."""
        for _ in range(rounds):
            if not (self.run_batches() + self.schedule() + self.dispatch() + self.run_endpoint()):
                return
