"""The scheduler function's domain: observe, `scheduling.decide`, carry out, remember.

Once a minute (an EventBridge schedule; every few seconds in the local cloud):

1. **Observe.** The endpoint's instances and status (`DescribeEndpoint`, uncached); the held
   deferrable jobs and their earliest deadline (`WaitingJobsIndex`); the jobs let go (interactive
   ones from their creation) and not finished (`SweepJobsIndex`: queued for the endpoint or running
   on it); the messages waiting in the interactive and the batch lane's queues; and, from the
   scheduler's own item, when the dispatcher last sent work. In-flight jobs count both as
   interactive backlog (work the instances must drain: they size the endpoint) and as released work
   (they hold slots: the release budget leaves them out), so the policy never needs to know which
   lane an in-flight job came from. A job whose message is still on a queue is counted twice (the
   queue's depth and the index) until the dispatcher takes it (seconds, longer while dispatches
   fail and are retried): a larger backlog, never a smaller one.
2. **Decide** with `scheduling.decide` (pure: the same code `stratus simulate` runs).
3. **Carry out.** The capacity first (`CapacityControl`: the scalable target's range, only with
   `Scaling=Scheduler`), then the releases: the held jobs' messages go to the batch lane's queue,
   earliest deadline first, ten to a `SendMessageBatch`, and then each one sent stops being held
   (one SQS refused stays held for the next run). A crash between the two, or a `let_go` write
   that fails (DynamoDB's 500 after botocore's retries), leaves it held *and* queued: the next run
   sends it again unless the dispatcher took it first (dispatching it ends its hold too), and the
   dispatcher skips a job that is no longer queued, so nothing runs twice and nothing is lost.
4. **Record** the run (`endpoint_history.RunRecord`: what it saw, decided and let go, and why) in
   the run history, only when it differs from the last one recorded in anything but its time, or
   that one is an hour old: an idle endpoint writes one record an hour. The last one recorded is
   kept on the scheduler's own item, written by step 5 anyway, so deciding costs no read or write.
   A record that cannot be written is logged and counted (`SchedulerRun.history_errors`, the
   `SchedulerHistoryErrors` metric) and never fails the run; the next run tries again, since what
   it sees still differs from the last one recorded. `GET /admin/endpoint` reads the history.
5. **Remember** the policy's state and the last record, conditionally on the version read in step
   1: two runs that overlap cannot both write it, and a run that crashed before this step left the
   old state, which the next run decides from again.

One held job whose `let_go` raises never stops the others: the error is logged with the job's id,
counted in `SchedulerRun.errors`, the other jobs are let go and the state is saved; the handler then
fails the invocation so that the functions' error alarm fires (as the sweeper does). Before this,
the first such write ended the run: the jobs after it stayed held though their messages were sent,
and the state was not saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stratus_core.batches.chunks import lines_of
from stratus_core.clock import utcnow
from stratus_core.endpoint_history import RunHistory, RunRecord, worth_recording
from stratus_core.endpoint_state import EndpointState
from stratus_core.jobs import HeldJobs, Job, RequestMessage
from stratus_core.scheduling import Decision, Observation, SchedulerConfig, SchedulerState, decide

logger = logging.getLogger(__name__)


class CapacityControl(Protocol):
    def set(self, instances: int) -> None:
        """Make the endpoint have `instances` instances."""
        ...


class QueueDepth(Protocol):
    def depth(self) -> int:
        """Messages waiting or being processed."""
        ...


@dataclass(frozen=True)
class Remembered:
    state: SchedulerState
    last_work_at: datetime | None
    version: int
    last_run: RunRecord | None = None  # the last run recorded in the run history


class SchedulerMemory(Protocol):
    def load(self) -> Remembered: ...

    def save(self, state: SchedulerState, version: int, last_run: RunRecord | None = None) -> bool:
        """False when another run saved first (its version is newer). `last_run`: the last run
        recorded in the run history (None: leave the one kept as it is)."""
        ...

    def work_sent(self, at: datetime) -> None:
        """The dispatcher sent work to the endpoint at `at`."""
        ...


@dataclass(frozen=True)
class SchedulerRun:
    observation: Observation | None
    decision: Decision | None
    capacity_set: bool
    released: int
    saved: bool
    reason: str
    errors: int = 0  # held jobs whose `let_go` raised; the others were still let go
    recorded: bool = False  # the run was written to the run history
    history_errors: int = 0  # the record's write raised: logged and counted, the run went on


class ReleaseQueue(Protocol):
    def send_batch(self, messages: Sequence[RequestMessage]) -> list[bool]:
        """Send them (SQS's `SendMessageBatch`, ten to a request); which ones were sent."""
        ...


class Scheduler:
    def __init__(
        self,
        held: HeldJobs,
        release_queue: ReleaseQueue,
        interactive_queue: QueueDepth,
        release_queue_depth: QueueDepth,
        endpoint: EndpointState,
        capacity: CapacityControl | None,
        memory: SchedulerMemory,
        config: SchedulerConfig,
        clock: Callable[[], datetime] = utcnow,
        history: RunHistory | None = None,
    ) -> None:
        self._held = held
        self._release_queue = release_queue
        self._interactive = interactive_queue
        self._released = release_queue_depth
        self._endpoint = endpoint
        self._capacity = capacity
        self._memory = memory
        self._config = config
        self._clock = clock
        self._history = history

    def observe(self, remembered: Remembered) -> Observation | None:
        capacity = self._endpoint.capacity()
        if capacity is None:
            return None
        waiting, earliest = self._held.held_summary()
        dispatched = self._held.in_flight_count()
        last = remembered.last_work_at
        return Observation(
            now=self._clock().timestamp(),
            in_service=capacity.instances,
            desired=capacity.desired,
            interactive=self._interactive.depth() + dispatched,
            released=self._released.depth() + dispatched,
            waiting=waiting,
            earliest_deadline=earliest.timestamp() if earliest else None,
            last_work_at=last.timestamp() if last else None,
            updating=capacity.updating,
        )

    def run(self) -> SchedulerRun:
        remembered = self._memory.load()
        observation = self.observe(remembered)
        if observation is None:
            logger.warning("endpoint state unknown: nothing changed")
            return SchedulerRun(None, None, False, 0, False, "endpoint state unknown")
        decision = decide(observation, self._config, remembered.state)
        capacity_set = False
        if self._capacity is not None and (decision.desired != observation.desired or decision.ask_again):
            self._capacity.set(decision.desired)
            capacity_set = True
        released, errors = self._release(self._held.held(decision.release))
        run = RunRecord(
            at=round(observation.now, 3),
            in_service=observation.in_service,
            desired=decision.desired,
            interactive=observation.interactive,
            released=observation.released,
            waiting=observation.waiting,
            release=released,
            reason=decision.reason,
        )
        last_run, history_errors = self._record(run, remembered.last_run)
        saved = self._memory.save(decision.state, remembered.version, last_run)
        if not saved:
            logger.warning("another scheduler run saved its state first: this run's state is dropped")
        return SchedulerRun(
            observation,
            decision,
            capacity_set,
            released,
            saved,
            decision.reason,
            errors,
            recorded=last_run is run,
            history_errors=history_errors,
        )

    def _record(self, run: RunRecord, last: RunRecord | None) -> tuple[RunRecord | None, int]:
        """Write `run` to the history when it is worth it; (the last run recorded now, errors)."""
        if self._history is None or not worth_recording(run, last):
            return last, 0
        try:
            self._history.record(run)
        except Exception:  # the history is for people: losing a point must not stop the endpoint's scaling
            logger.exception("could not record the scheduler run")
            return last, 1
        return run, 0

    def _release(self, held: list[Job]) -> tuple[int, int]:
        """Send the held jobs' messages, then let go each one sent; returns (requests let go, errors). One
        not sent stays held, and so does one whose `let_go` raised (its message went: see step 3)."""
        sent = self._release_queue.send_batch([RequestMessage(tenant_id=j.tenant_id, job_id=j.job_id) for j in held])
        at = self._clock()
        released = errors = 0
        for job, was_sent in zip(held, sent, strict=True):
            if not was_sent:
                continue
            try:
                if self._held.let_go(job, at):
                    released += lines_of(job.job_id)  # requests: a batch chunk's lines
            except Exception:  # one job's failure must not stop the others; counted and re-raised by the handler
                logger.exception("could not let a held job go", extra={"job_id": job.job_id})
                errors += 1
        return released, errors
