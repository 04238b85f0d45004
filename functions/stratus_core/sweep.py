"""The sweeper's domain: nothing dispatched waits forever, nothing reserved is held forever.

Each run, in order, over the jobs that are due (`JobStore.due`: one read of the jobs table's
`SweepJobsIndex`, plus the held jobs past their deadline and the previous layout's past theirs):
1. dispatched jobs whose notification is late (`ResultCheckSeconds` after they were created or let
   go, then backing off) are looked up in S3: SageMaker's output or failure file finishes them (the
   notification was lost); with neither yet, they are looked at again after as long as they have
   waited (at most an hour, and at their deadline at the latest), so a job queued behind a cold
   start is not failed; a job not dispatched yet is looked at again the same way;
2. jobs past their deadline are finished the same way, or expire and release their reservation;
3. reservations whose job was never recorded are given back, and those whose job ended without
   settling them are settled from the job;
4. settled usage of days that are over moves from the tenant items to the usage table's day rows
   (`usage_roll`), so that a tenant item never grows by day.

One job that cannot be resolved (its file unreadable, a write that keeps failing) never stops the
others: the error is logged with the job's id, counted in `SweepReport.errors`, and the run goes on
to the next job and the next step; the handler then fails the invocation so that the functions'
error alarm fires. (On AWS a read the role may not make answers 403 `AccessDenied` for every job;
before this, the first such read aborted the whole sweep, so overdue jobs never expired and orphaned
reservations were never released.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from stratus_core.clock import day_key, utcnow
from stratus_core.contract import JobError, PackResult
from stratus_core.jobs import Job, JobStatus, JobStore
from stratus_core.results import PackReader, ResultsProcessor
from stratus_core.settlement import Settlement

logger = logging.getLogger(__name__)
T = TypeVar("T")

ORPHAN_GRACE = timedelta(minutes=15)
"""A reservation younger than this may still get its job (the API is between the two writes). The
default of `ORPHAN_GRACE_SECONDS`; the local cloud's fault scenario shortens it, so that the orphans
its landed-then-500 admissions leave are released within the run."""


@dataclass(frozen=True)
class SweepReport:
    recovered: int  # jobs finished from S3 after a lost notification
    overdue: int  # jobs found past their deadline
    resolved: int  # of those, how many this run finished (from S3 or by expiring them)
    orphans_released: int
    errors: int = 0  # jobs (or steps) that raised; the others were still swept
    usage_rows_moved: int = 0


@dataclass
class FileCache:
    """SageMaker's files read during one sweep (None: not there)."""

    outputs: dict[str, PackResult | None] = field(default_factory=dict)
    failures: dict[str, str | None] = field(default_factory=dict)
    jobs_finished: int = 0  # jobs these files finished
    errors: int = 0  # jobs that raised while being resolved


class Sweeper:
    def __init__(
        self,
        jobs: JobStore,
        results: ResultsProcessor,
        reader: PackReader,
        settlement: Settlement,
        *,
        batch: int = 100,
        orphan_grace: timedelta = ORPHAN_GRACE,
        usage_roll: Callable[[str], int] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._usage_roll = usage_roll
        self._orphan_grace = orphan_grace
        self._jobs = jobs
        self._results = results
        self._reader = reader
        self._settlement = settlement
        self._batch = batch
        self._clock = clock

    def run(self) -> SweepReport:
        now = self._clock()
        files = FileCache()
        # twice the batch: what the two reads it replaced (late notifications, past deadlines) took
        due = self._step(lambda: self._jobs.due(now, 2 * self._batch), files) or []
        finished: set[tuple[str, str]] = set()

        def recover(job: Job) -> bool:  # a dispatched job, even past its deadline, first from its files
            if self._resolve_from_files(job, files):
                finished.add((job.tenant_id, job.job_id))
                return True
            if job.deadline > now:
                self._jobs.recheck_later(job, now)
            return False

        self._each((job for job in due if job.status is JobStatus.DISPATCHED or job.deadline > now), files, recover)
        overdue = [job for job in due if job.deadline <= now and (job.tenant_id, job.job_id) not in finished]
        if files.jobs_finished:
            logger.warning("finished jobs whose notification never came", extra={"jobs": files.jobs_finished})
        recovered, errors = files.jobs_finished, files.errors
        overdue_files = FileCache()
        resolved = sum(self._each(overdue, overdue_files, self.resolve_overdue))
        orphans = self._step(lambda: self._settlement.release_orphans(self._orphan_grace, self._batch), overdue_files)
        moved = 0
        if self._usage_roll is not None:
            roll = self._usage_roll
            moved = self._step(lambda: roll(day_key(now)), overdue_files) or 0
        return SweepReport(recovered, len(overdue), resolved, orphans or 0, errors + overdue_files.errors, moved)

    @staticmethod
    def _each(jobs: Iterable[Job], files: FileCache, resolve: Callable[[Job], bool]) -> list[bool]:
        """`resolve` for each job; a job that raises is logged and counted, and the next one goes on."""
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(resolve(job))
            except Exception:  # one job's failure must not stop the sweep; counted and re-raised by the handler
                logger.exception("could not sweep a job", extra={"job_id": job.job_id, "status": str(job.status)})
                files.errors += 1
        return outcomes

    @staticmethod
    def _step(run: Callable[[], T], files: FileCache) -> T | None:
        try:
            return run()
        except Exception:  # a failed step must not stop the next one; counted and re-raised by the handler
            logger.exception("a sweep step failed")
            files.errors += 1
            return None

    def resolve_overdue(self, job: Job) -> bool:
        """One job past its deadline: from SageMaker's output or failure file if one exists (the
        notification was lost), else it expires."""
        if self._resolve_from_files(job, FileCache()):
            return True
        error = JobError(code="expired", message="no result before the request's deadline")
        return self._settlement.fail(job, JobStatus.EXPIRED, error)

    def _resolve_from_files(self, job: Job, files: FileCache) -> bool:
        """True once the job is terminal from SageMaker's output or failure file; False if neither
        file exists (or the output does not settle this job)."""
        if job.output_location:
            if job.output_location not in files.outputs:
                result = files.outputs[job.output_location] = self._reader.read_result(job.output_location)
                if result is not None:
                    files.jobs_finished += self._results.apply_result(result, job.output_location)
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
