"""The clairvoyant optimum: the fewest instance-hours any scaling policy could spend on a known trace.

Dynamic programming over minutes. It knows every arrival in advance and has the simulator's
instance: the same start-up time, the same throughput (`instance_requests_per_s`: requests per
second with every slot busy, for the trace's mean request), the same `max_instances`, and the
same rules for the work:

- every request is served after it arrives and by the end of its deadline's minute, earliest
  deadline first: a deferrable request's (batch, flex) is its lane's; an interactive request's is
  its arrival plus `interactive_wait_s`. With the default 0 an interactive request is served in the
  minute it arrives, with no cold-start wait at all (the optimum starts instances ahead of it):
  the bound for a policy that never lets one wait. Given a policy's longest interactive wait, it
  is the bound for every policy whose interactive requests wait no longer (so a policy that lets
  the first requests of the day wait out a cold start is compared with an optimum allowed the same);
- an instance is asked for its start-up before it serves; a run of k minutes bills its start-up
  plus k - 2 minutes (see below); scale-in is free.

The state after minute t is (instances, how many of them started in minute t, the age of the
oldest waiting interactive request, backlog). The backlog follows the work-conserving
recursion `B_t = max(0, B_{t-1} + arrivals_t - spare_t)` (serving work early never hurts), and
earliest-deadline-first meets every deadline exactly when `B_t ≤ U_t`, where `U_t` is the work
arrived by t whose deadline is still ahead. For each instance count the minimal cost is kept as an
array over the backlog (numpy), so a day of minutes with a few instances and 10,000 batch lines takes
about a second.

**It is a lower bound.** Time is in whole minutes. An instance that serves from minute a to minute
b (k = b - a + 1 minutes on) was asked for its start-up before its first service and bills until its
last, which are more than (k - 2) minutes apart (the first at the end of minute a, the last at the
start of minute b). So a run is charged its start-up plus max(0, k - 2) minutes: its first minute is
in the start-up's charge, its second is free, every later one costs a minute. No schedule in seconds
is cheaper than the optimum in minutes, and none misses it by more than about a minute per start.
The backlog is counted in whole requests (in grains of several when a trace holds more than
`MAX_GRID` requests, arrivals rounded down, spare capacity up), and both roundings favour the
optimum; the fluid model also lets a minute's capacity serve parts of requests, and interactive
requests that waited take no capacity when served. So the true optimum of the simulated system is
at least this, and no online policy on the same trace can do better.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from stratus.simulate import DEFERRABLE, Policy, Request, instance_requests_per_s

MAX_GRID = 40_000


def optimum_instance_hours(requests: list[Request], policy: Policy, interactive_wait_s: float = 0.0) -> float:
    if not requests:
        return 0.0
    capacity = instance_requests_per_s(requests, policy) * 60  # requests per instance-minute
    startup = (policy.startup_s + policy.model_load_s) / 60  # minutes
    top = policy.max_instances
    # minutes an interactive request may stay unserved after its own: rounded up, so that one arriving
    # late in a minute is allowed all of its wait
    patience = math.ceil(interactive_wait_s / 60)
    interactive = Counter(int(r.arrival_s // 60) for r in requests if r.lane not in DEFERRABLE)
    deferrable = [r for r in requests if r.lane in DEFERRABLE]
    grain = max(1, math.ceil(len(deferrable) / MAX_GRID))
    arrivals = Counter(int(r.arrival_s // 60) for r in deferrable)
    # served by the end of its deadline's minute (not before the minute it arrives in)
    due = Counter(max(int(r.arrival_s // 60), int((r.deadline or 0) // 60)) for r in deferrable)
    horizon = 1 + max([*interactive, *arrivals, *due], default=0)

    size = len(deferrable) // grain + 2
    ages = patience + 1  # age index 0: no interactive request waiting; a: the oldest has waited a - 1 minutes
    inf = math.inf
    # cost[instances, fresh, age, backlog]: `fresh` of the instances were started the minute before
    cost = np.full((top + 1, top + 1, ages, size), inf)
    cost[0, 0, 0, 0] = 0.0
    arrived = owed = 0
    backlog = np.arange(size)
    for minute in range(horizon):
        arrived += arrivals.get(minute, 0)
        owed += due.get(minute, 0)
        bound = (arrived - owed) // grain  # deferrable backlog allowed after this minute
        added = arrivals.get(minute, 0) // grain
        asked = interactive.get(minute, 0)
        new_cost = np.full_like(cost, inf)
        for instances in range(top + 1):
            for started, before in _arrivals_at(cost, instances, startup).items():
                new_cost[instances, started] = _serve(before, instances, asked, added, bound, capacity, grain, backlog)
        cost = new_cost
    best = float(np.min(cost[:, :, 0, 0]))
    return best / 60


def _arrivals_at(cost: np.ndarray, instances: int, startup: float) -> dict[int, np.ndarray]:
    """The cheapest way into a minute with `instances` on, by how many of them start in it: each
    start costs its start-up (its first minute included), an instance in the second minute of its
    run costs nothing, any other costs the minute. (ages, backlog) arrays."""
    top = cost.shape[0] - 1
    best: dict[int, np.ndarray] = {}
    for previous in range(top + 1):
        starts = max(0, instances - previous)
        kept = instances - starts
        for fresh in range(previous + 1):
            charge = starts * startup + kept - min(fresh, kept)
            candidate = cost[previous, fresh] + charge
            best[starts] = candidate if starts not in best else np.minimum(best[starts], candidate)
    return best


def _serve(
    before: np.ndarray,
    instances: int,
    asked: int,
    added: int,
    bound: int,
    capacity: float,
    grain: int,
    backlog: np.ndarray,
) -> np.ndarray:
    """One minute with `instances` on: interactive requests are served (or, with none on, wait and
    age), then the deferrable backlog gets what capacity is left."""
    ages, size = before.shape
    if instances == 0:
        grown = np.full_like(before, math.inf)
        if ages > 1:
            grown[2:] = before[1:-1]  # a waiting request ages
            grown[1] = np.minimum(grown[1], before[0]) if asked else grown[1]  # a new one starts waiting
        if not asked:
            grown[0] = before[0]
        after = backlog + added
        keep = after < size
        shifted = np.full_like(grown, math.inf)
        shifted[:, after[keep]] = grown[:, keep]  # `after` is increasing: no two backlogs land on one
    else:
        # every waiting interactive request is served now, this minute's first; only this minute's
        # arrivals take capacity, and never more than there is (both relaxations: they keep this a
        # lower bound, a little looser where interactive requests wait)
        spare = max(0.0, instances * capacity - asked)
        reach = np.min(before, axis=0)
        after = np.maximum(0, backlog + added - math.ceil(spare / grain))
        keep = after < size
        row = np.full(size, math.inf)
        np.minimum.at(row, after[keep], reach[keep])
        shifted = np.full_like(before, math.inf)
        shifted[0] = row
    shifted[:, bound + 1 :] = math.inf
    return shifted
