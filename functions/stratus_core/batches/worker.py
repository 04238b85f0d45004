"""The batch function's side of batches: start one (validate, turn lines into jobs), cancel its
jobs, and finalize it (write the output and error files, close it). Each step is safe to run
again: the batch queue delivers at least once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, Protocol

from stratus_core.batches.jsonl import ParsedLine, batch_job_id, parse_lines
from stratus_core.batches.models import (
    MAX_ERRORS_LISTED,
    BatchErrors,
    BatchMessage,
    BatchStatus,
    BatchUsage,
    RequestCounts,
    StoredBatch,
)
from stratus_core.batches.output import add_usage, batch_file_id, error_line, jsonl, output_line
from stratus_core.batches.progress import BatchProgress
from stratus_core.batches.service import BatchService, BatchStore
from stratus_core.clock import utcnow
from stratus_core.contract import JobError
from stratus_core.errors import Limit, LimitExceeded, NotFound, RequestExceedsLimit
from stratus_core.files import FileService, FileWasDeleted
from stratus_core.intake import JobIntake
from stratus_core.jobs import Job, JobStatus
from stratus_core.openai_types import packed_request
from stratus_core.settlement import Settlement

logger = logging.getLogger(__name__)


class BatchJobs(Protocol):
    def get(self, tenant_id: str, job_id: str) -> Job | None: ...

    def for_batch(self, tenant_id: str, batch_id: str) -> list[Job]: ...


class BatchWorker:
    def __init__(
        self,
        batches: BatchService,
        store: BatchStore,
        files: FileService,
        jobs: BatchJobs,
        intake: JobIntake,
        settlement: Settlement,
        progress: BatchProgress,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._batches = batches
        self._store = store
        self._files = files
        self._jobs = jobs
        self._intake = intake
        self._settlement = settlement
        self._progress = progress
        self._clock = clock

    def handle(self, message: BatchMessage) -> None:
        batch = self._batches.get(message.tenant_id, message.batch_id)
        if message.action == "start":
            self.start(batch)
        elif message.action == "cancel":
            self.cancel_jobs(batch)
        else:
            self.finalize(batch)

    def start(self, batch: StoredBatch) -> None:
        """Validate the input, then turn each line into a queued job (safe to run again)."""
        now = self._clock()
        if batch.status is BatchStatus.CANCELLING and batch.request_counts.total == 0:
            self._store.transition(
                batch, BatchStatus.CANCELLED, {BatchStatus.CANCELLING}, {"cancelled_at": int(now.timestamp())}
            )
            return
        if batch.status not in (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS):
            return
        lines, errors = parse_lines(self._files.content(batch.tenant_id, batch.input_file_id), batch.endpoint)
        if errors:
            listed = BatchErrors(data=errors[:MAX_ERRORS_LISTED]).model_dump(mode="json")
            self._store.transition(
                batch,
                BatchStatus.FAILED,
                {BatchStatus.VALIDATING},
                {"errors": listed, "failed_at": int(now.timestamp())},
            )
            return
        if batch.status is BatchStatus.VALIDATING:
            sets = {
                "request_counts": RequestCounts(total=len(lines)).model_dump(),
                "in_progress_at": int(now.timestamp()),
            }
            if not self._store.transition(batch, BatchStatus.IN_PROGRESS, {BatchStatus.VALIDATING}, sets):
                return  # cancelled meanwhile; the cancel message takes it from here
        for line in lines:
            self._enqueue_line(batch, line)
        self._progress.maybe_finalize(batch.tenant_id, batch.id)

    def _enqueue_line(self, batch: StoredBatch, line: ParsedLine) -> None:
        """One line → one job on the batch lane, through the same intake as an interactive request.
        A line whose job exists already was handled by an earlier delivery (queued again if it
        still waits); a line the tenant's quota refuses becomes a failed job, counted in the batch."""
        job_id = batch_job_id(batch.id, line.line)
        existing = self._jobs.get(batch.tenant_id, job_id)
        if existing is not None:
            if existing.status is JobStatus.QUEUED:
                self._intake.requeue(existing, "batch")
            return
        request = packed_request(line.request, job_id, batch.tenant_id)
        deadline = datetime.fromtimestamp(batch.expires_at, tz=self._clock().tzinfo)
        try:
            self._intake.accept(request, "batch", deadline=deadline, batch_id=batch.id, custom_id=line.custom_id)
        except (LimitExceeded, RequestExceedsLimit, NotFound) as refused:
            if isinstance(refused, NotFound):
                code = "model_not_found"
            else:  # the batch lane counts against the month only: its quota
                code = "insufficient_quota" if refused.limit is Limit.TOKENS_PER_MONTH else refused.limit.value
            job = self._intake.job_for(request, self._clock(), deadline, batch.id, line.custom_id, "batch")
            self._settlement.reject(job, JobError(code=code, message=str(refused)))

    def cancel_jobs(self, batch: StoredBatch) -> None:
        if batch.status is not BatchStatus.CANCELLING:
            return
        if batch.request_counts.total == 0:
            self.start(batch)
            return
        error = JobError(code="batch_cancelled", message="the batch was cancelled")
        for job in self._jobs.for_batch(batch.tenant_id, batch.id):
            if not job.status.is_terminal:
                self._settlement.fail(job, JobStatus.CANCELLED, error)
        self._progress.maybe_finalize(batch.tenant_id, batch.id)

    def finalize(self, batch: StoredBatch) -> None:
        """Write the output and error files and close the batch (once).

        SQS delivers a finalize message at least once, and two deliveries may be processed at the
        same time: both find the batch `finalizing` (one moved it there, or an earlier attempt
        stopped after it), both write the files, and only one closes the batch. So the files are
        functions of the batch alone: their ids come from the batch id (`batch_file_id`), their
        `created_at` is the batch's `finalizing_at`, and their lines come from jobs that are all
        terminal, read consistently. A second finalizer rewrites the same objects and the same
        records, whichever of the two closes the batch: `output_file_id` never changes and no
        file that the batch does not name is ever listed."""
        stamp = int(self._clock().timestamp())
        if batch.status in (BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING):
            cancelling = batch.status is BatchStatus.CANCELLING
            if not self._store.transition(batch, BatchStatus.FINALIZING, {batch.status}, {"finalizing_at": stamp}):
                return
            batch = self._batches.get(batch.tenant_id, batch.id)
            final = BatchStatus.CANCELLED if cancelling else None
        elif batch.status is BatchStatus.FINALIZING:
            final = BatchStatus.CANCELLED if batch.cancelling_at else None
        else:
            return
        jobs = sorted(self._jobs.for_batch(batch.tenant_id, batch.id), key=lambda job: job.job_id)
        outputs, failures = [], []
        usage = BatchUsage()
        for job in jobs:
            if job.status is JobStatus.COMPLETED:
                outputs.append(output_line(job))
                if job.usage:
                    usage = add_usage(usage, job.usage)
            else:
                failures.append(error_line(job))
        if final is None:
            expired = any(job.status is JobStatus.EXPIRED for job in jobs)
            final = BatchStatus.EXPIRED if expired else BatchStatus.COMPLETED
        sets: dict[str, Any] = {"usage": usage.model_dump(), f"{final.value}_at": stamp}
        written = batch.finalizing_at or stamp
        if outputs:
            sets["output_file_id"] = self._write_file(batch, "output", outputs, written)
        if failures:
            sets["error_file_id"] = self._write_file(batch, "error", failures, written)
        self._store.transition(batch, final, {BatchStatus.FINALIZING}, sets)

    def _write_file(
        self, batch: StoredBatch, kind: Literal["output", "error"], lines: list[dict[str, Any]], written: int
    ) -> str:
        file_id, name = batch_file_id(batch.id, kind), f"{batch.id}_{kind}.jsonl"
        try:
            self._files.write(batch.tenant_id, file_id, name, "batch_output", jsonl(lines), written)
        except FileWasDeleted:  # a late finalizer: the first closed the batch, and the tenant deleted it
            logger.info("batch file deleted by its tenant; not written again", extra={"batch_id": batch.id})
        return file_id
