"""`stratus simulate`: replay a day of requests against the endpoint's scaling policy, before deploying.

A discrete-time simulation (one-second steps, CloudWatch's one-minute metric periods) of what
`template.yaml` deploys, under either policy:

- **`scheduler`** (the template's default, `Scaling=Scheduler`): once a minute the policy of
  `stratus_core.scheduling` (the same code the scheduler function runs on AWS) sets the instance
  count and lets held deferrable work (batch lines, `flex` requests) go. Interactive requests go to
  the endpoint at once and are started first; released deferrable packs use at most all slots but
  one of each instance, or every slot while the scheduler has seen no interactive work for
  `interactive_quiet_s`.
- **`target-tracking`** (`Scaling=TargetTracking`, the policy before the scheduler): every request,
  whatever its lane, is dispatched at once; every minute `ApproximateBacklogSize` (queued + running
  invocations, averaged over the minute as CloudWatch's Average statistic does) and its
  per-instance value drive target tracking, which scales out when the per-instance backlog was
  above the target for 3 straight minutes and in when it was below 90 % of it for 15 (the alarms
  AWS creates for a target tracking policy), to `ceil(backlog / target)` instances, within the
  cooldowns; at zero instances the `HasBacklogWithoutCapacity` alarm's step policy adds one.

In both, the dispatcher packs requests of one lane that reach it within `pack_window_s` into one
invocation of up to `max_pack_size` requests; each in-service instance runs up to `slots`
invocations at once; a pack takes `prompt / prefill_tps + completion / decode_tps` seconds, with
the instance's token rates shared by its slots; a new instance bills from the moment it is
requested and serves after `startup_s` (provisioning, image pull) plus `model_load_s` (the
artifact's cold start); scale-in removes idle instances.

Output: instance-hours and their cost; the wait before a request's invocation starts, per lane
(p50/p95/max, cold starts included; for interactive requests also only those that arrived while
an instance was in service: "warm"); deadlines missed; cold starts; beside an always-on endpoint
(one instance unless told otherwise), the pure busy time and the clairvoyant optimum
(`stratus.optimum`), which no online policy can beat.
"""

from __future__ import annotations

import csv
import math
import random
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stratus_core.scheduling import Observation, SchedulerConfig, SchedulerState, decide

DAY_S = 86_400
METRIC_PERIOD_S = 60
SCALE_OUT_PERIODS = 3  # target tracking's high alarm: 3 of 3 one-minute datapoints
SCALE_IN_PERIODS = 15  # and its low alarm: 15 of 15, below 90 % of the target
SCALE_IN_FRACTION = 0.9
LANE_WINDOWS_S = {"interactive": None, "flex": 3600.0, "batch": 86_400.0}
DEFERRABLE = ("flex", "batch")


MODEL_LOAD_S = 56.9
"""vLLM's server from process start to `/ping` 200, compiled as the template runs it (bench/RESULTS.md,
2026-12-07, SmolLM2-135M on this project's 2-core CPU; measure your artifact on your instance type)."""
DECODE_TPS = 594.7
"""Completion tokens per second of that server with 64 requests at once (same run)."""

SERVERLESS_USD_PER_MILLION_REQUESTS = {"interactive": 20.658, "flex": 15.744, "batch": 1.763}
"""Everything but the GPU, per million requests of each lane: API Gateway, Lambda, DynamoDB, S3,
SQS, SNS and CloudWatch Logs, as `bench/aws_bill.py` measured them on 2026-12-07 at its defaults
(`bench/RESULTS.md`, "Batches in chunks"). A flex request is priced as the bench's async request
(`Prefer: respond-async`, then polled), a batch request as a batch line (its batch in chunks of 32)."""
IDLE_USD_PER_MONTH = 4.95
"""The deployment's cost with no requests at all (schedules, alarms, the alarm topic's key), the
same bench's "idle month"; a simulated day carries a thirtieth of it."""
GATEWAY_USD_PER_MONTH = 213.59
"""An always-on gateway in front of an always-on endpoint, the comparison a platform team makes:
LiteLLM's proxy on ECS Fargate ($115.33 a month: 2 ARM tasks of 4 GB, around the clock) with its
RDS database ($98.26: 2 db.t3.micro, multi-AZ), from the sample cost table of AWS's "Guidance for
Multi-Provider Generative AI Gateway on AWS" (github.1485827954.workers.dev/aws-solutions-library-samples/
guidance-for-multi-provider-generative-ai-gateway-on-aws, README, "Sample cost tables", us-east-1,
read at commit 0036cbe). Its full table, with the load balancer, NAT gateway, Redis, Route 53, WAF
and the rest, totals $378.10; only the two parts any such gateway needs are counted here."""


