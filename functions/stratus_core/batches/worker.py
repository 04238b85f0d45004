"""The batch function's side of batches: start one (validate, turn lines into jobs), cancel its
jobs, and finalize it (write the output and error files, close it). Each step is safe to run
again: the batch queue delivers at least once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from stratus_core.batches.chunks import (
    ChunkBody,
    ChunkLine,
    answered_line,
    chunk_job_id,
    chunked,
    is_chunk,
    line_request_id,
    lines_of,
)
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
from stratus_core.batches.output import (
    add_usage,
    answered,
    batch_file_id,
    chunk_line_ids,
    error_line,
    failed,
    jsonl,
    output_line,
)
from stratus_core.batches.progress import BatchProgress
from stratus_core.batches.service import BatchService, BatchStore
from stratus_core.clock import utcnow
from stratus_core.contract import JobError, PackResult, RequestResult, Usage
from stratus_core.errors import Limit, LimitExceeded, NotFound, RequestExceedsLimit
from stratus_core.files import FileService, FileWasDeleted
from stratus_core.intake import JobIntake
from stratus_core.jobs import Job, JobStatus
from stratus_core.openai_objects import completion_object
from stratus_core.openai_types import packed_request
from stratus_core.settlement import Settlement

logger = logging.getLogger(__name__)


class ChunkFiles(Protocol):
    """The data bucket, where a chunk's body and its pack's output are."""

    def get_chunk(self, key: str) -> ChunkBody | None: ...

    def read_result(self, uri: str) -> PackResult | None: ...


MISSING = JobError(code="result_missing", message="the answer is no longer in the bucket")


@dataclass(frozen=True)
class LineOutcome:
    """One line of the output or error file, by its request id (the line order)."""

    request_id: str
    line: dict[str, Any]
    usage: Usage | None


class BatchJobs(Protocol):
    def get(self, tenant_id: str, job_id: str) -> Job | None: ...

    def for_batch(self, tenant_id: str, batch_id: str) -> list[Job]: ...


def refusal_error(refused: LimitExceeded | RequestExceedsLimit | NotFound) -> JobError:
    """A batch line refused at admission, as its error line says it."""
    if isinstance(refused, NotFound):
        return JobError(code="model_not_found", message=str(refused))
    # the batch lane counts against the month only: its quota
    code = "insufficient_quota" if refused.limit is Limit.TOKENS_PER_MONTH else refused.limit.value
    return JobError(code=code, message=str(refused))


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
        *,
        chunk_lines: int = 32,
        packs: ChunkFiles | None = None,
    ) -> None:
        self._chunk_lines = chunk_lines
        self._packs = packs
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
                "chunk_lines": self._chunk_lines,
            }
            if not self._store.transition(batch, BatchStatus.IN_PROGRESS, {BatchStatus.VALIDATING}, sets):
                return  # cancelled meanwhile; the cancel message takes it from here
            batch = batch.model_copy(update={"chunk_lines": self._chunk_lines})
        if batch.chunk_lines is None:  # started before chunks: one job per line, to the end
            for line in lines:
                self._enqueue_line(batch, line)
        else:
            for ordinal, chunk in enumerate(chunked(lines, batch.chunk_lines)):
                self._enqueue_chunk(batch, ordinal, chunk)
        self._progress.maybe_finalize(batch.tenant_id, batch.id)

    def _enqueue_chunk(self, batch: StoredBatch, ordinal: int, chunk: list[ParsedLine]) -> None:
        """One chunk of lines → one job on the batch lane (`chunks.py`); a chunk whose job exists
        already was handled by an earlier delivery."""
        chunk_id = chunk_job_id(batch.id, ordinal, len(chunk))
        if self._jobs.get(batch.tenant_id, chunk_id) is not None:
            return
        lines = [
            ChunkLine(
                line=line.line,
                custom_id=line.custom_id,
                request=packed_request(line.request, line_request_id(chunk_id, line.line), batch.tenant_id),
            )
            for line in chunk
        ]
        deadline = datetime.fromtimestamp(batch.expires_at, tz=self._clock().tzinfo)
        self._intake.accept_chunk(chunk_id, lines, deadline, batch.id, refusal_error)

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
            job = self._intake.job_for(request, self._clock(), deadline, batch.id, line.custom_id, "batch")
            self._settlement.reject(job, refusal_error(refused))

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
        jobs = self._jobs.for_batch(batch.tenant_id, batch.id)
        lines: list[LineOutcome] = []
        for job in jobs:
            if is_chunk(job.job_id):
                lines.extend(self._chunk_outcomes(batch, job))
            elif job.status is JobStatus.COMPLETED:
                lines.append(LineOutcome(job.job_id, output_line(job), job.usage))
            else:
                lines.append(LineOutcome(job.job_id, error_line(job), None))
        outputs, failures = [], []
        usage = BatchUsage()
        for outcome in sorted(lines, key=lambda outcome: outcome.request_id):
            if outcome.line["error"] is None:
                outputs.append(outcome.line)
                if outcome.usage:
                    usage = add_usage(usage, outcome.usage)
            else:
                failures.append(outcome.line)
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

    def _chunk_outcomes(self, batch: StoredBatch, job: Job) -> list[LineOutcome]:
        """Each line of a finished chunk, from its body (its custom id, or why it was refused) and,
        when the chunk's pack ran, SageMaker's output file: the answers were never copied. Both stay
        in the bucket for `ArtifactRetentionDays` (at least 2: past a batch's 24 h window). One that
        is gone anyway (deleted by hand) is logged as an error and its lines written as failures
        (`result_missing`, or without custom ids when the body is gone), so that the batch still
        closes and every line is in one of its files."""
        if self._packs is None:  # pragma: no cover - wired in every deployment
            raise RuntimeError("the batch worker has no reader for chunks")
        body = self._packs.get_chunk(job.body_key)
        ended = job.error or JobError(code=job.status.value, message=f"the request was {job.status.value}")
        if body is None:
            logger.error(
                "a chunk's body is gone: its lines are written without custom ids", extra={"job_id": job.job_id}
            )
            gone = ended if job.status is not JobStatus.COMPLETED else MISSING
            return [
                LineOutcome(
                    f"{job.job_id}/{n:06d}", failed(None, f"{job.job_id}/{n:06d}", f"{job.job_id}/{n}", gone), None
                )
                for n in range(lines_of(job.job_id))
            ]
        results: dict[str, RequestResult] | None = {}
        if job.status is JobStatus.COMPLETED and job.output_location:
            output = self._packs.read_result(job.output_location)
            if output is None:
                logger.error("a chunk's output is gone", extra={"job_id": job.job_id, "output": job.output_location})
            results = {result.job_id: result for result in output.results} if output is not None else None
        created = int(job.created_at.timestamp())
        outcomes = []
        for line in body.lines:
            line_id, request_id = chunk_line_ids(batch.id, line.line)
            error: JobError | None = line.error
            if error is None and job.status is not JobStatus.COMPLETED:
                error = ended
            elif error is None and results is None:
                error = MISSING
            elif error is None and results is not None:
                result = results.get(line_request_id(job.job_id, line.line))
                if result is not None and answered_line(result):
                    assert result.choices is not None and result.usage is not None  # what answered_line says
                    answer = completion_object(job.kind, request_id, created, job.model, result.choices, result.usage)
                    answer_line = answered(line.custom_id, request_id, line_id, answer.model_dump(mode="json"))
                    outcomes.append(LineOutcome(request_id, answer_line, result.usage))
                    continue
                error = (result.error if result else None) or JobError(code="inference_failed", message="no result")
            assert error is not None
            outcomes.append(LineOutcome(request_id, failed(line.custom_id, request_id, line_id, error), None))
        return outcomes

    def _write_file(
        self, batch: StoredBatch, kind: Literal["output", "error"], lines: list[dict[str, Any]], written: int
    ) -> str:
        file_id, name = batch_file_id(batch.id, kind), f"{batch.id}_{kind}.jsonl"
        try:
            self._files.write(batch.tenant_id, file_id, name, "batch_output", jsonl(lines), written)
        except FileWasDeleted:  # a late finalizer: the first closed the batch, and the tenant deleted it
            logger.info("batch file deleted by its tenant; not written again", extra={"batch_id": batch.id})
        return file_id
