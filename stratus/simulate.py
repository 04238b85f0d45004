"""`stratus simulate`: replay a day of requests against the endpoint's scaling policy, before deploying.

A discrete-time simulation (one-second steps, CloudWatch's one-minute metric periods) of what
`template.yaml` deploys:

- the dispatcher packs requests that arrive within `pack_window_s` into one invocation of up to
  `max_pack_size` requests (SageMaker's backlog counts invocations);
- each in-service instance runs up to `slots` invocations at once; a pack takes
  `prompt / prefill_tps + completion / decode_tps` seconds, with the instance's token rates shared
  by its slots;
- every minute: `ApproximateBacklogSize` (queued + running invocations, averaged over the minute
  as CloudWatch's Average statistic does) and its per-instance value.
  Target tracking scales out when the per-instance backlog was above the target for 3 straight
  minutes and in when it was below 90 % of it for 15 (the alarms AWS creates for a target tracking
  policy), to `ceil(backlog / target)` instances, within the cooldowns; at zero instances the
  `HasBacklogWithoutCapacity` alarm's step policy adds one;
- a new instance bills from the moment it is requested and serves after `startup_s` (provisioning,
  image pull) plus `model_load_s` (the artifact's cold start); scale-in removes idle instances.

Output: instance-hours and their cost, the wait before an invocation starts (p50/p95/max, cold
starts included), the number of cold starts (scale-outs from zero), compared with an always-on
endpoint (one instance unless told otherwise) and with the pure busy time (the instance-hours if
every slot were always full).
"""

from __future__ import annotations

import csv
import math
import random
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DAY_S = 86_400
METRIC_PERIOD_S = 60
SCALE_OUT_PERIODS = 3  # target tracking's high alarm: 3 of 3 one-minute datapoints
SCALE_IN_PERIODS = 15  # and its low alarm: 15 of 15, below 90 % of the target
SCALE_IN_FRACTION = 0.9


@dataclass(frozen=True)
class Request:
    arrival_s: float
    prompt_tokens: int
    completion_tokens: int


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
    model_load_s: float = 4.5
    decode_tps: float = 335.6
    prefill_tps: float = 3356.0
    hourly_price_usd: float = 1.408
    min_instances: int = 0


@dataclass
class Pack:
    arrival_s: float
    requests: int
    prompt_tokens: int
    completion_tokens: int
    started_s: float | None = None


@dataclass
class Instance:
    requested_s: int
    ready_s: float
    busy_until: list[float] = field(default_factory=list)

    def running(self, now: float) -> int:
        self.busy_until = [t for t in self.busy_until if t > now]
        return len(self.busy_until)


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
        else:
            packs.append(Pack(request.arrival_s, 1, request.prompt_tokens, request.completion_tokens))
    return packs


