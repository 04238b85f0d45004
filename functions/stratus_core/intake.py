"""The one way in for an inference request, interactive, flex or batch: reserve, store, record, queue.

A small request body rides on the job item (`jobs.INLINE_BODY_BYTES`); a larger one goes to S3 first.

Interactive jobs are queued on SQS at once. Deferrable ones (flex, batch) are stored held
(`WaitingJobsIndex`) and queued by the scheduler when it lets them go (`scheduler.py`).

Nothing admitted is lost. A failure after the reservation releases it (`Settlement`); a failure
after the job exists fails the job (and releases its reservation with it); a job that already
exists under the same id (a batch start delivered twice) is returned as it is, and keeps the
reservation it was admitted with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from stratus_core.admission import AdmissionService, Claim, worst_case_prompt_tokens
from stratus_core.batches.chunks import ChunkBody
from stratus_core.clock import utcnow
from stratus_core.contract import JobError, PackedRequest
from stratus_core.errors import Conflict, RateWindow
from stratus_core.jobs import (
    DEFERRABLE_LANES,
    INLINE_BODY_BYTES,
    BodyStore,
    Job,
    JobStatus,
    JobStore,
    Lane,
    RequestMessage,
    RequestQueue,
    request_body_key,
)
from stratus_core.settlement import Settlement

if TYPE_CHECKING:
    from stratus_core.batches.chunks import ChunkLine
    from stratus_core.errors import LimitExceeded, NotFound, RequestExceedsLimit

    RefusalCode = Callable[[LimitExceeded | RequestExceedsLimit | NotFound], JobError]

TOOLS_OVERHEAD_TOKENS = 256
"""The instructions a model server wraps around tool definitions when the chat template has no tool
format of its own (`TOOLS_PROMPT` in `gpu_jobs/openai_requests.py`), and the markers and instructions of a
template that has one. Measured with SmolLM2's tokenizer: `TOOLS_PROMPT` alone is 44 tokens, and one
251-byte `get_weather` tool grew the rendered prompt by 95 tokens (our system message replaces the
template's default one), against a bound of 256 + 2 × 251."""


def prompt_texts(request: PackedRequest) -> list[str]:
    """Every text that becomes part of the prompt: messages (with their tool calls) and tool definitions."""
    if request.messages is None:
        return [request.prompt or ""]
    texts = [m.content or "" for m in request.messages]
    texts += [call.model_dump_json() for m in request.messages for call in m.tool_calls or []]
    texts += [tool.model_dump_json() for tool in request.params.tools or []]
    return texts


def worst_case_tokens(request: PackedRequest) -> tuple[int, int]:
    """The prompt's bound and the completion's: every one of the `n` choices may use `max_tokens`.

    Tool definitions count twice their compact JSON's bytes: a chat template may print them with a
    space after every separator (Jinja's `tojson`), which at most doubles them."""
    prompt = worst_case_prompt_tokens(prompt_texts(request))
    if request.params.tools:
        prompt += TOOLS_OVERHEAD_TOKENS + sum(len(tool.model_dump_json()) for tool in request.params.tools)
    return prompt, request.params.n * request.params.max_tokens


class JobIntake:
    def __init__(
        self,
        admission: AdmissionService,
        jobs: JobStore,
        bodies: BodyStore,
        queues: Mapping[Lane, RequestQueue],
        settlement: Settlement,
        *,
        request_ttl_seconds: int,
        inline_body_bytes: int = INLINE_BODY_BYTES,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._admission = admission
        self._jobs = jobs
        self._bodies = bodies
        self._queues = queues
        self._settlement = settlement
        self._ttl = timedelta(seconds=request_ttl_seconds)
        self._inline = inline_body_bytes
        self._clock = clock

    def accept(
        self,
        request: PackedRequest,
        lane: Lane = "interactive",
        *,
        deadline: datetime | None = None,
        batch_id: str | None = None,
        custom_id: str | None = None,
    ) -> Job:
        """Admit `request` (raising the refusal that names its limit), then store and queue it.
        An interactive job's deadline is the request TTL from its admission; a batch's is given."""
        return self.admit(request, lane, deadline=deadline, batch_id=batch_id, custom_id=custom_id)[0]

    def admit(
        self,
        request: PackedRequest,
        lane: Lane = "interactive",
        *,
        deadline: datetime | None = None,
        batch_id: str | None = None,
        custom_id: str | None = None,
        claim: Claim | None = None,
    ) -> tuple[Job, RateWindow | None]:
        """`accept`, with a retry claim written atomically with the reservation (`ClaimTaken` when an
        earlier request holds it), and the tenant's standing in this minute's limits."""
        prompt_bound, completion_bound = worst_case_tokens(request)
        admitted = self._admission.admit(
            request.tenant_id, request.job_id, request.model, prompt_bound, completion_bound, lane, claim
        )
        reservation = admitted.reservation
        created = reservation.created_at  # the instant the limits counted it in, not after the transaction
        job = self.job_for(request, created, deadline or created + self._ttl, batch_id, custom_id, lane)
        body = request.model_dump_json()
        if len(body.encode()) <= self._inline:
            job = job.model_copy(update={"body": body})
        try:
            if job.body is None:
                self._bodies.put(job.body_key, request)
            self._jobs.create(job)
        except Conflict:
            existing = self._jobs.get(job.tenant_id, job.job_id)
            if existing is None:  # pragma: no cover - the condition failed because it exists
                raise
            return existing, admitted.window
        except Exception:
            self._settlement.release_unrecorded(job.tenant_id, job.job_id, "not queued: storing the request failed")
            stored = self._jobs.get(job.tenant_id, job.job_id)  # written despite the error (a timed-out reply)?
            if stored is not None:
                error = JobError(code="enqueue_failed", message="the request could not be stored")
                self._settlement.fail(stored, JobStatus.FAILED, error)
            raise
        try:
            self.requeue(job, lane)
        except Exception:
            error = JobError(code="enqueue_failed", message="the request could not be queued")
            self._settlement.fail(job, JobStatus.FAILED, error)
            raise
        return job, admitted.window

    def accept_chunk(
        self, chunk_id: str, lines: list[ChunkLine], deadline: datetime, batch_id: str, refusal: RefusalCode
    ) -> Job:
        """Admit a batch chunk (`batches.chunks`): one reservation for the lines the month admits,
        their body in S3 (each line's request, or the reason it was refused: `refusal` names it),
        then the chunk's job, held for the scheduler. A chunk with no line admitted is recorded
        failed at once. A chunk whose job exists (a redelivered start) is returned as it is.

        Unlike an interactive request's, a reservation whose body or job could not be stored is
        kept, not released: the batch's start message is delivered again, and that delivery finds
        the reservation (with the same lines) and stores what is missing. A released one would make
        the chunk's job end `not_admitted`. If no delivery comes, the sweeper releases a
        reservation whose job never came (`ORPHAN_GRACE`)."""
        first = lines[0].request
        assert first is not None  # the batch worker packs every line's request
        tenant_id, model = first.tenant_id, first.model
        bounds = {line.line: sum(worst_case_tokens(line.request)) for line in lines if line.request is not None}
        admission = self._admission.admit_chunk(tenant_id, chunk_id, model, bounds)
        body = ChunkBody(
            lines=[
                line.model_copy(update={"request": None, "error": refusal(admission.refused[line.line])})
                if line.line in admission.refused
                else line
                for line in lines
            ]
        )
        reservation = admission.reservation
        created = reservation.created_at if reservation is not None else self._clock()
        job = Job(
            job_id=chunk_id,
            tenant_id=tenant_id,
            kind=first.kind,
            model=model,
            status=JobStatus.QUEUED,
            created_at=created,
            deadline=deadline,
            body_key=request_body_key(tenant_id, chunk_id),
            batch_id=batch_id,
            lane="batch",
        )
        self._bodies.put_chunk(job.body_key, body)
        if reservation is None:
            error = JobError(code="no_line_admitted", message="no line of this chunk was admitted")
            self._settlement.reject(job, error)
            return job
        try:
            self._jobs.create(job)
        except Conflict:
            existing = self._jobs.get(tenant_id, chunk_id)
            if existing is None:  # pragma: no cover - the condition failed because it exists
                raise
            return existing
        return job

    def requeue(self, job: Job, lane: Lane) -> None:
        """Put a queued job's message on its lane's queue (again, for a redelivered batch start). A
        deferrable job is held instead, in the jobs table, until the scheduler lets it go."""
        if lane in DEFERRABLE_LANES:
            return
        self._queues[lane].send(RequestMessage(tenant_id=job.tenant_id, job_id=job.job_id))

    @staticmethod
    def job_for(
        request: PackedRequest,
        created: datetime,
        deadline: datetime,
        batch_id: str | None = None,
        custom_id: str | None = None,
        lane: Lane = "interactive",
    ) -> Job:
        return Job(
            job_id=request.job_id,
            tenant_id=request.tenant_id,
            kind=request.kind,
            model=request.model,
            status=JobStatus.QUEUED,
            created_at=created,
            deadline=deadline,
            body_key=request_body_key(request.tenant_id, request.job_id),
            batch_id=batch_id,
            custom_id=custom_id,
            lane=lane,
        )
