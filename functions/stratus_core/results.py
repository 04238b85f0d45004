"""The results function's domain: SageMaker's notification → finished jobs, usage settled once."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from stratus_core.batches.chunks import split_line_request_id
from stratus_core.contract import InferencePack, JobError, PackResult, RequestResult
from stratus_core.jobs import JobStatus, JobStore
from stratus_core.openai_objects import completion_object
from stratus_core.settlement import Settlement


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
    def __init__(self, jobs: JobStore, settlement: Settlement, reader: PackReader) -> None:
        self._jobs = jobs
        self._settlement = settlement
        self._reader = reader

    def handle(self, notification: AsyncNotification) -> int:
        """Finish every job of the notified pack; returns how many changed state."""
        output = (notification.responseParameters or ResponseParameters()).outputLocation
        if notification.invocationStatus == "Completed" and output:
            result = self._reader.read_result(output)
            if result is None:
                raise MissingOutput(output)
            return self.apply_result(result, output)
        pack = self._reader.read_pack(notification.requestParameters.inputLocation)
        if pack is None:
            raise MissingOutput(notification.requestParameters.inputLocation)
        reason = notification.failureReason or "the endpoint reported a failure"
        return self.fail_pack(pack, JobError(code="inference_failed", message=reason[:1000]))

    def apply_result(self, result: PackResult, location: str) -> int:
        """Settle or fail each request of a pack's output, and each batch chunk in it once with all
        its lines (`batches.chunks`), whose answers stay in this output file (`location`); returns
        how many jobs this finished."""
        changed = 0
        chunks: dict[tuple[str, str], list[RequestResult]] = {}
        for item in result.results:
            line = split_line_request_id(item.job_id)
            if line is not None:
                chunks.setdefault((item.tenant_id, line[0]), []).append(item)
                continue
            job = self._jobs.get(item.tenant_id, item.job_id)
            if job is None:
                continue
            if job.status.is_terminal:
                self._settlement.recheck_batch(job)
                continue
            if item.error is not None or item.choices is None or item.usage is None:
                error = item.error or JobError(code="inference_failed", message="no result")
                changed += self._settlement.fail(job, JobStatus.FAILED, error)
                continue
            created = int(job.created_at.timestamp())
            tier: Literal["default", "flex"] = "flex" if job.lane == "flex" else "default"
            response = completion_object(job.kind, job.job_id, created, job.model, item.choices, item.usage, tier)
            changed += self._settlement.complete(job, item.usage, response.model_dump(mode="json"))
        for (tenant_id, chunk_id), items in chunks.items():
            job = self._jobs.get(tenant_id, chunk_id)
            if job is None:
                continue
            if job.status.is_terminal:
                self._settlement.recheck_batch(job)
                continue
            changed += self._settlement.complete_chunk(job, items, location)
        return changed

    def fail_pack(self, pack: InferencePack, error: JobError) -> int:
        changed = 0
        keys: dict[tuple[str, str], None] = {}  # each job once, a chunk's for all its lines
        for request in pack.requests:
            line = split_line_request_id(request.job_id)
            keys[(request.tenant_id, line[0] if line is not None else request.job_id)] = None
        for tenant_id, job_id in keys:
            job = self._jobs.get(tenant_id, job_id)
            if job is not None and job.status.is_terminal:
                self._settlement.recheck_batch(job)
            elif job is not None:
                changed += self._settlement.fail(job, JobStatus.FAILED, error)
        return changed
