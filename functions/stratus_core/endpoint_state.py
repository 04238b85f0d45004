"""Is the model starting, or is the request just still running? What a waiting client is told.

The endpoint's capacity comes from SageMaker's `DescribeEndpoint` (cached a few seconds per
process by the adapter): an async endpoint scaled to zero has no instance in service, and while
auto scaling adds one its desired count is above the current one. A request that arrives then waits
for the instance to start, which takes minutes on a GPU instance (`ExpectedColdStartSeconds`);
the `Retry-After` it gets is what is left of that, so that the client's retries are spread over the
start instead of hammering it. The official SDK honours `Retry-After` up to 120 s (and does not
retry at all above it): the answer never asks for more than 60 s, and the next one says again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stratus_core.errors import JobNotReady
from stratus_core.jobs import Job, JobStatus

MAX_RETRY_AFTER_SECONDS = 60
MIN_STARTING_RETRY_AFTER_SECONDS = 5
STILL_RUNNING_RETRY_AFTER_SECONDS = 1
"""A retry of a running request waits for it again inside the API: coming back at once costs nothing."""
UNKNOWN_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Capacity:
    instances: int  # in service now
    desired: int  # what scaling asked for
    changed_at: datetime | None  # when the endpoint last started changing (the scale-out, when starting)
    status: str = "InService"  # DescribeEndpoint's EndpointStatus (Updating during an update or a scale)

    @property
    def updating(self) -> bool:
        """Not `InService` for another reason than a change of instance count (SageMaker reports a
        scale as `Updating` too, with the desired count apart from the current one): a deploy, or a
        failed one, which the scheduler must not fight."""
        return self.status != "InService" and self.desired == self.instances

    @property
    def starting(self) -> bool:
        return self.instances == 0


class EndpointState(Protocol):
    def capacity(self) -> Capacity | None:
        """The endpoint's instances now, or None when they cannot be read."""
        ...


def not_ready(job: Job, capacity: Capacity | None, expected_cold_start_seconds: int, now: datetime) -> JobNotReady:
    attach = f"retry it: the retry attaches to this request (job {job.job_id}), which is billed once"
    if job.lane == "flex" and job.status is JobStatus.QUEUED:
        return JobNotReady(
            job.job_id,
            "flex_waiting",
            MAX_RETRY_AFTER_SECONDS,
            f"This flex request waits for a warm endpoint, until {job.deadline.isoformat()} at the latest; "
            f"{attach}, or send `Prefer: respond-async` and read GET /v1/jobs/{job.job_id}.",
        )
    if capacity is None:
        return JobNotReady(
            job.job_id, "still_running", UNKNOWN_RETRY_AFTER_SECONDS, f"The request is still running; {attach}."
        )
    if capacity.starting:
        elapsed = (now - capacity.changed_at).total_seconds() if capacity.desired > 0 and capacity.changed_at else 0
        left = max(0, int(expected_cold_start_seconds - elapsed))
        retry_after = min(MAX_RETRY_AFTER_SECONDS, max(MIN_STARTING_RETRY_AFTER_SECONDS, left))
        return JobNotReady(
            job.job_id,
            "model_starting",
            retry_after,
            f"The model is starting: the endpoint had no instance and is adding one (about {left} s left); {attach}.",
        )
    return JobNotReady(
        job.job_id, "still_running", STILL_RUNNING_RETRY_AFTER_SECONDS, f"The request is still running; {attach}."
    )