def service_s(pack: Pack, policy: Policy) -> float:
    share = policy.slots  # an instance's token rates are shared by its slots
    return pack.prompt_tokens / (policy.prefill_tps / share) + pack.completion_tokens / (policy.decode_tps / share)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def simulate(requests: list[Request], policy: Policy, fixed_instances: int | None = None) -> Report:
    """Replay `requests`; with `fixed_instances`, an always-on endpoint of that size instead."""
    packs = pack_requests(requests, policy)
    pending = deque(packs)
    queue: deque[Pack] = deque()
    instances: list[Instance] = []
    waits: list[tuple[float, int]] = []
    history: list[float] = []  # per-instance backlog each minute (inf at zero instances with backlog)
    last_scale_out = last_scale_in = -(10**9)
    cold_starts = peak = 0
    instance_seconds = 0.0
    timeline: list[dict[str, float]] = []
    period_sum, period_seconds = 0.0, 0
    end_of_trace = max((p.arrival_s for p in packs), default=0.0)
    target_count = fixed_instances if fixed_instances is not None else policy.min_instances
    for _ in range(target_count):
        instances.append(Instance(0, 0.0))
    t = 0
    while True:
        while pending and pending[0].arrival_s <= t:
            queue.append(pending.popleft())
        for instance in instances:
            if instance.ready_s <= t:
                while queue and instance.running(t) < policy.slots:
                    pack = queue.popleft()
                    pack.started_s = t
                    instance.busy_until.append(t + service_s(pack, policy))
                    waits.append((t - pack.arrival_s, pack.requests))
        running = sum(i.running(t) for i in instances)
        backlog = len(queue) + running
        period_sum += backlog
        period_seconds += 1
        if t % METRIC_PERIOD_S == 0:
            average = period_sum / period_seconds  # CloudWatch's Average over the minute
            period_sum, period_seconds = 0.0, 0
            timeline.append({"t": t, "backlog": average, "instances": len(instances)})
            if fixed_instances is None:
                in_service = len(instances)
                per_instance = average / in_service if in_service else (math.inf if backlog else 0.0)
                history.append(per_instance)
                target = policy.target_backlog_per_instance
                desired = min(policy.max_instances, max(policy.min_instances, math.ceil(average / target)))
                if in_service == 0 and backlog > 0:
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
        while len(instances) < target_count:
            instances.append(Instance(t, t + policy.startup_s + policy.model_load_s))
        if len(instances) > target_count:
            idle = [i for i in instances if i.running(t) == 0]
            for instance in idle[: len(instances) - target_count]:
                instances.remove(instance)
        peak = max(peak, len(instances))
        instance_seconds += len(instances)
        t += 1
        drained = not pending and not queue and running == 0
        if t >= DAY_S and drained and (fixed_instances is not None or len(instances) <= policy.min_instances):
            break
        if t > max(DAY_S, end_of_trace) + 7 * DAY_S:  # a policy that never drains: stop, report what it did
            break
    busy_s = sum(service_s(p, policy) for p in packs) / policy.slots
    flat = [w for w, n in waits for _ in range(n)]
    hours = instance_seconds / 3600
    return Report(
        requests=len(requests),
        invocations=len(packs),
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
        timeline=timeline,
    )


def compare(requests: list[Request], policy: Policy, always_on_instances: int = 1) -> Report:
    """The autoscaled endpoint, with an always-on endpoint of `always_on_instances` beside it."""
    report = simulate(requests, policy)
    size = always_on_instances
    always_on = simulate(requests, policy, fixed_instances=size)
    hours = size * always_on.horizon_s / 3600
    report.always_on_instances = size
    report.always_on_instance_hours = round(hours, 4)
    report.always_on_cost_usd = round(hours * policy.hourly_price_usd, 2)
    report.always_on_wait_p95_s = always_on.wait_p95_s
    return report


# ---- traces -------------------------------------------------------------------------------------


def read_trace(path: Path) -> list[Request]:
    """CSV with a header: arrival_s, prompt_tokens, completion_tokens."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            Request(float(row["arrival_s"]), int(row["prompt_tokens"]), int(row["completion_tokens"]))
            for row in csv.DictReader(handle)
        ]


def write_trace(requests: list[Request], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arrival_s", "prompt_tokens", "completion_tokens"])
        for r in requests:
            writer.writerow([f"{r.arrival_s:.3f}", r.prompt_tokens, r.completion_tokens])


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


def generate(kind: str, requests_per_day: int = 5000, seed: int = 7) -> list[Request]:
    """`steady` (the same rate all day), `diurnal` (office hours: peak at 14:00 UTC, near zero at
    night) or `bursty` (a trickle plus a few batch bursts of 300 requests in two minutes)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible traces, not secrets
    mean = requests_per_day / DAY_S
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
    raise ValueError(f"unknown trace kind {kind!r}: steady, diurnal or bursty")


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
    backlog_axis.set_ylabel("backlog (invocations)", color="tab:blue")
    instance_axis = backlog_axis.twinx()
    instance_axis.step(hours, [p["instances"] for p in report.timeline], color="tab:red", where="post")
    instance_axis.set_ylabel("instances", color="tab:red")
    instance_axis.set_ylim(bottom=0)
    backlog_axis.set_title(
        f"{title}: {report.instance_hours:.1f} instance-h (USD {report.cost_usd}), "
        f"always-on {report.always_on_instance_hours:.0f} h (USD {report.always_on_cost_usd}), "
        f"p95 wait {report.wait_p95_s:.0f} s"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