@dataclass(frozen=True)
class Request:
    arrival_s: float
    prompt_tokens: int
    completion_tokens: int
    lane: str = "interactive"
    deadline_s: float | None = None  # deferrable lanes: arrival + the lane's window unless given

    @property
    def deadline(self) -> float | None:
        if self.deadline_s is not None:
            return self.deadline_s
        window = LANE_WINDOWS_S[self.lane]
        return None if window is None else self.arrival_s + window


@dataclass(frozen=True)
class Policy:
    """Scaling parameters (defaults from template.yaml) and the instance's measured behaviour."""

    target_backlog_per_instance: float = 4
    max_instances: int = 2
    scale_in_cooldown_s: int = 600
    scale_out_cooldown_s: int = 120
    slots: int = 4  # MaxConcurrentInvocationsPerInstance
    max_pack_size: int = 32
    pack_window_s: float = 1.0
    startup_s: float = 300.0
    model_load_s: float = MODEL_LOAD_S
    decode_tps: float = DECODE_TPS
    prefill_tps: float = 3356.0
    hourly_price_usd: float = 1.408
    min_instances: int = 0
    mode: str = "target-tracking"  # or "scheduler"
    idle_scale_in_s: float = 300
    warm_window_s: float = 1800
    deadline_margin_s: float = 1800
    release_horizon_s: float = 120
    interactive_target_s: float = 10  # the interactive wait target the optimum is held to (issue 14: p95 ≤ 10 s)
    throughput_estimate: float = 1.0  # the scheduler's estimate ÷ the real throughput (2: twice too high)
    throughput_safety: float = 2.0  # the scheduler plans a window's start for an instance this much slower

    def scheduler_config(self, requests: list[Request]) -> SchedulerConfig:
        """The scheduler's view of this instance: its requests per second from the token rates and
        the trace's mean request (what an operator measures and sets as `InstanceRequestsPerSecond`)."""
        return SchedulerConfig(
            instance_jobs_per_s=instance_requests_per_s(requests, self) * self.throughput_estimate,
            max_instances=self.max_instances,
            slots=self.slots,
            startup_s=self.startup_s + self.model_load_s,
            idle_scale_in_s=self.idle_scale_in_s,
            warm_window_s=self.warm_window_s,
            deadline_margin_s=self.deadline_margin_s,
            release_horizon_s=self.release_horizon_s,
            throughput_safety=self.throughput_safety,
        )


def instance_requests_per_s(requests: list[Request], policy: Policy) -> float:
    """Requests one instance completes per second with every slot busy, for the trace's mean request."""
    if not requests:
        return 1.0
    seconds = sum(r.prompt_tokens / policy.prefill_tps + r.completion_tokens / policy.decode_tps for r in requests)
    return len(requests) / seconds


@dataclass
class Pack:
    arrival_s: float
    requests: int
    prompt_tokens: int
    completion_tokens: int
    lane: str = "interactive"
    started_s: float | None = None
    members: list[Request] = field(default_factory=list, repr=False)


@dataclass
class Instance:
    requested_s: int
    ready_s: float
    busy_until: list[tuple[float, str, int]] = field(default_factory=list)  # (finish, kind, requests) per pack

    def running(self, now: float, lane: str | None = None) -> int:
        """Packs (invocations) running now, of one kind ("interactive" or "deferred") or all."""
        self.busy_until = [entry for entry in self.busy_until if entry[0] > now]
        return sum(1 for _, kind, _ in self.busy_until if lane is None or kind == lane)

    def running_requests(self, now: float, lane: str) -> int:
        self.running(now)
        return sum(requests for _, kind, requests in self.busy_until if kind == lane)


