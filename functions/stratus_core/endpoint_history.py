"""The endpoint over time, as the scheduler's runs recorded it: what scale to zero did and saved.

Each scheduler run ends with a `RunRecord` (`Scheduler.run`), but one is *written* only when it
differs from the last one written in anything but its time (`worth_recording`), or when that one
is `HEARTBEAT_S` old: an idle endpoint at night writes one record an hour, not one a minute, so the
idle month's bill does not grow, and a chart still has a point an hour. The series is therefore a
step function: each record's values hold from its `at` until the next record's. A reason that
counts (held work's slack, the idle time before a scale-in) differs at every run, so those runs
are each recorded: a point a minute while work is held, about $0.03 of writes for a month of it.

From it (pure functions, so the console's numbers are tested on hand-made series):

- **cold starts**: a start begins at a run that asks for an instance (`desired ≥ 1`) while none is
  in service, and ends at the first later run that finds one in service; one still starting has
  no end yet;
- **instance-hours**: ∫ in_service dt over the window, what the endpoint billed;
- **always-on instance-hours**: the window's hours × the most instances seen (at least one), what a
  fixed endpoint big enough for the same peak would have billed.

Records live in the Usage table (`adapters/dynamo/run_history.py`) for `RETENTION_S`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

from stratus_core.clock import utcnow
from stratus_core.scheduling import SchedulerState

if TYPE_CHECKING:
    from stratus_core.scheduler import SchedulerMemory

HEARTBEAT_S = 3600.0  # a record at least this often, changed or not
RETENTION_S = 7 * 86_400  # each record's TTL: the longest window the route shows (168 h)
MAX_HOURS = 168


class RunRecord(BaseModel):
    """One scheduler run: what it saw, what it decided and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: float = Field(description="When the run observed the endpoint, epoch seconds (to the millisecond)")
    in_service: int = Field(ge=0, description="Instances in service")
    desired: int = Field(ge=0, description="Instances the run decided the endpoint should have")
    interactive: int = Field(ge=0, description="Interactive requests queued or running (the backlog)")
    released: int = Field(ge=0, description="Deferrable requests let go and not finished")
    waiting: int = Field(ge=0, description="Deferrable requests held (the held work)")
    release: int = Field(ge=0, description="Held requests this run let go")
    reason: str = Field(description="Why, as the policy said it")

    def same_as(self, other: RunRecord) -> bool:
        """The same in everything but the time."""
        return self.model_dump(exclude={"at"}) == other.model_dump(exclude={"at"})


def worth_recording(run: RunRecord, last: RunRecord | None, heartbeat_s: float = HEARTBEAT_S) -> bool:
    """Whether `run` is written, after `last`, the last record written."""
    return last is None or not run.same_as(last) or run.at - last.at >= heartbeat_s


class ColdStart(BaseModel):
    asked_at: float = Field(description="The first run that asked for an instance while none was in service")
    in_service_at: float | None = Field(description="The first later run that found one in service (null: starting)")
    seconds: float | None = Field(description="in_service_at - asked_at")


def cold_starts(runs: Sequence[RunRecord]) -> list[ColdStart]:
    """The starts from zero in `runs` (oldest first), the last one possibly unfinished."""
    found: list[ColdStart] = []
    asked: float | None = None
    for run in runs:
        if asked is None and run.in_service == 0 and run.desired >= 1:
            asked = run.at
        elif asked is not None and run.in_service >= 1:
            found.append(ColdStart(asked_at=asked, in_service_at=run.at, seconds=round(run.at - asked, 3)))
            asked = None
    if asked is not None:
        found.append(ColdStart(asked_at=asked, in_service_at=None, seconds=None))
    return found


def instance_hours(runs: Sequence[RunRecord], start: float, end: float) -> float:
    """∫ in_service dt over [start, end]: each record's count holds until the next record (the last
    one's until `end`); before the first record nothing is known and nothing is counted."""
    if not runs:
        return 0.0
    seconds = 0.0
    ends = [following.at for following in runs[1:]] + [end]
    for run, next_at in zip(runs, ends, strict=True):
        since, until = max(run.at, start), min(next_at, end)
        if until > since:
            seconds += run.in_service * (until - since)
    return seconds / 3600


def always_on_instance_hours(runs: Sequence[RunRecord], hours: float) -> float:
    """What an endpoint that never scaled, sized for the most instances seen (at least one), bills."""
    return hours * max(1, max((run.in_service for run in runs), default=0))


class RunHistory(Protocol):
    def record(self, run: RunRecord) -> None:
        """Keep `run` (for `RETENTION_S`)."""
        ...

    def window(self, start: float, end: float) -> list[RunRecord]:
        """The records from `start` to `end`, oldest first, after the last one before `start`, if
        any (the value a chart starts the window with)."""
        ...


class EndpointReport(BaseModel):
    object: str = "endpoint"
    endpoint_name: str
    now: float = Field(description="Epoch seconds: the window is [now - hours × 3600, now]")
    hours: int
    runs: list[RunRecord] = Field(description="Oldest first, after the record just before the window, if any")
    cold_starts: list[ColdStart]
    instance_hours: float = Field(description="∫ in_service dt over the window")
    always_on_instance_hours: float = Field(description="hours × max(1, the most instances in service seen)")
    scheduler: SchedulerState = Field(description="What the scheduler's last run left for the next")


class EndpointHistory:
    """The operators' picture of the endpoint: its recorded runs and what they add up to."""

    def __init__(
        self,
        history: RunHistory,
        memory: SchedulerMemory,
        endpoint_name: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._history = history
        self._memory = memory
        self._endpoint_name = endpoint_name
        self._clock = clock

    def report(self, hours: int) -> EndpointReport:
        now = round(self._clock().timestamp(), 3)
        start = now - hours * 3600
        runs = self._history.window(start, now)
        return EndpointReport(
            endpoint_name=self._endpoint_name,
            now=now,
            hours=hours,
            runs=runs,
            cold_starts=cold_starts(runs),
            instance_hours=round(instance_hours(runs, start, now), 6),
            always_on_instance_hours=always_on_instance_hours(runs, hours),
            scheduler=self._memory.load().state,
        )
