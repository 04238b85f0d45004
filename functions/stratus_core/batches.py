"""OpenAI's Batch API: a JSONL file of requests becomes jobs on the batch lane, then output files.

Lifecycle: `validating` → (`failed` when lines are invalid) → `in_progress` → `finalizing` →
`completed` | `expired`; `cancelling` → `cancelled` at any point before the end. Each request
is a job whose id is the batch id plus its line number, so redelivered work finds what was
already done. Batch requests count against the monthly token quota (reserved when the batch
starts, settled per request) but not against per-minute limits or in-flight slots: they run at
the platform's pace on their own queue, behind interactive traffic.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stratus_core.clock import utcnow
from stratus_core.contract import Message, PackedRequest, Usage
from stratus_core.errors import Conflict, InvalidRequest, LimitExceeded, NotFound, RequestExceedsLimit
from stratus_core.files import FileService
from stratus_core.jobs import BodyStore, Job, JobError, JobStatus, RequestMessage, request_body_key
from stratus_core.openai_types import ChatCompletionRequest, CompletionRequest

if TYPE_CHECKING:  # the API imports this module for its models; the service side loads lazily
    from stratus_core.admission import AdmissionService

logger = logging.getLogger(__name__)

BatchEndpoint = Literal["/v1/chat/completions", "/v1/completions"]
MAX_LINES = 10_000
MAX_ERRORS_LISTED = 100
COMPLETION_WINDOW = timedelta(hours=24)


class BatchStatus(StrEnum):
    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


FINAL = {BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class Batch(BaseModel):
    """The batch object as OpenAI's API returns it."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: BatchEndpoint
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: Literal["24h"] = "24h"
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    usage: BatchUsage = Field(default_factory=BatchUsage)
    metadata: dict[str, str] | None = None


class StoredBatch(Batch):
    tenant_id: str

    def view(self) -> Batch:
        return Batch(**self.model_dump(exclude={"tenant_id"}))


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: BatchEndpoint
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("metadata holds up to 16 pairs, keys up to 64 and values up to 512 characters")
        return value


class BatchLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom_id: str = Field(min_length=1, max_length=512)
    method: Literal["POST"]
    url: BatchEndpoint
    body: dict[str, Any]