@dataclass
class Report:
    requests: int
    invocations: int
    instance_hours: float
    cost_usd: float
    wait_p50_s: float
    wait_p95_s: float
    wait_max_s: float
    cold_starts: int
    peak_instances: int
    always_on_instances: int
    always_on_instance_hours: float
    always_on_cost_usd: float
    always_on_wait_p95_s: float
    busy_instance_hours: float
    busy_cost_usd: float
    horizon_s: int
    policy: str = "target-tracking"
    lanes: dict[str, dict[str, float]] = field(default_factory=dict)
    interactive_wait_p95_s: float = 0.0
    interactive_warm_wait_p95_s: float = 0.0
    deadlines_missed: int = 0
    # clairvoyant, every interactive request waiting at most the target (Policy.interactive_target_s)
    optimum_instance_hours: float | None = None
    # clairvoyant, interactive requests waiting up to this policy's longest wait: a strict lower bound
    optimum_same_wait_instance_hours: float | None = None
    # the day's whole bill (`all_in`): the GPU plus every request's serverless cost plus the idle share
    tokens: int = 0
    serverless_cost_usd: float = 0.0
    idle_share_usd: float = 0.0
    all_in_cost_usd: float = 0.0
    all_in_usd_per_million_tokens: float | None = None
    always_on_with_gateway_cost_usd: float = 0.0
    always_on_with_gateway_usd_per_million_tokens: float | None = None
    timeline: list[dict[str, float]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "timeline"}


def pack_requests(requests: list[Request], policy: Policy) -> list[Pack]:
    """Requests that arrive within the dispatcher's batching window share an invocation."""
    packs: list[Pack] = []
    for request in sorted(requests, key=lambda r: r.arrival_s):
        last = packs[-1] if packs else None
        if last and request.arrival_s - last.arrival_s < policy.pack_window_s and last.requests < policy.max_pack_size:
            last.requests += 1
            last.prompt_tokens += request.prompt_tokens
            last.completion_tokens += request.completion_tokens
            last.members.append(request)
        else:
            packs.append(
                Pack(
                    request.arrival_s,
                    1,
                    request.prompt_tokens,
                    request.completion_tokens,
                    request.lane,
                    members=[request],
                )
            )
    return packs


def service_s(pack: Pack, policy: Policy) -> float:
    share = policy.slots  # an instance's token rates are shared by its slots
    return pack.prompt_tokens / (policy.prefill_tps / share) + pack.completion_tokens / (policy.decode_tps / share)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class _Endpoint:
    """The instances and the two queues of invocations (interactive ones start first)."""

    policy: Policy
    instances: list[Instance] = field(default_factory=list)
    interactive: deque[Pack] = field(default_factory=deque)
    deferred: deque[Pack] = field(default_factory=deque)

    def in_service(self, t: float) -> int:
        return sum(1 for i in self.instances if i.ready_s <= t)

    def start_packs(self, t: float, reserve: bool, on_start: Any) -> None:
        """Fill free slots, interactive packs first; with `reserve`, deferrable packs leave one slot
        of each instance free (the scheduler's `deferrable_share`)."""
        slots = self.policy.slots
        deferred_limit = slots - 1 if reserve and slots > 1 else slots
        for instance in self.instances:
            if instance.ready_s > t:
                continue
            while self.interactive and instance.running(t) < slots:
                self._start(instance, self.interactive.popleft(), t, on_start)
            while self.deferred and instance.running(t) < slots and instance.running(t, "deferred") < deferred_limit:
                self._start(instance, self.deferred.popleft(), t, on_start)

    def _start(self, instance: Instance, pack: Pack, t: float, on_start: Any) -> None:
        pack.started_s = t
        finish = t + service_s(pack, self.policy)
        instance.busy_until.append((finish, "interactive" if pack.lane == "interactive" else "deferred", pack.requests))
        on_start(pack, finish)


