"""When the endpoint runs: one policy for `stratus simulate`, the local cloud and the scheduler function.

The endpoint bills for every minute it has an instance, whether or not it works. So the scheduler
decides, once a minute, from what is waiting and what is running, how many instances the endpoint
should have and how much deferrable work to let go to it:

- **Interactive** work (chat and text completions at the default tier) is never held: the endpoint
  gets as many instances as finish the interactive backlog within `interactive_drain_s` (at least
  one) as soon as there is any. That is counted from the backlog and the measured throughput, not
  per instance in service, so a cold start (no instance in service, requests piling up while it
  starts) never buys more instances than the backlog needs once they are up.
- **Deferrable** work (batch lines, 24 h window; `service_tier: "flex"`, `flex_window_s`) waits,
  held, until one of two things makes it worth an instance:
  1. the endpoint is **up anyway** (an instance is in service for interactive traffic);
  2. its **slack runs out**: the earliest deadline, less the start-up (when cold), the time one
     instance needs for all of it (planned at `1 / throughput_safety` of the measured throughput)
     and `deadline_margin_s`, has arrived. Then it gets as many instances as finishing before the
     deadline needs.
  So a day's deferred work runs in **as few warm windows as its deadlines allow**: each start,
  with its cold start and its idle tail, is held back to the latest moment that still fits
  everything held, and whatever arrives while the window is open rides along ("up anyway"). A day
  of batches alone used to open a window whenever `warm_window_s` of work had gathered: two or three
  windows where one would do. `warm_window_s = 0` keeps the old extreme, for a laptop: any held
  request starts the endpoint at once.
  Released work may use all but one of an instance's slots (`deferrable_share`) while interactive
  traffic is about, and every slot once none has been seen for `interactive_quiet_s`; the scheduler
  releases only what those slots finish in `release_horizon_s`: the rest stays held, so an
  interactive request that arrives later is never queued behind a day of batch lines.
- **Scale-in** happens after `idle_scale_in_s` during which fewer instances were wanted than the
  endpoint has (no work at all: to zero), instead of target tracking's 15 low minutes. Idle time
  counts from the later of `last_work_at`, the last time a request went to the endpoint (the
  dispatcher writes it: requests that arrive and finish between two runs keep the endpoint warm),
  and the last run that saw work queued or running (`busy_at`: a long request, or one that waited
  out a cold start, is idle only once it is done).
- **Faults**: an endpoint that is not `InService` (updating) is left alone; an instance that has not
  come into service `start_timeout_s` after it was asked for is asked for again, after a backoff
  that doubles each time (`retry_at`); the state is returned, never kept here, so a run that
  crashes before its caller stores the new state changes nothing the next run does not redo.

Every time is in seconds on one clock (epoch seconds on AWS, seconds from the trace's start in the
simulator). `decide` is pure: the caller reads the observation and carries out the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SchedulerConfig:
    """The template's parameters and the instance's measured throughput."""

    instance_jobs_per_s: float  # requests one instance completes per second, every slot busy (measured)
    max_instances: int = 2
    slots: int = 4  # MaxConcurrentInvocationsPerInstance
    interactive_drain_s: float = 30  # instances enough to finish the interactive backlog in this long
    startup_s: float = 360  # ExpectedColdStartSeconds: scale-out to serving
    idle_scale_in_s: float = 300  # IdleScaleInMinutes × 60
    warm_window_s: float = 1800  # WarmWindowMinutes × 60: 0 starts the endpoint for any held request at once
    throughput_safety: float = 2.0  # plan a window's start as if the instance were this many times slower
    interactive_quiet_s: float | None = 900  # no interactive work seen this long: deferrable work may use
    # every slot (None: it never does)
    deadline_margin_s: float = 1800  # finish this long before a deadline
    release_horizon_s: float = 120  # release what the deferrable slots finish in this long
    tick_s: float = 60  # how often the scheduler runs: a deadline met within one run is met
    start_timeout_s: float = 1200  # an instance not in service this long after it was asked for failed to start
    max_backoff_s: float = 1800

    @property
    def deferrable_share(self) -> float:
        """The part of an instance deferrable work may use: all slots but one, which stays free for
        interactive requests (all of it when an instance has one slot)."""
        return (self.slots - 1) / self.slots if self.slots > 1 else 1.0

    @property
    def deferrable_jobs_per_s(self) -> float:
        return self.instance_jobs_per_s * self.deferrable_share

    def deferrable_rate(self, every_slot: bool) -> float:
        """Deferrable requests one instance completes per second: on every slot, or all but one."""
        return self.instance_jobs_per_s if every_slot else self.deferrable_jobs_per_s


@dataclass(frozen=True)
class Observation:
    now: float
    in_service: int  # instances serving now
    desired: int  # what the endpoint was last asked for
    interactive: int  # interactive requests queued or running
    released: int  # deferrable requests let go and not finished
    waiting: int  # deferrable requests held
    earliest_deadline: float | None  # of the held ones
    last_work_at: float | None = None  # when a request last went to the endpoint (work between two runs)
    updating: bool = False  # the endpoint is not InService (an update is running): change nothing


@dataclass(frozen=True)
class SchedulerState:
    """What one run leaves for the next: kept by the caller (a DynamoDB item on AWS)."""

    low_since: float | None = None  # since when fewer instances were wanted than the endpoint has
    asked_at: float | None = None  # when the endpoint was last asked for more than it had in service
    start_attempts: int = 0
    retry_at: float | None = None
    busy_at: float | None = None  # the last run that saw work queued, running or held to run
    interactive_at: float | None = None  # the last run that saw interactive work queued or running


@dataclass(frozen=True)
class Decision:
    desired: int
    release: int  # held deferrable requests to let go now (oldest deadline first)
    reason: str
    state: SchedulerState
    ask_again: bool = False  # a start failed: set the capacity again even if it looks unchanged
    every_slot: bool = False  # no interactive traffic about: released deferrable work may fill every slot


def deferred_work_s(waiting: int, config: SchedulerConfig) -> float:
    """Seconds one instance needs for `waiting` deferrable requests on its deferrable slots."""
    return waiting / config.deferrable_jobs_per_s


def slack_s(observation: Observation, config: SchedulerConfig) -> float | None:
    """How long the held work can still wait: its earliest deadline, less the start-up when no
    instance is up, one instance's time for all of it at `throughput_safety` times the estimate,
    and the margin. None when nothing is held.

    The safety factor is what a later window risks: the throughput estimate may be wrong (a
    longer prompt mix, a slower instance). Planned at 2×, a window whose instance turns out half as
    fast as measured still ends before the margin; it costs no instance-hours when the work is
    held in one window anyway, only an earlier start."""
    if observation.earliest_deadline is None or observation.waiting == 0:
        return None
    lead = config.startup_s if observation.in_service == 0 else 0.0
    lead += deferred_work_s(observation.waiting, config) * config.throughput_safety + config.deadline_margin_s
    return observation.earliest_deadline - observation.now - lead


def wanted_instances(
    observation: Observation, config: SchedulerConfig, asked_at: float | None = None
) -> tuple[int, bool, str]:
    """(instances the work needs now, whether deferrable work runs, why). `asked_at`: when the
    instances now starting were asked for (their start-up is partly over)."""
    need = (
        max(1, math.ceil(observation.interactive / (config.instance_jobs_per_s * config.interactive_drain_s)))
        if observation.interactive
        else 0
    )
    reasons = [f"interactive {observation.interactive}"] if observation.interactive else []
    slack = slack_s(observation, config)
    held_s = deferred_work_s(observation.waiting, config)
    run_deferred = False
    if observation.waiting:
        if observation.in_service > 0:
            run_deferred, why = True, "up anyway"
        elif config.warm_window_s == 0:
            run_deferred, why = True, "no warm window: at once"
        elif slack is not None and slack <= 0:
            run_deferred, why = True, "deadline"
        else:
            why = f"held, slack {slack:.0f} s" if slack is not None else "held"
        reasons.append(f"deferrable {observation.waiting} {why}")
    if run_deferred or observation.released:
        deferred_need = 1
        if observation.earliest_deadline is not None and observation.waiting:
            lead = 0.0
            if observation.in_service == 0:  # what is left of a start already asked for, else all of one
                started = asked_at if asked_at is not None else observation.now
                lead = max(0.0, started + config.startup_s - observation.now)
            # the time left before the margin, plus the runs it is late by (the first run with no slack
            # left finds it up to a tick short, and the release waits up to a tick after the instance
            # comes into service), but never more than the margin: one instance that finishes within
            # the margin still meets the deadline
            late = min(2 * config.tick_s, config.deadline_margin_s)
            left = observation.earliest_deadline - observation.now - lead - config.deadline_margin_s + late
            deferred_need = max(1, math.ceil(held_s / max(left, config.release_horizon_s)))
        need = max(need, deferred_need)
        if observation.released:
            reasons.append(f"released {observation.released}")
    return min(config.max_instances, need), run_deferred, "; ".join(reasons) or "no work"


def release_count(
    observation: Observation, config: SchedulerConfig, run_deferred: bool, every_slot: bool = False
) -> int:
    """Held requests to let go: what the in-service instances' deferrable slots (every slot, when
    no interactive traffic is about) finish within the release horizon, less what was let go before
    and is not finished."""
    if not run_deferred or observation.in_service == 0 or observation.updating:
        return 0
    budget = observation.in_service * config.deferrable_rate(every_slot) * config.release_horizon_s
    return max(0, min(observation.waiting, math.ceil(budget) - observation.released))


def decide(observation: Observation, config: SchedulerConfig, state: SchedulerState) -> Decision:
    now = observation.now
    wanted, run_deferred, reason = wanted_instances(observation, config, state.asked_at)
    every_slot = False
    if config.interactive_quiet_s is not None:
        # the first run (or the first after a deploy) has seen nothing yet: the quiet time starts now
        interactive_at = now if observation.interactive or state.interactive_at is None else state.interactive_at
        every_slot = now - interactive_at >= config.interactive_quiet_s
        state = replace(state, interactive_at=interactive_at)
    release = release_count(observation, config, run_deferred, every_slot)

    if observation.updating:  # a deploy, not a scale: Application Auto Scaling would refuse anyway
        return Decision(observation.desired, 0, f"endpoint updating: no change ({reason})", state)

    # a start that did not come into service: ask again, after a backoff that doubles, for what is
    # wanted now (an instance no longer wanted is not asked for again: it goes like any surplus)
    if (
        observation.desired > observation.in_service
        and wanted > observation.in_service
        and state.asked_at is not None
        and now - state.asked_at >= config.start_timeout_s
        and (state.retry_at is None or now >= state.retry_at)
    ):
        attempts = state.start_attempts + 1
        backoff = min(config.max_backoff_s, config.start_timeout_s * 2 ** (attempts - 1))
        state = SchedulerState(state.low_since, now, attempts, now + backoff, now, state.interactive_at)
        return Decision(
            wanted,
            release,
            f"start failed (attempt {attempts}, next check in {backoff:.0f} s): asking again; {reason}",
            state,
            ask_again=True,
            every_slot=every_slot,
        )

    desired = observation.desired
    low_since = state.low_since
    busy_at = now if wanted > 0 else state.busy_at
    last_work = max((t for t in (observation.last_work_at, state.busy_at) if t is not None), default=None)
    target = wanted
    if wanted == 0 and desired > 0 and last_work is not None:
        idle = now - last_work
        if idle < config.idle_scale_in_s:
            target = 1  # work went to the endpoint less than idle_scale_in_s ago: one instance stays warm
            reason += f"; idle for {max(0.0, idle):.0f} s"
    if target >= desired:
        desired, low_since = target, None
    elif target == 0 and last_work is not None:
        desired, low_since = 0, None
        reason += f"; scale in to zero: no work for {config.idle_scale_in_s:.0f} s"
    else:
        low_since = low_since if low_since is not None else now
        if now - low_since >= config.idle_scale_in_s:
            desired, low_since = target, None
            reason += f"; scale in after {config.idle_scale_in_s:.0f} s with fewer wanted"
        else:
            reason += f"; fewer wanted for {now - low_since:.0f} s"

    asked_at, attempts, retry_at = state.asked_at, state.start_attempts, state.retry_at
    if desired > observation.in_service:
        if asked_at is None or desired > observation.desired:
            asked_at = now if asked_at is None else asked_at
    else:
        asked_at, attempts, retry_at = None, 0, None
    new_state = replace(
        state, low_since=low_since, asked_at=asked_at, start_attempts=attempts, retry_at=retry_at, busy_at=busy_at
    )
    return Decision(desired, release, reason, new_state, every_slot=every_slot)