class BatchMessage(BaseModel):
    """The batch queue's work items (version 1): start, finalize or cancel one batch."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    action: Literal["start", "finalize", "cancel"]
    tenant_id: str
    batch_id: str


class ParsedLine(BaseModel):
    line: int
    custom_id: str
    request: ChatCompletionRequest | CompletionRequest


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)


def batch_job_id(batch_id: str, line: int) -> str:
    return f"{batch_id}-{line:06d}"


def parse_lines(content: bytes, endpoint: str) -> tuple[list[ParsedLine], list[BatchError]]:
    """Validate every line as OpenAI does: all errors are listed, none is fatal on its own."""
    parsed: list[ParsedLine] = []
    errors: list[BatchError] = []
    seen: set[str] = set()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return [], [BatchError(code="invalid_file_format", message="the file is not UTF-8")]
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return [], [BatchError(code="empty_file", message="the input file has no requests")]
    if len(lines) > MAX_LINES:
        return [], [BatchError(code="too_many_requests", message=f"a batch holds at most {MAX_LINES} requests")]
    request_model = ChatCompletionRequest if endpoint == "/v1/chat/completions" else CompletionRequest
    for number, raw in enumerate(lines, start=1):
        try:
            line = BatchLine.model_validate_json(raw)
            if line.url != endpoint:
                raise InvalidRequest(f"url {line.url} does not match the batch's endpoint {endpoint}", param="url")
            if line.custom_id in seen:
                raise InvalidRequest(f"custom_id {line.custom_id!r} is used twice", param="custom_id")
            request = request_model.model_validate(line.body)
        except ValidationError as invalid:
            first = invalid.errors(include_input=False)[0]
            param = ".".join(str(p) for p in first.get("loc", ())) or None
            message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
            errors.append(BatchError(code="invalid_request", message=message, param=param, line=number))
            continue
        except InvalidRequest as invalid:
            errors.append(BatchError(code="invalid_request", message=str(invalid), param=invalid.param, line=number))
            continue
        seen.add(line.custom_id)
        parsed.append(ParsedLine(line=number, custom_id=line.custom_id, request=request))
    return parsed, errors


class BatchStore(Protocol):
    def create(self, batch: StoredBatch) -> None: ...

    def get(self, tenant_id: str, batch_id: str) -> StoredBatch | None: ...

    def list(self, tenant_id: str, limit: int, after: str | None) -> list[StoredBatch]: ...

    def transition(
        self, batch: StoredBatch, to: BatchStatus, allowed_from: set[BatchStatus], sets: dict[str, Any]
    ) -> bool: ...


class BatchLedger(Protocol):
    def reject(self, job: Job, error: JobError) -> bool: ...

    def finish_unbilled(self, job: Job, status: JobStatus, error: JobError, at: datetime) -> bool: ...


class Queue(Protocol):
    def send(self, message: Any) -> None: ...


class BatchJobs(Protocol):
    def create(self, job: Job) -> None: ...

    def get(self, tenant_id: str, job_id: str) -> Job | None: ...

    def for_batch(self, tenant_id: str, batch_id: str) -> list[Job]: ...


class BatchService:
    def __init__(
        self,
        batches: BatchStore,
        files: FileService,
        jobs: BatchJobs,
        ledger: BatchLedger,
        admission: AdmissionService,
        bodies: BodyStore,
        batch_queue: Queue,
        request_queue: Queue,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._batches = batches
        self._files = files
        self._jobs = jobs
        self._ledger = ledger
        self._admission = admission
        self._bodies = bodies
        self._batch_queue = batch_queue
        self._request_queue = request_queue
        self._clock = clock

    # -- the API side ---------------------------------------------------------------------------
    def create(self, tenant_id: str, request: BatchCreate, batch_id: str | None = None) -> Batch:
        """Create the batch and queue its start. With `batch_id` given, a repeat returns the first."""
        stored_file = self._files.get(tenant_id, request.input_file_id)
        if stored_file.purpose != "batch":
            raise InvalidRequest("the input file's purpose must be 'batch'", param="input_file_id")
        if stored_file.status != "processed":
            raise InvalidRequest("the input file has not been uploaded yet", param="input_file_id")
        now = self._clock()
        batch = StoredBatch(
            id=batch_id or new_batch_id(),
            tenant_id=tenant_id,
            endpoint=request.endpoint,
            input_file_id=request.input_file_id,
            status=BatchStatus.VALIDATING,
            created_at=int(now.timestamp()),
            expires_at=int((now + COMPLETION_WINDOW).timestamp()),
            metadata=request.metadata,
        )
        try:
            self._batches.create(batch)
        except Conflict:
            if batch_id is None:
                raise
            return self.get(tenant_id, batch_id).view()
        self._batch_queue.send(BatchMessage(action="start", tenant_id=tenant_id, batch_id=batch.id))
        return batch.view()

    def get(self, tenant_id: str, batch_id: str) -> StoredBatch:
        batch = self._batches.get(tenant_id, batch_id)
        if batch is None:
            raise NotFound("batch", batch_id)
        return batch

    def list(self, tenant_id: str, limit: int, after: str | None) -> BatchList:
        batches = self._batches.list(tenant_id, limit + 1, after)
        page = [batch.view() for batch in batches[:limit]]
        return BatchList(
            data=page,
            first_id=page[0].id if page else None,
            last_id=page[-1].id if page else None,
            has_more=len(batches) > limit,
        )

    def cancel(self, tenant_id: str, batch_id: str) -> Batch:
        batch = self.get(tenant_id, batch_id)
        now = int(self._clock().timestamp())
        allowed = {BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS}
        if not self._batches.transition(batch, BatchStatus.CANCELLING, allowed, {"cancelling_at": now}):
            current = self.get(tenant_id, batch_id)
            if current.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
                return current.view()
            raise Conflict(f"batch {batch_id} is {current.status.value} and cannot be cancelled")
        self._batch_queue.send(BatchMessage(action="cancel", tenant_id=tenant_id, batch_id=batch_id))
        return self.get(tenant_id, batch_id).view()

    # -- the batch function's side -------------------------------------------------------------
    def handle(self, message: BatchMessage) -> None:
        batch = self.get(message.tenant_id, message.batch_id)
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
            self._batches.transition(
                batch, BatchStatus.CANCELLED, {BatchStatus.CANCELLING}, {"cancelled_at": int(now.timestamp())}
            )
            return
        if batch.status not in (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS):
            return
        lines, errors = parse_lines(self._files.content(batch.tenant_id, batch.input_file_id), batch.endpoint)
        if errors:
            listed = BatchErrors(data=errors[:MAX_ERRORS_LISTED]).model_dump(mode="json")
            self._batches.transition(
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
            if not self._batches.transition(batch, BatchStatus.IN_PROGRESS, {BatchStatus.VALIDATING}, sets):
                return  # cancelled meanwhile; the cancel message takes it from here
        for line in lines:
            self._enqueue_line(batch, line)
        self.maybe_finalize(batch.tenant_id, batch.id)

    def _enqueue_line(self, batch: StoredBatch, line: ParsedLine) -> None:
        job_id = batch_job_id(batch.id, line.line)
        existing = self._jobs.get(batch.tenant_id, job_id)
        if existing is not None:
            if existing.status is JobStatus.QUEUED:
                self._request_queue.send(RequestMessage(tenant_id=batch.tenant_id, job_id=job_id))
            return
        request = line.request
        messages = [m.to_message() for m in request.messages] if isinstance(request, ChatCompletionRequest) else None
        prompt = request.prompt_text() if isinstance(request, CompletionRequest) else None
        params = request.sampling()
        now = self._clock()
        job = Job(
            job_id=job_id,
            tenant_id=batch.tenant_id,
            kind="chat" if messages is not None else "completion",
            model=request.model,
            status=JobStatus.QUEUED,
            created_at=now,
            deadline=datetime.fromtimestamp(batch.expires_at, tz=now.tzinfo),
            body_key=request_body_key(batch.tenant_id, job_id),
            batch_id=batch.id,
            custom_id=line.custom_id,
        )
        from stratus_core.admission import worst_case_prompt_tokens

        texts = [m.content for m in messages] if messages is not None else [prompt or ""]
        try:
            self._admission.reserve_batch(
                batch.tenant_id, job_id, request.model, worst_case_prompt_tokens(texts), params.max_tokens
            )
        except (LimitExceeded, RequestExceedsLimit, NotFound) as refused:
            code = getattr(getattr(refused, "limit", None), "value", None) or "model_not_found"
            rejected = job.model_copy(
                update={
                    "status": JobStatus.FAILED,
                    "finished_at": now,
                    "error": JobError(code=code, message=str(refused)),
                }
            )
            self._ledger.reject(rejected, rejected.error or JobError(code=code, message=str(refused)))
            return
        self._bodies.put(
            job.body_key,
            PackedRequest(
                job_id=job_id,
                tenant_id=batch.tenant_id,
                kind=job.kind,
                model=job.model,
                messages=[Message(**m.model_dump()) for m in messages] if messages is not None else None,
                prompt=prompt,
                params=params,
            ),
        )
        try:
            self._jobs.create(job)
        except Conflict:
            return
        self._request_queue.send(RequestMessage(tenant_id=batch.tenant_id, job_id=job_id))

    def cancel_jobs(self, batch: StoredBatch) -> None:
        if batch.status is not BatchStatus.CANCELLING:
            return
        if batch.request_counts.total == 0:
            self.start(batch)
            return
        error = JobError(code="batch_cancelled", message="the batch was cancelled")
        for job in self._jobs.for_batch(batch.tenant_id, batch.id):
            if not job.status.is_terminal:
                self._ledger.finish_unbilled(job, JobStatus.CANCELLED, error, self._clock())
        self.maybe_finalize(batch.tenant_id, batch.id)

    def maybe_finalize(self, tenant_id: str, batch_id: str) -> bool:
        """Ask for finalization once every request has an outcome."""
        batch = self._batches.get(tenant_id, batch_id)
        if batch is None or batch.status not in (BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING):
            return False
        counts = batch.request_counts
        if counts.total == 0 or counts.completed + counts.failed < counts.total:
            return False
        self._batch_queue.send(BatchMessage(action="finalize", tenant_id=tenant_id, batch_id=batch_id))
        return True

    def finalize(self, batch: StoredBatch) -> None:
        """Write the output and error files and close the batch (once)."""
        now = self._clock()
        stamp = int(now.timestamp())
        if batch.status in (BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING):
            cancelling = batch.status is BatchStatus.CANCELLING
            if not self._batches.transition(batch, BatchStatus.FINALIZING, {batch.status}, {"finalizing_at": stamp}):
                return
            batch = self.get(batch.tenant_id, batch.id)
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
                outputs.append(_output_line(job))
                if job.usage:
                    usage = _add_usage(usage, job.usage)
            else:
                failures.append(_error_line(job))
        if final is None:
            expired = any(job.status is JobStatus.EXPIRED for job in jobs)
            final = BatchStatus.EXPIRED if expired else BatchStatus.COMPLETED
        sets: dict[str, Any] = {"usage": usage.model_dump(), f"{final.value}_at": stamp}
        if outputs:
            sets["output_file_id"] = self._files.create(
                batch.tenant_id, f"{batch.id}_output.jsonl", "batch_output", _jsonl(outputs)
            ).id
        if failures:
            sets["error_file_id"] = self._files.create(
                batch.tenant_id, f"{batch.id}_error.jsonl", "batch_output", _jsonl(failures)
            ).id
        self._batches.transition(batch, final, {BatchStatus.FINALIZING}, sets)


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def _output_line(job: Job) -> dict[str, Any]:
    return {
        "id": f"batch_req_{job.job_id.rsplit('-', 1)[-1]}_{job.batch_id}",
        "custom_id": job.custom_id,
        "response": {"status_code": 200, "request_id": job.job_id, "body": job.result},
        "error": None,
    }


def _error_line(job: Job) -> dict[str, Any]:
    error = job.error or JobError(code=job.status.value, message=f"the request was {job.status.value}")
    status = 400 if error.code.startswith("invalid") or error.code.startswith("tokens_per") else 500
    return {
        "id": f"batch_req_{job.job_id.rsplit('-', 1)[-1]}_{job.batch_id}",
        "custom_id": job.custom_id,
        "response": {
            "status_code": status,
            "request_id": job.job_id,
            "body": {
                "error": {
                    "message": error.message,
                    "type": "invalid_request_error" if status == 400 else "server_error",
                    "param": None,
                    "code": error.code,
                }
            },
        },
        "error": {"code": error.code, "message": error.message},
    }


def _add_usage(total: BatchUsage, usage: Usage) -> BatchUsage:
    return BatchUsage(
        input_tokens=total.input_tokens + usage.prompt_tokens,
        output_tokens=total.output_tokens + usage.completion_tokens,
        total_tokens=total.total_tokens + usage.total_tokens,
    )
