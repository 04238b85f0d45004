"""The sweeper's domain: nothing dispatched waits forever, nothing reserved is held forever.

Each run, in order:
1. dispatched jobs whose notification is late (`recheck_at` passed: `ResultCheckSeconds` after
   dispatch, then backing off) are looked up in S3: SageMaker's output or failure file finishes
   them (the notification was lost); with neither yet, they are looked at again after as long as
   they have waited (at most an hour), so a job queued behind a cold start is not failed;
2. jobs past their deadline are finished the same way, or expire and release their reservation;
3. reservations whose job was never recorded, or ended without releasing them, are given back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stratus_core.clock import utcnow
from stratus_core.contract import JobError, PackResult
from stratus_core.jobs import Job, JobStatus, JobStore
from stratus_core.results import PackReader, ResultsProcessor
from stratus_core.settlement import Settlement

logger = logging.getLogger(__name__)

ORPHAN_GRACE = timedelta(minutes=15)
"""A reservation younger than this may still get its job (the API is between the two writes)."""


@dataclass(frozen=True)
class SweepReport:
    recovered: int  # jobs finished from S3 after a lost notification
    overdue: int  # jobs found past their deadline
    resolved: int  # of those, how many this run finished (from S3 or by expiring them)
    orphans_released: int


@dataclass
class FileCache:
    """SageMaker's files read during one sweep (None: not there)."""

    outputs: dict[str, PackResult | None] = field(default_factory=dict)
    failures: dict[str, str | None] = field(default_factory=dict)
    jobs_finished: int = 0  # jobs these files finished


class Sweeper:
    def __init__(
        self,
        jobs: JobStore,
        results: ResultsProcessor,
        reader: PackReader,
        settlement: Settlement,
        *,
        batch: int = 100,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._jobs = jobs
        self._results = results
        self._reader = reader
        self._settlement = settlement
        self._batch = batch
        self._clock = clock

    def run(self) -> SweepReport:
        now = self._clock()
        recovered = self.recover_unanswered(now)
        overdue = self._jobs.overdue(now, self._batch)
        resolved = sum(self.resolve_overdue(job) for job in overdue)
        orphans = self._settlement.release_orphans(self._job_is_live, ORPHAN_GRACE, self._batch)
        return SweepReport(recovered, len(overdue), resolved, orphans)

    def recover_unanswered(self, now: datetime) -> int:
        """Dispatched jobs whose notification is late: finish those whose output or failure file
        exists; look again later at the others. Returns how many jobs this call finished (not those
        a notification finished meanwhile). Each file is read once per call, however many jobs of
        its pack are late."""
        files = FileCache()
        for job in self._jobs.unanswered(now, self._batch):
            if not self._resolve_from_files(job, files):
                self._jobs.recheck_later(job, now)
        if files.jobs_finished:
            logger.warning("finished jobs whose notification never came", extra={"jobs": files.jobs_finished})
        return files.jobs_finished

    def resolve_overdue(self, job: Job) -> bool:
        """One job past its deadline: from SageMaker's output or failure file if one exists (the
        notification was lost), else it expires."""
        if self._resolve_from_files(job, FileCache()):
            return True
        error = JobError(code="expired", message="no result before the request's deadline")
        return self._settlement.fail(job, JobStatus.EXPIRED, error)

    def _job_is_live(self, tenant_id: str, job_id: str) -> bool:
        job = self._jobs.get(tenant_id, job_id)
        return job is not None and not job.status.is_terminal

    def _resolve_from_files(self, job: Job, files: FileCache) -> bool:
        """True once the job is terminal from SageMaker's output or failure file; False if neither
        file exists (or the output does not settle this job)."""
        if job.output_location:
            if job.output_location not in files.outputs:
                result = files.outputs[job.output_location] = self._reader.read_result(job.output_location)
                if result is not None:
                    files.jobs_finished += self._results.apply_result(result)
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
                files.jobs_finished += self._settlement.fail(job, JobStatus.FAILED, error)
                return True
        return False