def simulate(requests: list[Request], policy: Policy, fixed_instances: int | None = None) -> Report:
    """Replay `requests`; with `fixed_instances`, an always-on endpoint of that size instead (which,
    like target tracking, dispatches every lane at once)."""
    scheduled = policy.mode == "scheduler" and fixed_instances is None
    config = policy.scheduler_config(requests) if scheduled else None
    now_lanes = [r for r in requests if not scheduled or r.lane not in DEFERRABLE]
    held: list[Request] = sorted(
        (r for r in requests if scheduled and r.lane in DEFERRABLE), key=lambda r: r.arrival_s
    )  # not yet arrived, then held: moved to `waiting` at arrival
    waiting: list[Request] = []
    pending = deque(pack_requests(now_lanes, policy))
    endpoint = _Endpoint(policy)
    packs_made = len(pending)
    waits: dict[str, list[float]] = {"interactive": [], "flex": [], "batch": []}
    warm_waits: list[float] = []
    released_packs: list[Pack] = []
    missed = 0
    history: list[float] = []
    last_scale_out = last_scale_in = -(10**9)
    cold_starts = peak = 0
    instance_seconds = 0.0
    timeline: list[dict[str, float]] = []
    period_sum, period_seconds = 0.0, 0
    state = SchedulerState()
    every_slot = False  # the scheduler's last word on whether deferrable packs may fill every slot
    arrivals = [r.arrival_s for r in requests]
    end_of_trace = max(arrivals, default=0.0)
    last_deadline = max((r.deadline or 0.0 for r in requests), default=0.0)
    target_count = fixed_instances if fixed_instances is not None else policy.min_instances
    warm_at_arrival: dict[int, bool] = {}
    last_work_at: float | None = None
    for _ in range(target_count):
        endpoint.instances.append(Instance(0, 0.0))

    def on_start(pack: Pack, finish: float) -> None:
        nonlocal missed
        for member in pack.members:
            wait = pack.started_s - member.arrival_s if pack.started_s is not None else 0.0
            waits[member.lane].append(wait)
            if member.lane == "interactive" and warm_at_arrival.get(id(member), False):
                warm_waits.append(wait)
            deadline = member.deadline
            if deadline is not None and finish > deadline:
                missed += 1

    t = 0
    while True:
        in_service = endpoint.in_service(t)
        while pending and pending[0].arrival_s <= t:
            pack = pending.popleft()
            for member in pack.members:
                warm_at_arrival[id(member)] = in_service > 0
            (endpoint.interactive if pack.lane == "interactive" or not scheduled else endpoint.deferred).append(pack)
            last_work_at = t
        while held and held[0].arrival_s <= t:
            waiting.append(held.pop(0))
        endpoint.start_packs(t, scheduled and not every_slot, on_start)
        running = sum(i.running(t) for i in endpoint.instances)
        backlog = len(endpoint.interactive) + len(endpoint.deferred) + running
        period_sum += backlog
        period_seconds += 1
        if t % METRIC_PERIOD_S == 0:
            average = period_sum / period_seconds  # CloudWatch's Average over the minute
            period_sum, period_seconds = 0.0, 0
            timeline.append({"t": t, "backlog": average + len(waiting), "instances": len(endpoint.instances)})
            if scheduled and config is not None:
                released_packs = [p for p in released_packs if p.started_s is None or _finish(p, policy) > t]
                observation = Observation(
                    now=t,
                    in_service=in_service,
                    desired=target_count,
                    interactive=sum(p.requests for p in endpoint.interactive)
                    + sum(i.running_requests(t, "interactive") for i in endpoint.instances),
                    released=sum(p.requests for p in released_packs),
                    waiting=len(waiting),
                    earliest_deadline=min((r.deadline or math.inf for r in waiting), default=None),
                    last_work_at=last_work_at,
                )
                decision = decide(observation, config, state)
                state, every_slot = decision.state, decision.every_slot
                if decision.desired > target_count and in_service == 0 and target_count == 0:
                    cold_starts += 1
                target_count = decision.desired
                if decision.release:
                    waiting.sort(key=lambda r: (r.deadline or math.inf, r.arrival_s))
                    let_go, waiting = waiting[: decision.release], waiting[decision.release :]
                    for lane in DEFERRABLE:
                        members = [r for r in let_go if r.lane == lane]
                        for start in range(0, len(members), policy.max_pack_size):
                            chunk = members[start : start + policy.max_pack_size]
                            pack = Pack(
                                t,
                                len(chunk),
                                sum(r.prompt_tokens for r in chunk),
                                sum(r.completion_tokens for r in chunk),
                                lane,
                                members=chunk,
                            )
                            endpoint.deferred.append(pack)
                            last_work_at = t
                            released_packs.append(pack)
                            packs_made += 1
            elif fixed_instances is None:
                in_service_count = len(endpoint.instances)
                per_instance = average / in_service_count if in_service_count else (math.inf if backlog else 0.0)
                history.append(per_instance)
                target = policy.target_backlog_per_instance
                desired = min(policy.max_instances, max(policy.min_instances, math.ceil(average / target)))
                if in_service_count == 0 and backlog > 0:
                    if t - last_scale_out >= policy.scale_out_cooldown_s:  # the step policy
                        target_count, last_scale_out = 1, t
                        cold_starts += 1
                elif (
                    len(history) >= SCALE_OUT_PERIODS
                    and all(v > target for v in history[-SCALE_OUT_PERIODS:])
                    and desired > target_count
                    and t - last_scale_out >= policy.scale_out_cooldown_s
                ):
                    target_count, last_scale_out = desired, t
                elif (
                    len(history) >= SCALE_IN_PERIODS
                    and all(v < SCALE_IN_FRACTION * target for v in history[-SCALE_IN_PERIODS:])
                    and desired < target_count
                    and t - max(last_scale_in, last_scale_out) >= policy.scale_in_cooldown_s
                ):
                    target_count, last_scale_in = desired, t
        while len(endpoint.instances) < target_count:
            endpoint.instances.append(Instance(t, t + policy.startup_s + policy.model_load_s))
        if len(endpoint.instances) > target_count:
            idle = [i for i in endpoint.instances if i.running(t) == 0]
            idle.sort(key=lambda i: i.ready_s <= t)  # a starting instance goes first
            for instance in idle[: len(endpoint.instances) - target_count]:
                endpoint.instances.remove(instance)
        peak = max(peak, len(endpoint.instances))
        instance_seconds += len(endpoint.instances)
        t += 1
        drained = (
            not pending and not held and not waiting and not endpoint.interactive and not endpoint.deferred
        ) and running == 0
        if t >= DAY_S and drained and (fixed_instances is not None or len(endpoint.instances) <= policy.min_instances):
            break
        if t > max(DAY_S, end_of_trace, last_deadline) + 7 * DAY_S:  # a policy that never drains: stop
            break
    every = pack_requests(requests, policy)
    busy_s = sum(service_s(p, policy) for p in every) / policy.slots
    flat = [w for lane in waits.values() for w in lane]
    hours = instance_seconds / 3600
    return Report(
        requests=len(requests),
        invocations=packs_made,
        instance_hours=round(hours, 4),
        cost_usd=round(hours * policy.hourly_price_usd, 2),
        wait_p50_s=percentile(flat, 0.5),
        wait_p95_s=percentile(flat, 0.95),
        wait_max_s=max(flat, default=0.0),
        cold_starts=cold_starts,
        peak_instances=peak,
        always_on_instances=0,
        always_on_instance_hours=0.0,
        always_on_cost_usd=0.0,
        always_on_wait_p95_s=0.0,
        busy_instance_hours=round(busy_s / 3600, 6),
        busy_cost_usd=round(busy_s / 3600 * policy.hourly_price_usd, 2),
        horizon_s=t,
        policy=policy.mode if fixed_instances is None else "always-on",
        lanes={
            lane: {
                "requests": len(values),
                "wait_p50_s": percentile(values, 0.5),
                "wait_p95_s": percentile(values, 0.95),
                "wait_max_s": max(values, default=0.0),
            }
            for lane, values in waits.items()
            if values
        },
        interactive_wait_p95_s=percentile(waits["interactive"], 0.95),
        interactive_warm_wait_p95_s=percentile(warm_waits, 0.95),
        deadlines_missed=missed,
        timeline=timeline,
    )


