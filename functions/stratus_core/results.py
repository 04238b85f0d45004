"""The results function's domain: SageMaker's notification → finished jobs, usage settled once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from stratus_core.clock import utcnow
from stratus_core.contract import InferencePack, PackResult
from stratus_core.jobs import Job, JobError, JobStatus, JobStore, Ledger
from stratus_core.openai_types import completion_object

logger = logging.getLogger(__name__)


class RequestParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputLocation: str
    endpointName: str | None = None


class ResponseParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    outputLocation: str | None = None
    failureLocation: str | None = None


class AsyncNotification(BaseModel):
    """What SageMaker publishes to the success or error topic for one async invocation."""

    model_config = ConfigDict(extra="ignore")

    eventName: Literal["InferenceResult"]
    eventSource: Literal["aws:sagemaker"]
    invocationStatus: Literal["Completed", "Failed"]
    inferenceId: str
    failureReason: str | None = None
    requestParameters: RequestParameters
    responseParameters: ResponseParameters | None = None


class PackReader(Protocol):
    def read_pack(self, uri: str) -> InferencePack | None: ...

    def read_result(self, uri: str) -> PackResult | None: ...

    def read_text(self, uri: str) -> str | None: ...


class MissingOutput(Exception):
    """The notification names an output that is not (yet) readable: retry the message later."""


class ResultsProcessor:
    def __init__(
        self,
        jobs: JobStore,
        ledger: Ledger,
        reader: PackReader,
        clock: Callable[[], datetime] = utcnow,
        on_batch_job_finished: Callable[[str, str], object] | None = None,
    ) -> None:
        self._jobs = jobs
        self._ledger = ledger
        self._reader = reader
        self._clock = clock
        self._on_batch_job = on_batch_job_finished
        self.billed_tokens = 0  # running total of tokens this processor billed (for the TokensBilled metric)

    def _finished(self, job: Job, changed: bool) -> int:
        if changed and job.batch_id and self._on_batch_job is not None:
            self._on_batch_job(job.tenant_id, job.batch_id)
        return int(changed)

    def handle(self, notification: AsyncNotification) -> int:
        """Finish every job of the notified pack; returns how many changed state."""
        output = (notification.responseParameters or ResponseParameters()).outputLocation
        if notification.invocationStatus == "Completed" and output:
            result = self._reader.read_result(output)
            if result is None:
                raise MissingOutput(output)
            return self.apply_result(result)
        pack = self._reader.read_pack(notification.requestParameters.inputLocation)
        if pack is None:
            raise MissingOutput(notification.requestParameters.inputLocation)
        reason = notification.failureReason or "the endpoint reported a failure"
        return self.fail_pack(pack, JobError(code="inference_failed", message=reason[:1000]))

    def apply_result(self, result: PackResult) -> int:
        changed = 0
        for item in result.results:
            job = self._jobs.get(item.tenant_id, item.job_id)
            if job is None or job.status.is_terminal:
                continue
            now = self._clock()
            if item.error is not None or item.choices is None or item.usage is None:
                error = item.error or JobError(code="inference_failed", message="no result")
                failed = self._ledger.finish_unbilled(job, JobStatus.FAILED, JobError(**error.model_dump()), now)
                changed += self._finished(job, failed)
                continue
            created = int(job.created_at.timestamp())
            response = completion_object(job.kind, job.job_id, created, job.model, item.choices, item.usage)
            completed = self._ledger.complete(job, item.choices, item.usage, response.model_dump(mode="json"), now)
            if completed:
                self.billed_tokens += item.usage.total_tokens
            changed += self._finished(job, completed)
        return changed

    def fail_pack(self, pack: InferencePack, error: JobError) -> int:
        changed = 0
        for request in pack.requests:
            job = self._jobs.get(request.tenant_id, request.job_id)
            if job is not None and not job.status.is_terminal:
                changed += self._finished(
                    job, self._ledger.finish_unbilled(job, JobStatus.FAILED, error, self._clock())
                )
        return changed

    def sweep(self, job: Job) -> bool:
        """Resolve one overdue job: from SageMaker's output or failure file if one exists (the
        notification was lost), else expire it."""
        if self._resolve_from_files(job, FileCache()):
            return True
        error = JobError(code="expired", message="no result before the request's deadline")
        return bool(self._finished(job, self._ledger.finish_unbilled(job, JobStatus.EXPIRED, error, self._clock())))

    def recover_unanswered(self, now: datetime, limit: int) -> int:
        """Dispatched jobs whose notification is late: resolve those whose output or failure file
        exists (the notification was lost); look again later at the others. Returns how many jobs
        this call finished (not those a notification finished meanwhile). Each file is read once
        per call, however many jobs of its pack are late."""
        files = FileCache()
        for job in self._jobs.unanswered(now, limit):
            if not self._resolve_from_files(job, files):
                self._jobs.recheck_later(job, now)
        if files.changed:
            logger.warning("finished jobs whose notification never came", extra={"jobs": files.changed})
        return files.changed

    def _resolve_from_files(self, job: Job, files: FileCache) -> bool:
        """True once the job is terminal from SageMaker's output or failure file; False if neither
        file exists (or the output does not settle this job)."""
        if job.output_location:
            if job.output_location not in files.outputs:
                result = files.outputs[job.output_location] = self._reader.read_result(job.output_location)
                if result is not None:
                    files.changed += self.apply_result(result)
            if files.outputs[job.output_location] is not None:
                refreshed = self._jobs.get(job.tenant_id, job.job_id)
                if refreshed is None or refreshed.status.is_terminal:
                    return True
        if job.failure_location:
            if job.failure_location not in files.failures:
                files.failures[job.failure_location] = self._reader.read_text(job.failure_location)
            reason = files.failures[job.failure_location]
            if reason is not None:
                error = JobError(code="inference_failed", message=reason[:1000] or "the endpoint failed")
                files.changed += self._finished(
                    job, self._ledger.finish_unbilled(job, JobStatus.FAILED, error, self._clock())
                )
                return True
        return False


@dataclass
class FileCache:
    """SageMaker's files read during one sweep (None: not there)."""

    outputs: dict[str, PackResult | None] = field(default_factory=dict)
    failures: dict[str, str | None] = field(default_factory=dict)
    changed: int = 0  # jobs finished from these files
