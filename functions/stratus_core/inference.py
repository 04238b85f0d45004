"""Interactive inference requests: accepted through the job intake, then waited for."""

from __future__ import annotations

import time
from collections.abc import Callable

from stratus_core.errors import NotFound
from stratus_core.intake import JobIntake
from stratus_core.jobs import Job, JobStore, new_job_id
from stratus_core.openai_types import InferenceRequest, packed_request

MAX_WAIT_SECONDS = 25
"""The longest a request waits for its answer inside the API function (API Gateway's integration
timeout is 30 s; the function's is 29 s)."""


class InferenceService:
    def __init__(
        self,
        intake: JobIntake,
        jobs: JobStore,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._intake = intake
        self._jobs = jobs
        self._sleep = sleep

    def submit(self, tenant_id: str, request: InferenceRequest) -> Job:
        """Admit and queue one request (raising the refusal that names its limit)."""
        return self._intake.accept(packed_request(request, new_job_id(), tenant_id))

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