def _finish(pack: Pack, policy: Policy) -> float:
    return (pack.started_s or 0.0) + service_s(pack, policy)


def all_in(report: Report, requests: list[Request]) -> None:
    """The day's whole bill beside an always-on endpoint with a gateway in front, per million tokens:
    the number a platform team quotes. GPU-hours at the policy's price, each request at its lane's
    measured serverless cost, a thirtieth of the idle month; against the always-on endpoint's hours
    plus a thirtieth of the gateway's month (`GATEWAY_USD_PER_MONTH`)."""
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in requests)
    serverless = sum(SERVERLESS_USD_PER_MILLION_REQUESTS[r.lane] for r in requests) / 1e6
    days = report.horizon_s / DAY_S
    report.tokens = tokens
    report.serverless_cost_usd = round(serverless, 6)
    report.idle_share_usd = round(IDLE_USD_PER_MONTH / 30 * days, 6)
    report.all_in_cost_usd = round(report.cost_usd + serverless + report.idle_share_usd, 2)
    report.always_on_with_gateway_cost_usd = round(report.always_on_cost_usd + GATEWAY_USD_PER_MONTH / 30 * days, 2)
    if tokens:
        report.all_in_usd_per_million_tokens = round(report.all_in_cost_usd / tokens * 1e6, 4)
        report.always_on_with_gateway_usd_per_million_tokens = round(
            report.always_on_with_gateway_cost_usd / tokens * 1e6, 4
        )


