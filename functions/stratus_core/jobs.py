"""Jobs: one per accepted inference request, from `queued` to exactly one terminal state.

Every terminal transition goes through `settlement.Settlement`, which moves the job and its
reservation together: completing settles the usage, failing / expiring / cancelling releases it.
So a duplicate or late result can neither bill twice nor move a finished job, and a job that is
finished always has its tokens counted exactly once (or released).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from stratus_core.contract import JobError, PackedRequest, Usage

if TYPE_CHECKING:
    from stratus_core.batches.chunks import ChunkBody

Lane = Literal["interactive", "flex", "batch"]
"""interactive: dispatched at once. flex (`service_tier: "flex"`) and batch (batch lines): deferrable,
held until the scheduler lets them go (`stratus_core.scheduling`)."""
DEFERRABLE_LANES: tuple[Lane, ...] = ("flex", "batch")


class JobStatus(StrEnum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.DISPATCHED)


class Job(BaseModel):
    """The stored job. `deadline` is when the sweeper gives up on it."""

    job_id: str
    tenant_id: str
    kind: Literal["chat", "completion"]
    model: str
    status: JobStatus
    created_at: datetime
    deadline: datetime
    body_key: str  # where the request body is in S3, unless it is `body`
    body: str | None = None  # the request (`PackedRequest` JSON) when it is small; gone once dispatched
    dispatched_at: datetime | None = None
    finished_at: datetime | None = None
    pack_id: str | None = None
    output_location: str | None = None
    failure_location: str | None = None
    batch_id: str | None = None
    custom_id: str | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None
    usage: Usage | None = None
    lane: Lane = "interactive"  # jobs stored before lanes were recorded ran at once: interactive

    @property
    def deferrable(self) -> bool:
        return self.lane in DEFERRABLE_LANES


class JobView(BaseModel):
    """What `GET /v1/jobs/{id}` shows its tenant."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    object: Literal["job"] = "job"
    status: JobStatus
    model: str
    created_at: int
    dispatched_at: int | None = None
    finished_at: int | None = None
    result: dict[str, Any] | None = Field(default=None, description="The OpenAI-shaped completion, once completed.")
    error: JobError | None = None
    usage: Usage | None = None

    @classmethod
    def of(cls, job: Job) -> JobView:
        def stamp(at: datetime | None) -> int | None:
            return int(at.timestamp()) if at else None

        return cls(
            id=job.job_id,
            status=job.status,
            model=job.model,
            created_at=int(job.created_at.timestamp()),
            dispatched_at=stamp(job.dispatched_at),
            finished_at=stamp(job.finished_at),
            result=job.result,
            error=job.error,
            usage=job.usage,
        )


class JobSummary(BaseModel):
    """One job in `GET /v1/jobs`: how it went, without the request or the answer's text."""

    id: str
    object: Literal["job"] = "job"
    status: JobStatus
    model: str
    lane: Lane
    created_at: int
    finished_at: int | None = None
    usage: Usage | None = None
    error: JobError | None = None

    @classmethod
    def of(cls, job: Job) -> JobSummary:
        return cls(
            id=job.job_id,
            status=job.status,
            model=job.model,
            lane=job.lane,
            created_at=int(job.created_at.timestamp()),
            finished_at=int(job.finished_at.timestamp()) if job.finished_at else None,
            usage=job.usage,
            error=job.error,
        )


class JobList(BaseModel):
    """A page of the caller's jobs, newest first (OpenAI's list shape: pass `last_id` as `after`)."""

    object: Literal["list"] = "list"
    data: list[JobSummary]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False

    @classmethod
    def of(cls, found: list[JobSummary], limit: int) -> JobList:
        """`found`: up to `limit + 1` jobs; one more than the page means there is a next one."""
        page = found[:limit]
        return cls(
            data=page,
            first_id=page[0].id if page else None,
            last_id=page[-1].id if page else None,
            has_more=len(found) > limit,
        )


JOB_ID_PATTERN = r"^job_[0-9a-f]{24}$"
"""An interactive or flex request's job (`new_job_id`); a batch chunk's is `<batch id>-c<ordinal>n<lines>`, and a
batch line's, in a batch started before chunks, `<batch id>-<line>` (`batches.chunks`)."""


class RequestQueue(Protocol):
    def send(self, message: RequestMessage) -> None: ...


