"""Jobs: one per accepted inference request, from `queued` to exactly one terminal state.

Every terminal transition goes through `settlement.Settlement`, which moves the job and its
reservation together: completing settles the usage, failing / expiring / cancelling releases it.
So a duplicate or late result can neither bill twice nor move a finished job, and a job that is
finished always has its tokens counted exactly once (or released).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from stratus_core.contract import JobError, PackedRequest, Usage

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


class RequestQueue(Protocol):
    def send(self, message: RequestMessage) -> None: ...


class RequestMessage(BaseModel):
    """The requests queue's message (version 1): which job to run; the body waits on the job item
    (small) or in S3."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    tenant_id: str = Field(min_length=1)
    job_id: str = Field(min_length=1)


def new_job_id() -> str:
    return "job_" + secrets.token_hex(12)


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

    def mark_dispatched(
        self, job: Job, pack_id: str, output_location: str | None, failure_location: str | None, at: datetime
    ) -> bool: ...

    def overdue(self, before: datetime, limit: int) -> list[Job]: ...

    def unanswered(self, before: datetime, limit: int) -> list[Job]: ...

    def recheck_later(self, job: Job, now: datetime) -> None: ...


class HeldJobs(Protocol):
    """Deferrable jobs held until the scheduler lets them go (the jobs table's `WaitingJobsIndex`)."""

    def held_summary(self) -> tuple[int, datetime | None]:
        """How many are held, and the earliest deadline among them."""
        ...

    def held(self, limit: int) -> list[Job]:
        """Up to `limit` held jobs, earliest deadline first."""
        ...

    def let_go(self, job: Job) -> bool:
        """No longer held; False when it was not (let go already, or finished)."""
        ...

    def dispatched_count(self) -> int:
        """Jobs sent to the endpoint and not finished, every lane."""
        ...


class BodyStore(Protocol):
    def put(self, key: str, request: PackedRequest) -> None: ...

    def get(self, key: str) -> PackedRequest | None: ...