def compare(requests: list[Request], policy: Policy, always_on_instances: int = 1, *, optimum: bool = False) -> Report:
    """The policy's endpoint, with an always-on endpoint of `always_on_instances` beside it (and,
    with `optimum`, the clairvoyant optimum's instance-hours)."""
    report = simulate(requests, policy)
    size = always_on_instances
    always_on = simulate(requests, policy, fixed_instances=size)
    hours = size * always_on.horizon_s / 3600
    report.always_on_instances = size
    report.always_on_instance_hours = round(hours, 4)
    report.always_on_cost_usd = round(hours * policy.hourly_price_usd, 2)
    report.always_on_wait_p95_s = always_on.wait_p95_s
    all_in(report, requests)
    if optimum:
        from stratus.optimum import optimum_instance_hours

        target = optimum_instance_hours(requests, policy, policy.interactive_target_s)
        longest = report.lanes.get("interactive", {}).get("wait_max_s", 0.0)
        bound = optimum_instance_hours(requests, policy, longest)
        # no schedule at all meets the trace's deadlines (a start-up longer than a deadline): None
        report.optimum_instance_hours = round(target, 4) if math.isfinite(target) else None
        report.optimum_same_wait_instance_hours = round(bound, 4) if math.isfinite(bound) else None
    return report


# ---- traces -------------------------------------------------------------------------------------


def read_trace(path: Path) -> list[Request]:
    """CSV with a header: arrival_s, prompt_tokens, completion_tokens, and optionally lane
    (interactive, flex, batch; interactive when absent) and deadline_s (the lane's window when empty)."""
    with path.open(newline="", encoding="utf-8") as handle:
        requests = []
        for row in csv.DictReader(handle):
            lane = row.get("lane") or "interactive"
            if lane not in LANE_WINDOWS_S:
                raise ValueError(f"unknown lane {lane!r} in {path}: interactive, flex or batch")
            deadline = row.get("deadline_s") or None
            requests.append(
                Request(
                    float(row["arrival_s"]),
                    int(row["prompt_tokens"]),
                    int(row["completion_tokens"]),
                    lane,
                    float(deadline) if deadline is not None else None,
                )
            )
        return requests


def write_trace(requests: list[Request], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arrival_s", "prompt_tokens", "completion_tokens", "lane", "deadline_s"])
        for r in requests:
            deadline = "" if r.deadline_s is None else f"{r.deadline_s:.3f}"
            writer.writerow([f"{r.arrival_s:.3f}", r.prompt_tokens, r.completion_tokens, r.lane, deadline])


def _sizes(rng: random.Random) -> tuple[int, int]:
    return max(1, int(rng.lognormvariate(5.0, 0.6))), max(1, int(rng.lognormvariate(4.5, 0.5)))


def _poisson(rate_at: Any, rng: random.Random, peak_rate: float) -> list[Request]:
    """A non-homogeneous Poisson day by thinning: `rate_at(t)` requests/s, never above `peak_rate`."""
    requests: list[Request] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak_rate)
        if t >= DAY_S:
            return requests
        if rng.random() < rate_at(t) / peak_rate:
            requests.append(Request(t, *_sizes(rng)))


def _batches(rng: random.Random, count: int, lines: int) -> list[Request]:
    """`count` batches of `lines` lines, each submitted at a random time of the day (all its lines at
    once), with OpenAI's 24 h completion window."""
    requests: list[Request] = []
    for _ in range(count):
        start = rng.uniform(0, DAY_S)
        requests += [Request(start, *_sizes(rng), lane="batch") for _ in range(lines)]
    return requests


OFFICE_HOURS = (9 * 3600, 18 * 3600)


