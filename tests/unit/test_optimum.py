"""The clairvoyant optimum (`stratus.optimum`) on traces small enough to solve by hand.

Every request here is (100 prompt, 50 completion) tokens: 100/3356 + 50/335.6 = 600/3356 s of a whole
instance, so one instance serves 3356/600 × 60 = 335.6 requests a minute (336 of the backlog, spare
capacity rounded up). Start-up is 300 + 4.5 = 304.5 s = 5.075 minutes. A run of k minutes (an instance
on, serving, from minute a to minute a + k − 1) is charged 5.075 + max(0, k − 2) minutes: its first
minute is inside the start-up's charge, its second is free, every later one costs a minute (a real
instance bills its start-up before its first service, at the latest at the end of minute a, and
until its last, at the earliest at the start of the run's last minute: k − 2 minutes later).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from stratus.optimum import optimum_instance_hours
from stratus.simulate import Policy, Request, compare, instance_requests_per_s

POLICY = Policy(startup_s=300, model_load_s=4.5, decode_tps=335.6, prefill_tps=3356, max_instances=2)


def ask(arrival_s: float) -> Request:
    return Request(arrival_s, 100, 50)


def line(arrival_s: float, deadline_s: float | None = None) -> Request:
    return Request(arrival_s, 100, 50, "batch", deadline_s)


START = 304.5 / 60  # 5.075 minutes: a start's charge, its first minute on included


def minutes(requests: list[Request], wait_s: float = 0.0) -> float:
    return optimum_instance_hours(requests, POLICY, wait_s) * 60


def exactly(value: float) -> object:
    """`value`, up to the float rounding of sums of 5.075 (no tolerance beyond that)."""
    return pytest.approx(value, rel=0, abs=1e-9)


def test_the_instance_s_capacity() -> None:
    assert instance_requests_per_s([ask(0.0)], POLICY) * 60 == pytest.approx(335.6)  # 3356 / 600 × 60
    assert exactly(5.075) == START
    assert minutes([]) == 0.0


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, 5.075),  # 5.075 + max(0, 1 − 2) = 5.075 + 0
        (2, 5.075),  # 5.075 + max(0, 2 − 2) = 5.075 + 0: the second minute is free
        (3, 6.075),  # 5.075 + (3 − 2) = 6.075
        (4, 7.075),  # 5.075 + 2
        (10, 13.075),  # 5.075 + 8
    ],
)
def test_a_run_of_k_minutes_costs_the_start_up_and_k_minus_two(k: int, expected: float) -> None:
    # one request in each of minutes 0 .. k − 1, none allowed to wait: one instance on for those k
    # minutes (a second start, 5.075 more, never pays)
    assert minutes([ask(60.0 * m) for m in range(k)]) == exactly(expected)


def test_one_interactive_request_costs_exactly_the_start_up() -> None:
    assert minutes([ask(0.0)]) == exactly(5.075)  # one run of one minute: 304.5 s
    # allowed to wait 305 s (ceil(305 / 60) = 6 minutes), it still needs one run: 5.075
    assert minutes([ask(0.0)], 305) == exactly(5.075)
    # the optimum in hours: 5.075 / 60 = 0.08458
    assert optimum_instance_hours([ask(0.0)], POLICY) == pytest.approx(304.5 / 3600, rel=0, abs=1e-12)


@pytest.mark.parametrize(
    ("gap_minutes", "expected"),
    [
        # one run over minutes 0..g (k = g + 1) costs 5.075 + max(0, g − 1); two runs 2 × 5.075 = 10.15:
        # one run is cheaper while 5.075 + g − 1 < 10.15, i.e. g ≤ 6
        (1, 5.075),  # one run of 2 minutes: 5.075 + 0 (two runs cannot be one minute apart: 10.15)
        (2, 6.075),  # one run of 3: 5.075 + 1
        (6, 10.075),  # one run of 7: 5.075 + 5 = 10.075 < 10.15
        (7, 10.15),  # one run of 8: 11.075 > two runs: 10.15
        (10, 10.15),  # 600 s apart: one run of 11 costs 14.075; two runs 10.15
    ],
)
def test_two_requests_apart_cost_one_long_run_or_two_short_ones_whichever_is_cheaper(
    gap_minutes: int, expected: float
) -> None:
    assert minutes([ask(0.0), ask(60.0 * gap_minutes)]) == exactly(expected)


@pytest.mark.parametrize(
    ("wait_s", "expected"),
    [
        # patience = ceil(wait / 60) minutes (rounded up: the bound allows at least the real wait);
        # the first (minute 0) must be served by minute 0 + patience, the second in minute 7 or later
        (0, 10.15),  # patience 0: runs at 0 and at 7 (one run 0..7 of 8 minutes: 11.075)
        (240, 7.075),  # patience 4: one run 4..7, k = 4: 5.075 + 2
        (300, 6.075),  # patience 5: one run 5..7, k = 3: 5.075 + 1
        (360, 5.075),  # patience 6: one run 6..7, k = 2: 5.075 (its second minute is free)
        (361, 5.075),  # patience ceil(6.02) = 7: both in minute 7, k = 1: 5.075
        (420, 5.075),  # patience 7
    ],
)
def test_an_allowed_interactive_wait_lets_the_first_request_wait_for_the_second(wait_s: int, expected: float) -> None:
    assert minutes([ask(0.0), ask(420.0)], wait_s) == exactly(expected)  # minutes 0 and 7


def test_interactive_requests_beyond_a_minute_s_capacity_do_not_buy_a_second_instance() -> None:
    # 800 interactive requests in minute 0, more than 2 × 335.6 = 671.2: served by one instance in that
    # minute all the same (the capacity they need beyond a minute's is not charged: a relaxation that
    # keeps the optimum a lower bound): one run of one minute, 5.075
    assert minutes([ask(0.0)] * 800) == exactly(5.075)


def test_a_batch_line_with_a_far_deadline_rides_with_a_later_interactive_request_for_nothing() -> None:
    # the line arrives at 0, due at 86,400 (minute 1,440): served in minute 60 beside the request
    assert minutes([line(0.0), ask(3600.0)]) == minutes([ask(3600.0)]) == exactly(5.075)
    # due at 1,800 s: served by the end of minute floor(1,800 / 60) = 30, so a run of its own before the
    # request's: 2 × 5.075 = 10.15 (one run over minutes 30..60, k = 31, would cost 5.075 + 29)
    assert minutes([line(0.0, 1800.0), ask(3600.0)]) == exactly(10.15)


@pytest.mark.parametrize(
    ("deadline_s", "expected"),
    [
        # the interactive request is in minute 31 (1,860 s); the line must be served by the end of
        # minute floor(deadline / 60)
        (1830.0, 5.075),  # minute 30: one run 30..31, k = 2: 5.075
        (1800.0, 5.075),  # minute 30 too
        (1859.0, 5.075),  # minute 30 (1,859 / 60 = 30.98)
        (1799.0, 6.075),  # minute 29: one run 29..31, k = 3: 5.075 + 1 (two runs: 10.15)
    ],
)
def test_a_line_may_be_served_in_its_deadline_s_minute(deadline_s: float, expected: float) -> None:
    assert minutes([line(0.0, deadline_s), ask(1860.0)]) == exactly(expected)


def test_a_thousand_lines_take_as_many_instance_minutes_as_their_deadline_lets_them() -> None:
    # 1,000 / 335.6 = 2.98 instance-minutes. One instance does 336 a minute: 1,000 → 664 → 328 → 0,
    # one run of 3 minutes: 5.075 + 1 = 6.075 (two instances for 2 minutes: 672 a minute,
    # 1,000 → 328 → 0, two runs of 2: 2 × 5.075 = 10.15)
    assert minutes([line(0.0) for _ in range(1000)]) == exactly(6.075)
    # due at 120 s: served by the end of minute 2 (minutes 0, 1, 2): the one instance for 3 minutes still
    assert minutes([line(0.0, 120.0) for _ in range(1000)]) == exactly(6.075)
    # due at 60 s: by the end of minute 1: one instance does 2 × 336 = 672 < 1,000, so two start:
    # two runs of 2 minutes (or one of 2 and one of 1): 2 × 5.075 = 10.15
    assert minutes([line(0.0, 60.0) for _ in range(1000)]) == exactly(10.15)
    # due at 59 s: by the end of minute 0: the two instances allowed do 672 < 1,000: no schedule at all
    assert math.isinf(minutes([line(0.0, 59.0) for _ in range(1000)]))


def test_ten_requests_a_minute_apart_at_each_allowed_wait() -> None:
    requests = [ask(60.0 * k) for k in range(10)] + [line(0.0)]  # minutes 0..9, one line due at 86,400
    # no wait: one run over minutes 0..9, k = 10: 5.075 + 8 = 13.075 (the line rides along)
    assert minutes(requests) == exactly(13.075)
    # 10 s (patience ceil(10 / 60) = 1): minute 0's request by minute 1, minute 9's in minute 9: one run
    # 1..9, k = 9: 5.075 + 7 = 12.075 (a gap at minute m needs a second start: at least 2 × 5.075 + 4
    # for the 8 minutes left on)
    assert minutes(requests, 10) == exactly(12.075)
    # 305 s (patience 6): minute 0's request by minute 6, minute 9's in 9 or later: one run 6..9, k = 4:
    # 5.075 + 2 = 7.075
    assert minutes(requests, 305) == exactly(7.075)


def test_compare_gives_the_optimum_at_the_interactive_target_and_at_the_policy_s_longest_wait() -> None:
    requests = [ask(60.0 * k) for k in range(10)] + [line(0.0)]
    assert Policy().interactive_target_s == 10
    report = compare(requests, replace(POLICY, mode="scheduler"), optimum=True)
    # the scheduler's longest interactive wait is the first request's cold start, 305 s
    # (tests/unit/test_simulate.py works that day out)
    assert report.lanes["interactive"]["wait_max_s"] == 305
    # at the 10 s target: 12.075 minutes; at the policy's 305 s: 7.075 minutes
    assert report.optimum_instance_hours == round(12.075 / 60, 4)  # 0.2012
    assert report.optimum_same_wait_instance_hours == round(7.075 / 60, 4)  # 0.1179


# The scheduler's and target tracking's days on these traces are worked out in tests/unit/test_simulate.py
# (seconds billed in the comments there); each policy's longest interactive wait is a cold start of
# 305 s (or there is no interactive request: 0 s), so its optimum at the same wait is a run or two:
TRACES = {
    # one request at 0: scheduler 0..599 (600 s); target tracking 15 low minutes, 0..899 (900 s).
    # Optimum (patience 6): one run of 1 minute, 5.075
    "one request": ([ask(0.0)], 600, 900, 5.075),
    # one a minute for 10 minutes and a line: scheduler 0..839 (840 s); target tracking 0..1,199 (1,200 s).
    # Optimum (305 s: patience 6): one run 6..9, 7.075
    "ten requests": ([ask(60.0 * k) for k in range(10)] + [line(0.0)], 840, 1200, 7.075),
    # 10 lines at 0 and a request at 3,600: scheduler 3,600..4,259 (660 s); target tracking two cold
    # starts of 900 s. Optimum: the lines ride with the request in minute 60: 5.075
    "lines and a request": ([line(0.0) for _ in range(10)] + [ask(3600.0)], 660, 1800, 5.075),
    # one line at 0: scheduler 84,300..84,959 (660 s, the pull-in); target tracking at once, 0..899
    # (900 s). Optimum (no interactive request: 0 s): one run of 1 minute, 5.075
    "one line": ([line(0.0)], 660, 900, 5.075),
}


@pytest.mark.parametrize("mode", ["scheduler", "target-tracking"])
@pytest.mark.parametrize("name", list(TRACES))
def test_each_policy_spends_at_least_the_optimum_at_its_own_longest_wait(name: str, mode: str) -> None:
    requests, scheduler_s, target_tracking_s, optimum_minutes = TRACES[name]
    report = compare(requests, replace(POLICY, mode=mode), optimum=True)
    billed_s = scheduler_s if mode == "scheduler" else target_tracking_s
    assert report.instance_hours == round(billed_s / 3600, 4)
    assert report.lanes.get("interactive", {}).get("wait_max_s", 0.0) == (0.0 if name == "one line" else 305)
    assert report.optimum_same_wait_instance_hours == round(optimum_minutes / 60, 4)
    assert report.optimum_same_wait_instance_hours is not None
    assert report.instance_hours >= report.optimum_same_wait_instance_hours  # e.g. 600 s ≥ 304.5 s
    assert report.deadlines_missed == 0


def test_the_bound_is_below_the_cheapest_real_run_for_one_request() -> None:
    # a run in seconds bills at least the 304.5 s start-up and the request's 4 × 600 / 3356 = 0.715 s on
    # one slot: 305.2 s; the optimum charges 5.075 minutes = 304.5 s, whatever the wait allowed
    cheapest_real_run_s = 304.5 + 4 * 600 / 3356
    for wait_s in (0.0, 10.0, 305.0):
        assert 60 * minutes([ask(0.0)], wait_s) == exactly(304.5)
        assert 60 * minutes([ask(0.0)], wait_s) <= cheapest_real_run_s
