"""Interactive inference requests: accepted through the job intake, waited for, and retried.

Asynchrony never leaks to an OpenAI client. A completion either answers within the wait, or is
a retryable `503` (`JobNotReady`) that names the job and says honestly when to come back: the
endpoint's own state tells whether the model is starting (an instance is being added to an endpoint
at zero, which takes minutes) or the request is merely still running. The client's retry attaches
to the **same** job instead of admitting a second one:

- with an `Idempotency-Key`, the key identifies the request: the first one with a key wins,
  every later one gets its job (a different body with the same key is a 409);
- without one, the official SDKs resend the identical body with `x-stainless-retry-count` ≥ 1:
  the fingerprint of (tenant, key, route, canonical body) finds the job of the first attempt —
  unless that job failed (a model or endpoint failure is a 5xx, which the SDK retries): nothing was
  billed for it, and the retry is a fresh try, as it would be against OpenAI.

Either way the claim is written in the same transaction as the reservation (`Claim`), so it is
reserved once and billed once, and a retry that arrives after the job finished gets its answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from stratus_core.admission import AdmissionService, Claim, ClaimTaken
from stratus_core.clock import utcnow
from stratus_core.contract import PackedRequest
from stratus_core.endpoint_state import EndpointState, not_ready
from stratus_core.errors import IdempotencyMismatch, InvalidRequest, JobNotReady, NotFound, RateWindow, Unavailable
from stratus_core.intake import JobIntake
from stratus_core.jobs import Job, JobList, JobStatus, JobStore, new_job_id
from stratus_core.openai_types import InferenceRequest, packed_request

MAX_WAIT_SECONDS = 25
"""The longest a request waits for its answer inside the API function (API Gateway's integration
timeout is 30 s; the function's is 29 s)."""
WAIT_POLL_SECONDS = 0.2
WAIT_POLL_FAST_SECONDS = 5.0
"""How often a waiting request reads its job: every 0.2 s for the first 5 s (where a warm endpoint
answers), then doubling to 1 s (a cold start's wait, where a second late matters less). A strongly
consistent read costs one read unit ($0.125 per million); the API function waiting 0.2 s costs
$0.67 per million at its 256 MB. Reading every 0.2 s finds the answer 0.1 s after it lands on
average, for $0.63 per million per second waited. The wait used to double from 0.1 s to 1 s at once, which
found a warm answer up to a second late and billed that second (`bench/aws_bill.py`)."""
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
SDK_RETRY_TTL = timedelta(hours=1)
MAX_IDEMPOTENCY_KEY = 255
UNBILLED_ENDS = {JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED}
NEVER_RAN = "enqueue_failed"
"""The error of a job the service could not store or queue (a 500 to its client): nothing was billed,
and it did not reach the endpoint unless an SQS send that timed out had in fact delivered its message
and the dispatcher took it before the job was failed (the endpoint's answer to it is then dropped,
unbilled). So a retry with its Idempotency-Key is a fresh try, not that 500 again (as at Stripe,
whose keys save no result for a request that never began executing)."""


def never_ran(job: Job) -> bool:
    return job.status is JobStatus.FAILED and job.error is not None and job.error.code == NEVER_RAN


@dataclass(frozen=True)
class RetryIdentity:
    """What makes a request the repeat of an earlier one."""

    fingerprint: str
    body_hash: str
    exclusive: bool  # an Idempotency-Key: one job per key
    is_retry: bool  # look for the earlier job before admitting anything
    ttl: timedelta


def retry_identity(
    tenant_id: str, key_id: str, route: str, body: str, headers: Mapping[str, str]
) -> RetryIdentity | None:
    """The request's retry identity from its headers (lower-case names) and its JSON body, or
    None when the client can neither send a key nor retry identically (no claim is written then)."""
    body_hash = hashlib.sha256(_canonical(body).encode()).hexdigest()
    key = headers.get("idempotency-key")
    if key is not None:
        if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidRequest(
                f"an Idempotency-Key has 1 to {MAX_IDEMPOTENCY_KEY} characters", param="idempotency-key"
            )
        fingerprint = _digest("idempotency-key", tenant_id, route, key)
        return RetryIdentity(fingerprint, body_hash, exclusive=True, is_retry=True, ttl=IDEMPOTENCY_KEY_TTL)
    count = headers.get("x-stainless-retry-count")
    if count is None:
        return None
    fingerprint = _digest("sdk", tenant_id, key_id, route, body_hash)
    retried = count.strip().isdigit() and int(count) > 0
    return RetryIdentity(fingerprint, body_hash, exclusive=False, is_retry=retried, ttl=SDK_RETRY_TTL)


def _canonical(body: str) -> str:
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return body


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Submitted:
    job: Job
    window: RateWindow | None  # the tenant's standing in this minute's limits
    attached: bool  # a retry that found the job of an earlier attempt


class InferenceService:
    def __init__(
        self,
        intake: JobIntake,
        jobs: JobStore,
        admission: AdmissionService,
        endpoint: EndpointState | None = None,
        *,
        expected_cold_start_seconds: int = 360,
        flex_window_seconds: int = 3600,
        max_model_len: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._flex_window = timedelta(seconds=flex_window_seconds)
        self._intake = intake
        self._jobs = jobs
        self._admission = admission
        self._endpoint = endpoint
        self._cold_start = expected_cold_start_seconds
        self._max_model_len = max_model_len
        self._sleep = sleep
        self._clock = clock

    def submit(self, tenant_id: str, request: InferenceRequest, retry: RetryIdentity | None = None) -> Submitted:
        """Admit and queue one request (raising the refusal that names its limit), or attach a retry
        to the job its earlier attempt made."""
        replaces = None
        if retry is not None and retry.is_retry:
            earlier = self._attach(tenant_id, retry)
            if isinstance(earlier, Submitted):
                return earlier
            replaces = earlier  # an earlier attempt's job that never ran: this one takes its claim
        claim = None
        if retry is not None:
            expires = int((self._clock() + retry.ttl).timestamp())
            claim = Claim(retry.fingerprint, retry.body_hash, retry.exclusive, expires, replaces=replaces)
        for _ in range(2):
            try:
                lane = request.lane
                deadline = self._clock() + self._flex_window if lane == "flex" else None
                packed = packed_request(request, new_job_id(self._clock()), tenant_id)
                self._check_context(packed)
                job, window = self._intake.admit(packed, lane, deadline=deadline, claim=claim)
            except ClaimTaken as taken:  # a concurrent request with the same Idempotency-Key won
                if retry is not None and taken.claimed.body_hash != retry.body_hash:
                    raise IdempotencyMismatch("this Idempotency-Key was used with a different request body") from None
                job_found = self._jobs.get(tenant_id, taken.claimed.job_id)
                if job_found is not None and never_ran(job_found) and claim is not None:
                    claim = replace(claim, replaces=job_found.job_id)  # it never ran: take its claim
                    continue
                if job_found is not None:
                    return Submitted(job_found, self._admission.current_window(tenant_id), attached=True)
                if claim is None or not self._admission.attempt_is_dead(tenant_id, taken.claimed.job_id):
                    raise Unavailable("a request with this Idempotency-Key is being accepted; retry", 1) from None
                claim = replace(claim, replaces=taken.claimed.job_id)  # its attempt died: take its claim
                continue
            return Submitted(job, window, attached=False)
        raise Unavailable("a request with this Idempotency-Key is being accepted; retry", 1)

    def _check_context(self, request: PackedRequest) -> None:
        """The context window is the artifact's `max_model_len` (the template's `MaxModelLen`, which the
        model server serves too): a `max_tokens` that leaves no room for a prompt is refused here,
        before anything is reserved. A prompt too long for what is left is refused by the model server
        (`context_length_exceeded`, unbilled): only it counts the prompt's tokens exactly."""
        limit = self._max_model_len
        if limit is not None and request.params.max_tokens >= limit:
            raise InvalidRequest(
                f"max_tokens is {request.params.max_tokens}, but this model's context window is {limit} tokens,"
                " prompt and completion together",
                param="max_tokens",
                code="context_length_exceeded",
            )

    def _attach(self, tenant_id: str, retry: RetryIdentity) -> Submitted | str | None:
        """The earlier attempt's job to attach to; None for a fresh try; the job id of an earlier
        attempt that never ran (`NEVER_RAN`) when its claim is exclusive: a fresh try that takes it."""
        claimed = self._admission.find_claim(tenant_id, retry.fingerprint)
        if claimed is None:
            return None
        if claimed.body_hash != retry.body_hash:
            raise IdempotencyMismatch("this Idempotency-Key was used with a different request body")
        job = self._jobs.get(tenant_id, claimed.job_id)
        if job is None:
            return None  # the earlier attempt was refused after its claim (nothing was admitted)
        if job.status in UNBILLED_ENDS and not retry.exclusive:
            return None  # the first attempt failed (nothing billed): the SDK's retry is a fresh try
        if never_ran(job):
            return job.job_id
        return Submitted(job, self._admission.current_window(tenant_id), attached=True)

    def get(self, tenant_id: str, job_id: str) -> Job:
        job = self._jobs.get(tenant_id, job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    def recent(self, tenant_id: str, limit: int, after: str | None) -> JobList:
        """A page of the tenant's jobs, newest first; one job more is read to know if there is a next page."""
        return JobList.of(self._jobs.recent(tenant_id, limit + 1, after), limit)

    def wait(self, tenant_id: str, job_id: str, seconds: float) -> Job:
        """Poll until the job is terminal or `seconds` pass (`WAIT_POLL_SECONDS` between reads)."""
        start = time.monotonic()
        deadline = start + min(seconds, MAX_WAIT_SECONDS)
        delay = WAIT_POLL_SECONDS
        job = self.get(tenant_id, job_id)
        while not job.status.is_terminal and time.monotonic() + delay < deadline:
            self._sleep(delay)
            if time.monotonic() - start > WAIT_POLL_FAST_SECONDS:
                delay = min(delay * 2, 1.0)
            job = self.get(tenant_id, job_id)
        return job

    def not_ready(self, job: Job) -> JobNotReady:
        """What to tell the client of a job still running after the wait (a retryable 503)."""
        capacity = self._endpoint.capacity() if self._endpoint is not None else None
        return not_ready(job, capacity, self._cold_start, self._clock())