def generate(kind: str, requests_per_day: int = 5000, seed: int = 7) -> list[Request]:
    """`steady` (the same rate all day), `diurnal` (office hours: peak at 14:00 UTC, near zero at
    night), `bursty` (a trickle plus a few batch bursts of 300 requests in two minutes), `mixed`
    (about 2,000 interactive requests 09:00-18:00, 20 batches of 500 lines at random times, nothing
    else at night) or `batches` (the same 20 batches alone). `mixed` and `batches` ignore
    `requests_per_day`."""
    rng = random.Random(seed)  # noqa: S311 - reproducible traces, not secrets
    mean = requests_per_day / DAY_S
    if kind in ("mixed", "batches"):
        batches = _batches(rng, 20, 500)
        if kind == "batches":
            return sorted(batches, key=lambda r: r.arrival_s)
        opening, closing = OFFICE_HOURS
        office_rate = 2000 / (closing - opening)
        office = _poisson(lambda t: office_rate if opening <= t < closing else 0.0, rng, office_rate)
        return sorted(office + batches, key=lambda r: r.arrival_s)
    if kind == "steady":
        return _poisson(lambda _: mean, rng, mean)
    if kind == "diurnal":

        def rate(t: float) -> float:
            return mean * max(0.0, 1 - math.cos(2 * math.pi * (t - 2 * 3600) / DAY_S)) ** 2 / 1.5

        return _poisson(rate, rng, mean * 4 / 1.5)
    if kind == "bursty":
        trickle = _poisson(lambda _: mean * 0.2, rng, mean * 0.2)
        bursts = []
        per_burst = 300
        for _ in range(max(1, int(requests_per_day * 0.8 / per_burst))):
            start = rng.uniform(0, DAY_S - 120)
            bursts += [Request(start + rng.uniform(0, 120), *_sizes(rng)) for _ in range(per_burst)]
        return sorted(trickle + bursts, key=lambda r: r.arrival_s)
    raise ValueError(f"unknown trace kind {kind!r}: {', '.join(TRACE_KINDS)}")


TRACE_KINDS = ("steady", "diurnal", "bursty", "mixed", "batches")


def policy_from_template(**overrides: Any) -> Policy:
    """The template's parameter defaults, overridden where given (None means: keep the default)."""
    from stratus.template import load_template

    params = load_template()["Parameters"]
    values: dict[str, Any] = {
        "target_backlog_per_instance": float(params["TargetBacklogPerInstance"]["Default"]),
        "max_instances": int(params["MaxInstanceCount"]["Default"]),
        "scale_in_cooldown_s": int(params["ScaleInCooldownSeconds"]["Default"]),
        "scale_out_cooldown_s": int(params["ScaleOutCooldownSeconds"]["Default"]),
        "slots": int(params["MaxConcurrentInvocationsPerInstance"]["Default"]),
        "max_pack_size": int(params["MaxPackSize"]["Default"]),
        "hourly_price_usd": float(params["InstanceHourlyPriceUsd"]["Default"]),
        "mode": "scheduler" if params["Scaling"]["Default"] == "Scheduler" else "target-tracking",
        "idle_scale_in_s": 60 * float(params["IdleScaleInMinutes"]["Default"]),
        "warm_window_s": 60 * float(params["WarmWindowMinutes"]["Default"]),
        "deadline_margin_s": 60 * float(params["DeadlineMarginMinutes"]["Default"]),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Policy(**values)


def plot(report: Report, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [p["t"] / 3600 for p in report.timeline]
    figure, backlog_axis = plt.subplots(figsize=(10, 4))
    backlog_axis.plot(hours, [p["backlog"] for p in report.timeline], color="tab:blue", linewidth=0.8)
    backlog_axis.set_xlabel("hour of the day (UTC)")
    backlog_axis.set_ylabel("backlog (invocations + held requests)", color="tab:blue")
    instance_axis = backlog_axis.twinx()
    instance_axis.step(hours, [p["instances"] for p in report.timeline], color="tab:red", where="post")
    instance_axis.set_ylabel("instances", color="tab:red")
    instance_axis.set_ylim(bottom=0)
    backlog_axis.set_title(
        f"{title} ({report.policy}): {report.instance_hours:.1f} instance-h"
        + (f" (optimum {report.optimum_instance_hours:.1f})" if report.optimum_instance_hours is not None else "")
        + f", always-on {report.always_on_instance_hours:.0f} h, interactive p95 {report.interactive_wait_p95_s:.0f} s",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