class RequestMessage(BaseModel):
    """The requests queue's message (version 1): which job to run; the body waits on the job item
    (small) or in S3."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    tenant_id: str = Field(min_length=1)
    job_id: str = Field(min_length=1)


def new_job_id(at: datetime | None = None) -> str:
    """`job_`, 11 hex digits of the epoch milliseconds of `at` (now when not given), 13 random hex digits.

    Still `^job_[0-9a-f]{24}$`, but time-ordered: the jobs table's sort key is the job id, so a tenant's
    partition is in creation order and `GET /v1/jobs` reads its newest page with one bounded `Query`
    (`ScanIndexForward=False`, `Limit`), never the whole partition. 11 digits count milliseconds until
    the year 2527; 13 random digits (52 bits) keep ids made in the same millisecond apart. Ids made
    before carry 24 random digits and sort among these by chance (they age out with the table's TTL)."""
    millis = int((at or datetime.now(UTC)).timestamp() * 1000)
    return f"job_{millis:011x}{secrets.token_hex(7)[:13]}"


INLINE_BODY_BYTES = 2048
"""Request bodies up to this size are kept on the job item instead of in S3.

An S3 PUT and its GET cost $5.40 per million. The job item carries the body only while it is
queued: the dispatcher's update removes it, so the settlement transaction (two write units per KB)
does not. Until then each write of the item costs one more write unit per KB the body adds ($0.625
per million): an interactive job is written twice with it (created, dispatched), a held one three
times (created, let go, dispatched). A 2 KB body adds at most 2 KB to each, $2.50 and $3.75 per
million, both under S3's $5.40; a chat request of a few hundred bytes usually adds nothing (the item
stays within its first KB). A larger body goes to S3 under `body_key`, as before."""


def request_body_key(tenant_id: str, job_id: str) -> str:
    return f"requests/{tenant_id}/{job_id}.json"


class JobStore(Protocol):
    def create(self, job: Job) -> None: ...

    def get(self, tenant_id: str, job_id: str) -> Job | None: ...

    def recent(self, tenant_id: str, limit: int, after: str | None) -> list[JobSummary]:
        """Up to `limit` of the tenant's `job_…` jobs (not batch lines), newest first, after the job
        `after` in that order."""
        ...

    def mark_dispatched(
        self, job: Job, pack_id: str, output_location: str | None, failure_location: str | None, at: datetime
    ) -> bool: ...

    def due(self, before: datetime, limit: int) -> list[Job]:
        """Up to `limit` unfinished jobs the sweeper should look at before `before`, the longest due
        first: those whose look-again time has come (`ResultCheckSeconds` after they were created or
        let go, then `recheck_later`'s), and those held past their deadline."""
        ...

    def recheck_later(self, job: Job, now: datetime) -> None:
        """Look at this job again after as long as it has waited (at least `ResultCheckSeconds`, at
        most an hour), and at its deadline at the latest."""
        ...


class HeldJobs(Protocol):
    """Deferrable jobs held until the scheduler lets them go (the jobs table's `WaitingJobsIndex`)."""

    def held_summary(self) -> tuple[int, datetime | None]:
        """How many requests are held (a batch chunk counts its lines), and the earliest deadline among them."""
        ...

    def held(self, limit: int) -> list[Job]:
        """Held jobs, earliest deadline first, carrying up to `limit` requests in all (a batch
        chunk carries its lines), and at least one job."""
        ...

    def let_go(self, job: Job, at: datetime) -> bool:
        """No longer held (its message went at `at`); False when it was not (let go already, or finished)."""
        ...

    def in_flight_count(self) -> int:
        """Requests let go (an interactive one from its creation) and not finished, every lane (a
        batch chunk counts its lines): those queued for the endpoint and those it runs. A request
        whose message is still on a queue is counted here and in that queue's depth until the
        dispatcher takes it (seconds; longer while dispatches fail and are retried)."""
        ...


class BodyStore(Protocol):
    def put(self, key: str, request: PackedRequest) -> None: ...

    def get(self, key: str) -> PackedRequest | None: ...

    def put_chunk(self, key: str, body: ChunkBody) -> None:
        """A batch chunk's lines (`batches.chunks`)."""
        ...

    def get_chunk(self, key: str) -> ChunkBody | None: ...
