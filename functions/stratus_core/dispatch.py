"""The dispatcher's domain: queued jobs → packs in S3 → one async endpoint invocation per pack."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from stratus_core.batches.chunks import is_chunk
from stratus_core.clock import utcnow
from stratus_core.contract import InferencePack, JobError, PackedRequest
from stratus_core.jobs import BodyStore, Job, JobStatus, JobStore, RequestMessage
from stratus_core.settlement import Settlement

logger = logging.getLogger(__name__)


class EndpointBusy(Exception):
    """The endpoint refused for now (throttled, unavailable, updating); retry later."""


@dataclass(frozen=True)
class Invocation:
    inference_id: str
    output_location: str | None
    failure_location: str | None


class PackStore(Protocol):
    def put_pack(self, pack: InferencePack) -> str: ...


class Endpoint(Protocol):
    def invoke(self, input_location: str, inference_id: str) -> Invocation:
        """Queue one pack (an endpoint at zero instances accepts it and scales out); `EndpointBusy`
        when it cannot take it now."""
        ...


@dataclass
class DispatchReport:
    """Which messages to retry (the endpoint was busy) and what happened to the rest."""

    retry: list[str] = field(default_factory=list)
    dispatched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    packs: list[str] = field(default_factory=list)


WORK_SENT_EVERY = timedelta(seconds=30)
"""How often one dispatcher records that work went to the endpoint. The scheduler runs once a minute
and scales in `IdleScaleInMinutes` (6) after the last work, so a record up to 30 s old costs at
most 30 s of that wait, and it also counts dispatched jobs as work. Writing it for every pack cost a
write unit a pack ($0.24 per million interactive requests at the measured 2.6 requests a pack)."""


def new_pack_id() -> str:
    return "pack_" + secrets.token_hex(12)


class Dispatcher:
    def __init__(
        self,
        jobs: JobStore,
        bodies: BodyStore,
        packs: PackStore,
        endpoint: Endpoint,
        settlement: Settlement,
        *,
        max_pack_size: int,
        work_sent: Callable[[datetime], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._jobs = jobs
        self._bodies = bodies
        self._packs = packs
        self._endpoint = endpoint
        self._settlement = settlement
        self._max = max_pack_size
        self._work_sent = work_sent
        self._work_noted_at: datetime | None = None
        self._clock = clock

    def dispatch(self, messages: dict[str, RequestMessage]) -> DispatchReport:
        """`messages` maps each SQS message id to its parsed message.

        A job that is no longer queued (cancelled, already dispatched by an earlier delivery,
        finished) is skipped, and so is a second message for a job in the same delivery (the
        scheduler sends a held job's message again when its `let_go` failed); a job whose body is
        gone (neither on the job item nor in S3) fails. The rest are packed per model.
        """
        report = DispatchReport()
        by_model: dict[str, list[tuple[str, Job, list[PackedRequest]]]] = {}
        chunks: list[tuple[str, Job, list[PackedRequest]]] = []
        seen: set[tuple[str, str]] = set()
        for message_id, message in messages.items():
            key = (message.tenant_id, message.job_id)
            job = None if key in seen else self._jobs.get(*key)
            seen.add(key)
            if job is None or job.status is not JobStatus.QUEUED:
                report.skipped.append(message_id)
                continue
            requests = self._requests(job)
            if requests is None:
                error = JobError(code="request_missing", message="the stored request body is missing")
                self._settlement.fail(job, JobStatus.FAILED, error)
                report.failed.append(message_id)
                continue
            if is_chunk(job.job_id):
                chunks.append((message_id, job, requests))
            else:
                by_model.setdefault(job.model, []).append((message_id, job, requests))
        for model, entries in by_model.items():
            for start in range(0, len(entries), self._max):
                self._dispatch_pack(model, entries[start : start + self._max], report)
        for chunk in chunks:  # a batch chunk is a pack of its own: its output holds its lines alone
            self._dispatch_pack(chunk[1].model, [chunk], report)
        if report.packs and self._work_sent is not None:
            self._note_work_sent()
        return report

    def _requests(self, job: Job) -> list[PackedRequest] | None:
        """The job's request (a batch chunk's admitted lines), from the job item or S3; None if gone."""
        if is_chunk(job.job_id):
            body = self._bodies.get_chunk(job.body_key)
            return body.requests if body is not None else None
        request = PackedRequest.model_validate_json(job.body) if job.body else self._bodies.get(job.body_key)
        return [request] if request is not None else None

    def _note_work_sent(self) -> None:
        """Tell the scheduler work went to the endpoint (its idle time starts again). The packs are
        sent and their jobs marked already: failing here must not send them again, so a failure is
        logged, and the scheduler, which also counts dispatched jobs as work, is at worst a minute
        early with a scale-in after this pack finishes."""
        assert self._work_sent is not None
        now = self._clock()
        if self._work_noted_at is not None and now - self._work_noted_at < WORK_SENT_EVERY:
            return
        try:
            self._work_sent(now)
            self._work_noted_at = now
        except Exception:
            logger.exception("could not record when work was sent to the endpoint")

    def _dispatch_pack(
        self, model: str, entries: list[tuple[str, Job, list[PackedRequest]]], report: DispatchReport
    ) -> None:
        requests = [request for _, _, job_requests in entries for request in job_requests]
        pack = InferencePack(pack_id=new_pack_id(), model=model, requests=requests)
        location = self._packs.put_pack(pack)
        try:
            invocation = self._endpoint.invoke(location, pack.pack_id)
        except EndpointBusy as busy:
            logger.warning(
                "endpoint busy; messages return to the queue", extra={"reason": str(busy), "pack_id": pack.pack_id}
            )
            report.retry.extend(message_id for message_id, _, _ in entries)
            return
        now = self._clock()
        for message_id, job, _ in entries:
            self._jobs.mark_dispatched(job, pack.pack_id, invocation.output_location, invocation.failure_location, now)
            report.dispatched.append(message_id)
        report.packs.append(pack.pack_id)
        logger.info("pack dispatched", extra={"pack_id": pack.pack_id, "requests": len(requests), "model": model})
