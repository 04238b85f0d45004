"""Accepting inference requests: admit, record the job, store the body, queue it; and waiting."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from stratus_core.admission import AdmissionService, worst_case_prompt_tokens
from stratus_core.clock import utcnow
from stratus_core.contract import Message, PackedRequest, SamplingParams
from stratus_core.errors import NotFound
from stratus_core.jobs import (
    BodyStore,
    Job,
    JobError,
    JobStatus,
    JobStore,
    Ledger,
    RequestMessage,
    new_job_id,
    request_body_key,
)

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 25


class RequestQueue(Protocol):
    def send(self, message: RequestMessage) -> None: ...


class InferenceService:
    def __init__(
        self,
        admission: AdmissionService,
        jobs: JobStore,
        ledger: Ledger,
        bodies: BodyStore,
        queue: RequestQueue,
        *,
        request_ttl_seconds: int,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._admission = admission
        self._jobs = jobs
        self._ledger = ledger
        self._bodies = bodies
        self._queue = queue
        self._ttl = timedelta(seconds=request_ttl_seconds)
        self._clock = clock
        self._sleep = sleep

    def submit(
        self,
        tenant_id: str,
        model: str,
        params: SamplingParams,
        *,
        messages: list[Message] | None = None,
        prompt: str | None = None,
    ) -> Job:
        """Admit and queue one request. Nothing admitted is lost: a failure after the
        reservation releases it, and a failure after the job exists fails the job."""
        job_id = new_job_id()
        texts = [m.content for m in messages] if messages is not None else [prompt or ""]
        reservation = self._admission.reserve(
            tenant_id, job_id, model, worst_case_prompt_tokens(texts), params.max_tokens
        )
        now = reservation.created_at  # the instant the limits counted it in, not after the transaction
        request = PackedRequest(
            job_id=job_id,
            tenant_id=tenant_id,
            kind="chat" if messages is not None else "completion",
            model=model,
            messages=messages,
            prompt=prompt,
            params=params,
        )
        job = Job(
            job_id=job_id,
            tenant_id=tenant_id,
            kind=request.kind,
            model=model,
            status=JobStatus.QUEUED,
            created_at=now,
            deadline=now + self._ttl,
            body_key=request_body_key(tenant_id, job_id),
        )
        try:
            self._bodies.put(job.body_key, request)
            self._jobs.create(job)
        except Exception:
            self._admission.release(tenant_id, job_id, "not queued: storing the request failed")
            stored = self._jobs.get(tenant_id, job_id)  # written despite the error (e.g. a timed-out reply)?
            if stored is not None:
                self._ledger.finish_unbilled(
                    stored,
                    JobStatus.FAILED,
                    JobError(code="enqueue_failed", message="the request could not be stored"),
                    self._clock(),
                )
            raise
        try:
            self._queue.send(RequestMessage(tenant_id=tenant_id, job_id=job_id))
        except Exception:
            self._ledger.finish_unbilled(
                job,
                JobStatus.FAILED,
                JobError(code="enqueue_failed", message="the request could not be queued"),
                self._clock(),
            )
            raise
        return job

    def get(self, tenant_id: str, job_id: str) -> Job:
        job = self._jobs.get(tenant_id, job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    def wait(self, tenant_id: str, job_id: str, seconds: float) -> Job:
        """Poll until the job is terminal or `seconds` pass (0.1 s, doubling to 1 s between reads)."""
        deadline = time.monotonic() + min(seconds, MAX_WAIT_SECONDS)
        delay = 0.1
        job = self.get(tenant_id, job_id)
        while not job.status.is_terminal and time.monotonic() + delay < deadline:
            self._sleep(delay)
            delay = min(delay * 2, 1.0)
            job = self.get(tenant_id, job_id)
        return job
