"""`stratus_core.scheduling.decide` on observations whose answers are worked out by hand.

One configuration throughout (every value spelled out, none taken from the defaults):
an instance completes 4 requests/s with its 4 slots busy, so deferrable work, which may use 3 of the
4 slots, runs at 4 × 3/4 = 3 requests/s: `waiting` held requests are `waiting / 3` seconds of one
instance. Interactive: one instance finishes 4 × 30 = 120 requests within `interactive_drain_s`.
The scheduler runs once a minute (`tick_s` 60): a deadline pull-in's sizing allows for the run it was
noticed late by, but never for more than the margin (`min(tick_s, deadline_margin_s)`), and during a
cold start counts only what is left of the start already asked for (`asked_at`).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from stratus_core.scheduling import (
    Observation,
    SchedulerConfig,
    SchedulerState,
    decide,
    deferred_work_s,
    release_count,
    slack_s,
    wanted_instances,
)

CONFIG = SchedulerConfig(
    instance_jobs_per_s=4.0,
    max_instances=2,
    slots=4,
    interactive_drain_s=30,
    startup_s=300,
    idle_scale_in_s=300,
    warm_window_s=1800,
    deadline_margin_s=1800,
    release_horizon_s=120,
    tick_s=60,
    start_timeout_s=1200,
    max_backoff_s=1800,
    throughput_safety=1.0,  # (f) below plans at 2×
    interactive_quiet_s=None,  # (f) below lets a quiet endpoint's deferrable work fill every slot
)
DAY = 86_400.0


def observe(**fields: Any) -> Observation:
    """An idle endpoint at zero, at t=0, unless told otherwise."""
    values: dict[str, Any] = {
        "now": 0.0,
        "in_service": 0,
        "desired": 0,
        "interactive": 0,
        "released": 0,
        "waiting": 0,
        "earliest_deadline": None,
        "last_work_at": None,
    }
    values.update(fields)
    return Observation(**values)


def test_the_configuration_s_rates() -> None:
    assert CONFIG.deferrable_share == 0.75  # (4 - 1) / 4
    assert CONFIG.deferrable_jobs_per_s == 3.0  # 4 × 0.75
    assert deferred_work_s(300, CONFIG) == 100.0  # 300 / 3
    assert SchedulerConfig(instance_jobs_per_s=1.0, slots=1).deferrable_share == 1.0  # one slot: all of it


# (a) deferral ---------------------------------------------------------------------------------------


def test_held_batch_work_with_plenty_of_slack_does_not_start_an_endpoint_at_zero() -> None:
    # 300 batch lines, due at 86,400 s: 300 / 3 = 100 s of one instance, far below the 1,800 s warm
    # window. slack = 86,400 − 0 − 300 (start-up) − 100 (work) − 1,800 (margin) = 84,200 s > 0: hold.
    observation = observe(waiting=300, earliest_deadline=DAY)
    assert slack_s(observation, CONFIG) == 84_200.0

    decision = decide(observation, CONFIG, SchedulerState())

    assert (decision.desired, decision.release, decision.ask_again) == (0, 0, False)
    assert decision.reason == "deferrable 300 held, slack 84200 s"
    assert decision.state == SchedulerState()  # nothing asked for, nothing to remember


# (b) up anyway --------------------------------------------------------------------------------------


def test_held_work_is_released_when_an_instance_is_in_service_anyway() -> None:
    # One instance up for 2 interactive requests (ceil(2 / 120) = 1 instance). Its deferrable slots
    # finish 1 × 3 × 120 = 360 requests in the release horizon; 100 were let go before and are not
    # finished, so 360 − 100 = 260 more go now (1,000 are held: no cap).
    # Deadline need: 1,000 / 3 = 333.3 s of work over 86,400 − 3,600 − 0 − 1,800 + 60 = 81,060 s: 1 instance.
    observation = observe(
        now=3600.0,
        in_service=1,
        desired=1,
        interactive=2,
        released=100,
        waiting=1000,
        earliest_deadline=DAY,
        last_work_at=3600.0,
    )
    assert wanted_instances(observation, CONFIG) == (1, True, "interactive 2; deferrable 1000 up anyway; released 100")

    decision = decide(observation, CONFIG, SchedulerState())

    assert (decision.desired, decision.release) == (1, 260)
    assert decision.reason == "interactive 2; deferrable 1000 up anyway; released 100"
    assert decision.state == SchedulerState(busy_at=3600.0)  # work seen: the idle clock counts from here


def test_the_release_scales_with_the_instances_in_service_and_is_capped_by_what_is_held() -> None:
    up = observe(now=3600.0, in_service=1, desired=1, released=100, waiting=1000, earliest_deadline=DAY)
    # two instances: ceil(2 × 3 × 120) − 100 = 720 − 100 = 620
    assert release_count(replace(up, in_service=2, desired=2), CONFIG, True) == 620
    # only 50 held: min(50, 360 − 100) = 50
    assert release_count(replace(up, waiting=50), CONFIG, True) == 50
    # 400 let go and unfinished is more than the 360 the horizon holds: max(0, 360 − 400) = 0
    assert release_count(replace(up, released=400), CONFIG, True) == 0
    # a fractional budget is rounded up: 1 request/s × 3/4 × 50 s = 37.5 -> 38
    slow = replace(CONFIG, instance_jobs_per_s=1.0, release_horizon_s=50)
    assert release_count(replace(up, released=0), slow, True) == 38
    # no instance in service, or deferrable work not running: nothing goes
    assert release_count(replace(up, in_service=0), CONFIG, True) == 0
    assert release_count(up, CONFIG, False) == 0

    decision = decide(
        replace(up, in_service=2, desired=2, interactive=2, last_work_at=3600.0), CONFIG, SchedulerState()
    )
    # wanted is 1 (< 2): the surplus instance starts its idle clock but stays for now, and releases
    assert (decision.desired, decision.release, decision.state.low_since) == (2, 620, 3600.0)


# (c) enough gathered --------------------------------------------------------------------------------


def test_gathered_work_waits_for_its_deadline_so_that_one_warm_window_serves_the_day() -> None:
    # 54,000 lines / 3 per s = 18,000 s of one instance, ten warm windows' worth (1,800 s), and still
    # held: slack = 87,400 − 1,000 − 300 − 18,000 − 1,800 = 66,300 s. A window opened now would idle
    # out and cold-start again for the next batch; the latest start fits everything held.
    observation = observe(now=1000.0, waiting=54_000, earliest_deadline=87_400.0)

    decision = decide(observation, CONFIG, SchedulerState())

    assert (decision.desired, decision.release) == (0, 0)
    assert decision.reason == "deferrable 54000 held, slack 66300 s"

    # at t = 67,300 the slack is 0: start (one instance: 18,000 s ≤ 87,400 − 67,300 − 300 − 1,800 + 60)
    due = decide(replace(observation, now=67_300.0), CONFIG, SchedulerState())
    assert (due.desired, due.reason) == (1, "deferrable 54000 deadline")


def test_a_warm_window_of_zero_starts_the_endpoint_for_any_held_request_at_once() -> None:
    decision = decide(observe(waiting=1, earliest_deadline=DAY), replace(CONFIG, warm_window_s=0), SchedulerState())

    assert (decision.desired, decision.reason) == (1, "deferrable 1 no warm window: at once")


# (d) deadline pull-in -------------------------------------------------------------------------------


def test_held_work_is_pulled_in_when_its_slack_runs_out() -> None:
    # 3,000 lines = 1,000 s of one instance. At now = 10,000 with no instance up:
    # slack = D − 10,000 − 300 − 1,000 − 1,800 = D − 13,100.
    at = observe(now=10_000.0, waiting=3000)

    hold = replace(at, earliest_deadline=13_101.0)
    assert slack_s(hold, CONFIG) == 1.0
    decision = decide(hold, CONFIG, SchedulerState())
    assert (decision.desired, decision.reason) == (0, "deferrable 3000 held, slack 1 s")

    # slack 0: start. left = 13,100 − 10,000 − 300 − 1,800 + 60 = 1,060 s; ceil(1,000 / 1,060) = 1 instance
    start = replace(at, earliest_deadline=13_100.0)
    assert slack_s(start, CONFIG) == 0.0
    decision = decide(start, CONFIG, SchedulerState())
    assert (decision.desired, decision.release, decision.reason) == (1, 0, "deferrable 3000 deadline")
    assert decision.state == SchedulerState(asked_at=10_000.0, busy_at=10_000.0)


def test_the_first_run_with_slack_in_minus_one_tick_to_zero_asks_for_one_instance() -> None:
    # 3,000 lines = 1,000 s of one instance, at zero. left = slack + work + 2 ticks = slack + 1,120, so
    # ceil(1,000 / left) = 1 exactly while slack ≥ −120: the first run with no slack left, which finds it
    # in (−60, 0] (the run before had slack > 0), asks for one instance, not two, with a tick to spare
    # for the run that releases the lines after the instance comes into service.
    at = observe(waiting=3000)
    # deadline 13,070: at 9,960 slack = 13,070 − 9,960 − 300 − 1,000 − 1,800 = 10 s: held
    before = decide(replace(at, now=9960.0, earliest_deadline=13_070.0), CONFIG, SchedulerState())
    assert (before.desired, before.reason) == (0, "deferrable 3000 held, slack 10 s")
    # the next run, at 10,020: slack 10 − 60 = −50 s; left = 13,070 − 10,020 − 300 − 1,800 + 120 = 1,070 s:
    # ceil(1,000 / 1,070) = 1 (without the ticks: ceil(1,000 / 950) = 2). One instance in service at
    # 10,320 finishes at 11,320, 1,750 s before the deadline: 50 s into the 1,800 s margin.
    first = replace(at, now=10_020.0, earliest_deadline=13_070.0)
    assert slack_s(first, CONFIG) == -50.0
    assert wanted_instances(first, CONFIG) == (1, True, "deferrable 3000 deadline")
    assert decide(first, CONFIG, before.state).desired == 1

    # the edges, at now = 10,000: slack −119 (deadline 12,981): left 1,001, 1 instance; slack −120
    # (12,980): left 1,000, ceil(1,000 / 1,000) = 1; slack −121 (12,979): left 999, ceil(1.001) = 2
    at = replace(at, now=10_000.0)
    assert [
        decide(replace(at, earliest_deadline=deadline), CONFIG, SchedulerState()).desired
        for deadline in (12_981.0, 12_980.0, 12_979.0)
    ] == [1, 1, 2]
    # with the tick at 0 (the rule before), slack −59 already asks for 2: ceil(1,000 / 941) = 2
    assert decide(replace(at, earliest_deadline=13_041.0), replace(CONFIG, tick_s=0), SchedulerState()).desired == 2


def test_the_runs_during_the_cold_start_count_only_what_is_left_of_it_and_keep_one_instance() -> None:
    # as above: at 10,020 (slack −50) one instance is asked for; it serves from 10,320 and finishes the
    # 1,000 s at 11,320, 1,750 s before the deadline 13,070 (50 s into the margin): one is enough.
    first = decide(observe(now=10_020.0, waiting=3000, earliest_deadline=13_070.0), CONFIG, SchedulerState())
    assert (first.desired, first.state.asked_at) == (1, 10_020.0)
    state = first.state
    # the runs at 10,080 .. 10,260: none in service yet, so slack = 13,070 − now − 300 − 1,000 − 1,800 < 0
    # (−110 at 10,080): still "deadline". The lead is what is left of the start asked at 10,020:
    # 10,020 + 300 − now (240 s at 10,080, 60 s at 10,260), so
    # left = 13,070 − now − (10,320 − now) − 1,800 + 120 = 1,070 s at every one: ceil(1,000 / 1,070) = 1
    # (counting a whole start-up again, at 10,260: left = 13,070 − 10,260 − 300 − 1,800 + 120 = 830: 2)
    for now in (10_080.0, 10_140.0, 10_200.0, 10_260.0):
        observation = observe(now=now, desired=1, waiting=3000, earliest_deadline=13_070.0)
        assert wanted_instances(observation, CONFIG, state.asked_at) == (1, True, "deferrable 3000 deadline"), now
        later = decide(observation, CONFIG, state)
        assert (later.desired, later.release) == (1, 0), now
        assert later.state == SchedulerState(asked_at=10_020.0, busy_at=now), now  # the ask stays the first one
        state = later.state
    # 10,320: in service. No lead; left = 13,070 − 10,320 − 0 − 1,800 + 120 = 1,070: still 1. The held
    # lines go: ceil(1 × 3 × 120) = 360; the start's bookkeeping is cleared
    up = decide(observe(now=10_320.0, in_service=1, desired=1, waiting=3000, earliest_deadline=13_070.0), CONFIG, state)
    assert (up.desired, up.release, up.reason) == (1, 360, "deferrable 3000 up anyway")
    assert up.state == SchedulerState(busy_at=10_320.0)


def test_the_first_run_after_the_cold_start_does_not_buy_a_second_instance() -> None:
    # a start-up that is not a whole number of runs, as in the simulator (300 + 4.5 s)
    slow = replace(CONFIG, startup_s=304.5)
    # 3,000 lines = 1,000 s, deadline 13,070. At 10,020: slack = 13,070 − 10,020 − 304.5 − 1,000 − 1,800
    # = −54.5: pull in; left = 13,070 − 10,020 − 304.5 − 1,800 + 120 = 1,065.5: 1 instance, in service
    # at 10,324.5
    first = decide(observe(now=10_020.0, waiting=3000, earliest_deadline=13_070.0), slow, SchedulerState())
    assert (first.desired, first.state.asked_at) == (1, 10_020.0)
    # 10,320: 4.5 s of the start left: left = 13,070 − 10,320 − 4.5 − 1,800 + 120 = 1,065.5: still 1
    before = decide(observe(now=10_320.0, desired=1, waiting=3000, earliest_deadline=13_070.0), slow, first.state)
    assert before.desired == 1
    # 10,380: in service since 10,324.5, the first lines go now. No lead:
    # left = 13,070 − 10,380 − 1,800 + 120 = 1,010: ceil(1,000 / 1,010) = 1 (with one tick of tolerance,
    # 950: 2, a second instance for the 55.5 s between coming into service and this run). One instance
    # alone is done at 10,380 + 1,000 = 11,380, 1,690 s before the deadline, 110 s into the margin
    up = decide(
        observe(now=10_380.0, in_service=1, desired=1, waiting=3000, earliest_deadline=13_070.0), slow, before.state
    )
    assert up.release == 360  # ceil(1 × 3 × 120)
    assert up.desired == 1


def test_the_lead_of_a_start_is_what_is_left_of_it_and_never_below_zero() -> None:
    # 3,000 lines (1,000 s), deadline 13,070, at zero. A start asked at 10,020 is due in service at 10,320.
    at = observe(desired=1, waiting=3000, earliest_deadline=13_070.0)
    # asked_at None (nothing asked yet): a whole start-up, at 10,140:
    # left = 13,070 − 10,140 − 300 − 1,800 + 120 = 950: ceil(1,000 / 950) = 2
    assert wanted_instances(replace(at, now=10_140.0), CONFIG, None)[0] == 2
    # asked at 10,020: 180 s left of it: left = 13,070 − 10,140 − 180 − 1,800 + 120 = 1,070: 1
    assert wanted_instances(replace(at, now=10_140.0), CONFIG, 10_020.0)[0] == 1
    # a start overdue (asked at 10,020, not in service at 10,460): max(0, 10,320 − 10,460) = 0 s of lead:
    # left = 13,070 − 10,460 − 0 − 1,800 + 120 = 930: ceil(1,000 / 930) = 2
    assert wanted_instances(replace(at, now=10_460.0), CONFIG, 10_020.0)[0] == 2
    # an instance in service: no lead whatever was asked: at 10,400 the same 930 s: 2
    up = replace(at, now=10_400.0, in_service=1)
    assert wanted_instances(up, CONFIG, 10_020.0) == wanted_instances(up, CONFIG, None)
    assert wanted_instances(up, CONFIG, None)[0] == 2


def test_the_tolerance_of_one_run_is_never_more_than_the_margin() -> None:
    # 3,000 lines = 1,000 s at zero, at 10,000, DeadlineMarginMinutes 0.5 (30 s): the tolerance is
    # min(60, 30) = 30 s. slack = D − 10,000 − 300 − 1,000 − 30 = D − 11,330;
    # left = D − 10,000 − 300 − 30 + 30 = D − 10,300.
    half = replace(CONFIG, deadline_margin_s=30)
    at = observe(now=10_000.0, waiting=3000)
    # D = 11,300 (slack −30): left 1,000: 1 instance, in service at 10,300, done at 11,300 = D: in time
    assert wanted_instances(replace(at, earliest_deadline=11_300.0), half) == (1, True, "deferrable 3000 deadline")
    # D = 11,299: left 999: ceil(1,000 / 999) = 2, done at 10,300 + 500 = 10,800 < 11,299 (with a
    # tolerance of the whole tick: left 1,029, 1 instance, done at 11,300, 1 s late)
    assert wanted_instances(replace(at, earliest_deadline=11_299.0), half)[0] == 2
    # the margin at its default 1,800 s ≥ the tick: the whole tick, as in the tests above
    assert min(CONFIG.tick_s, CONFIG.deadline_margin_s) == 60


def replay_held_lines(config: SchedulerConfig, lines: int, deadline: float) -> tuple[list[int], float]:
    """`decide` once a minute from t=0 for `lines` batch lines held at an endpoint at zero, with nothing
    else to do: instances asked for serve `startup_s` later; in-service instances finish released lines
    at 3 a second each (their deferrable slots) between runs. Returns the instances asked for at each
    run and when the last line is done."""
    state, desired, ready_at = SchedulerState(), 0, []  # ready_at: when each instance serves
    waiting, released, last_work_at, now = lines, 0.0, None, 0.0
    asked: list[int] = []
    while now < 10 * DAY:
        in_service = sum(1 for ready in ready_at if ready <= now)
        observation = observe(
            now=now,
            in_service=in_service,
            desired=desired,
            released=int(released),
            waiting=waiting,
            earliest_deadline=deadline if waiting else None,
            last_work_at=last_work_at,
        )
        decision = decide(observation, config, state)
        state, desired = decision.state, decision.desired
        asked.append(desired)
        ready_at = (ready_at + [now + config.startup_s] * desired)[:desired]  # scale-in: the last asked go
        waiting, released = waiting - decision.release, released + decision.release
        last_work_at = now if decision.release else last_work_at
        rate = sum(1 for ready in ready_at if ready <= now) * config.deferrable_jobs_per_s
        if waiting == 0 and released and released <= rate * config.tick_s:
            return asked, now + released / rate
        released = max(0.0, released - rate * config.tick_s)
        now += config.tick_s
    raise AssertionError("never finished")


def test_with_no_margin_the_pull_in_buys_the_instances_that_finish_before_the_deadline() -> None:
    # 3,000 lines = 1,000 s at zero, now 0, deadline 1,241, DeadlineMarginMinutes 0:
    # slack = 1,241 − 0 − 300 − 1,000 − 0 = −59: pull in. The tolerance is min(60, 0) = 0, so
    # left = 1,241 − 0 − 300 − 0 + 0 = 941 s: ceil(1,000 / 941) = 2. (A tolerance of the whole tick
    # gives left 1,001: 1 instance, done at 300 + 1,000 = 1,300, 59 s after the deadline.)
    tight = replace(CONFIG, deadline_margin_s=0)
    observation = observe(waiting=3000, earliest_deadline=1241.0)
    assert slack_s(observation, tight) == -59.0
    assert wanted_instances(observation, tight) == (2, True, "deferrable 3000 deadline")
    assert decide(observation, tight, SchedulerState()).desired == 2

    # played out: 0..240 the two start (left stays 1,241 − (0 + 300) − 0 = 941: 2). At 300 both serve:
    # ceil(2 × 3 × 120) = 720 go; each later run 720 − 360 done = 360 more. From 360 one instance is
    # wanted (2,280 held = 760 s, left 1,241 − 360 = 881 s): the second goes 300 s later, at 660, when
    # 360 s × 6 = 2,160 lines are done; the last 840 take one instance 840 / 3 = 280 s: done at 940.
    asked, done = replay_held_lines(tight, 3000, 1241.0)
    assert asked == [2] * 11 + [1] * 5  # runs at 0, 60, ..., 600; 660, ..., 900
    assert done == 940.0 and done <= 1241.0
    # one instance could not: done at 300 + 3,000 / 3 = 1,300 > 1,241
    alone = replace(tight, max_instances=1)
    assert replay_held_lines(alone, 3000, 1241.0)[1] == 1300.0


def test_a_late_deadline_buys_the_instances_that_finish_before_it() -> None:
    at = observe(now=10_000.0, waiting=3000)  # 1,000 s of one instance
    # deadline 12,600: slack −500; left = 12,600 − 10,000 − 300 − 1,800 + 120 = 620 s:
    # ceil(1,000 / 620) = ceil(1.61) = 2
    assert decide(replace(at, earliest_deadline=12_600.0), CONFIG, SchedulerState()).desired == 2
    # deadline 12,290: left 310 s: ceil(1,000 / 310) = ceil(3.23) = 4, capped at max_instances 2 ...
    assert decide(replace(at, earliest_deadline=12_290.0), CONFIG, SchedulerState()).desired == 2
    wide = replace(CONFIG, max_instances=10)
    assert decide(replace(at, earliest_deadline=12_290.0), wide, SchedulerState()).desired == 4  # ... or not
    # deadline 12,400: left 420 s: ceil(1,000 / 420) = ceil(2.38) = 3
    assert decide(replace(at, earliest_deadline=12_400.0), wide, SchedulerState()).desired == 3
    # deadline 12,200: left 220 s: ceil(1,000 / 220) = ceil(4.55) = 5
    assert decide(replace(at, earliest_deadline=12_200.0), wide, SchedulerState()).desired == 5
    # deadline 12,090: left 110 s, below the 120 s release horizon, which is used instead:
    # ceil(1,000 / 120) = ceil(8.33) = 9
    assert decide(replace(at, earliest_deadline=12_090.0), wide, SchedulerState()).desired == 9


# (e) idle scale-in ----------------------------------------------------------------------------------


def test_the_last_instance_stays_while_work_went_to_it_recently_then_goes_to_zero() -> None:
    # work last went to the endpoint at 1,000; idle_scale_in_s = 300
    idle = observe(in_service=1, desired=1, last_work_at=1000.0)

    stays = decide(replace(idle, now=1299.0), CONFIG, SchedulerState())
    assert (stays.desired, stays.reason) == (1, "no work; idle for 299 s")

    goes = decide(replace(idle, now=1300.0), CONFIG, SchedulerState())
    assert (goes.desired, goes.reason) == (0, "no work; scale in to zero: no work for 300 s")
    assert goes.state == SchedulerState()

    # the later of the two clocks counts: a run saw work at 1,100 (busy_at), after the last dispatch
    # (1,000): idle from 1,100, so at 1,300 it has been 200 s, and it goes at 1,400
    seen = SchedulerState(busy_at=1100.0)
    assert decide(replace(idle, now=1300.0), CONFIG, seen).reason == "no work; idle for 200 s"
    assert decide(replace(idle, now=1400.0), CONFIG, seen).desired == 0
    # a dispatch after the last busy run (last_work_at 1,200 > busy_at 1,100): idle from 1,200
    later = decide(replace(idle, now=1400.0, last_work_at=1200.0), CONFIG, seen)
    assert (later.desired, later.reason) == (1, "no work; idle for 200 s")


def test_one_request_that_waited_out_a_cold_start_keeps_the_instance_after_the_last_run_that_saw_it() -> None:
    # One interactive request, dispatched at t=0 to an endpoint at zero (last_work_at stays 0). The
    # instance starts in 300 s; the runs at 0, 60, ..., 240 see the request queued, the run at 300 sees
    # it running on the instance now in service: busy_at = 300. It is done before the run at 360.
    state = SchedulerState()
    for now, in_service in ((0.0, 0), (60.0, 0), (120.0, 0), (180.0, 0), (240.0, 0), (300.0, 1)):
        decision = decide(
            observe(now=now, in_service=in_service, desired=0 if now == 0 else 1, interactive=1, last_work_at=0.0),
            CONFIG,
            state,
        )
        assert decision.desired == 1, now
        state = decision.state
    # at 300 the instance is in service: the start's bookkeeping is cleared, the run that saw work kept
    assert state == SchedulerState(busy_at=300.0)

    done = observe(in_service=1, desired=1, last_work_at=0.0)
    # at 360: idle since max(last_work_at 0, busy_at 300) = 300: 60 s < 300 s, the instance stays ...
    stays = decide(replace(done, now=360.0), CONFIG, state)
    assert (stays.desired, stays.reason) == (1, "no work; idle for 60 s")
    assert stays.state == state  # a run that sees no work does not move busy_at
    # ... where counting from the dispatch (busy_at unset: 360 − 0 = 360 s ≥ 300 s) would remove it
    assert decide(replace(done, now=360.0), CONFIG, SchedulerState()).desired == 0
    # 599: idle 299 s, stays; 600: 300 − 300 = 300 s after the last run that saw the request: to zero
    assert decide(replace(done, now=599.0), CONFIG, state).desired == 1
    gone = decide(replace(done, now=600.0), CONFIG, state)
    assert (gone.desired, gone.reason) == (0, "no work; scale in to zero: no work for 300 s")
    assert gone.state == SchedulerState(busy_at=300.0)


def test_a_surplus_instance_goes_after_idle_scale_in_s_of_fewer_wanted() -> None:
    # 5 interactive requests: ceil(5 / 120) = 1 instance wanted; the endpoint has 2
    busy = observe(in_service=2, desired=2, interactive=5)

    first = decide(replace(busy, now=2000.0, last_work_at=2000.0), CONFIG, SchedulerState())
    assert (first.desired, first.state.low_since) == (2, 2000.0)
    assert first.reason == "interactive 5; fewer wanted for 0 s"

    later = decide(replace(busy, now=2299.0, last_work_at=2299.0), CONFIG, first.state)
    assert (later.desired, later.state.low_since) == (2, 2000.0)  # 299 s < 300 s

    gone = decide(replace(busy, now=2300.0, last_work_at=2300.0), CONFIG, later.state)
    assert (gone.desired, gone.state.low_since) == (1, None)  # 2,300 − 2,000 = 300 s
    assert gone.reason == "interactive 5; scale in after 300 s with fewer wanted"

    # 121 requests want ceil(121 / 120) = 2 again: the idle clock starts over
    back = decide(replace(busy, now=2299.0, interactive=121, last_work_at=2299.0), CONFIG, later.state)
    assert (back.desired, back.state.low_since) == (2, None)


# (f) no over-buying during a cold start -------------------------------------------------------------


def test_a_cold_start_buys_what_the_backlog_needs_not_one_per_minute_of_waiting() -> None:
    # t=0: the first interactive request asks for one instance; nothing serves for 300 s and the
    # queue grows by 30 a minute. One instance finishes 120 within 30 s: at 30, 60, 90, 120 queued
    # one is still enough, whatever the time waited.
    state = SchedulerState()
    first = decide(observe(interactive=1, last_work_at=0.0), CONFIG, state)
    assert (first.desired, first.state.asked_at) == (1, 0.0)
    state = first.state
    for now, queued in ((60.0, 30), (120.0, 60), (180.0, 90), (240.0, 120)):
        decision = decide(
            observe(now=now, desired=1, interactive=queued, last_work_at=now),
            CONFIG,
            state,
        )
        assert (decision.desired, decision.release, decision.ask_again) == (1, 0, False), now
        assert decision.state == SchedulerState(asked_at=0.0, busy_at=now), now
        state = decision.state
    # 121 queued: ceil(121 / 120) = 2: it is the backlog that counts
    more = decide(observe(now=300.0, desired=1, interactive=121, last_work_at=300.0), CONFIG, state)
    assert more.desired == 2 and more.state.asked_at == 0.0


# (g) a start that never comes into service ----------------------------------------------------------


def test_a_start_that_never_comes_into_service_is_asked_again_with_a_doubling_backoff() -> None:
    patient = replace(CONFIG, max_backoff_s=10_000)  # see the doubling before the cap
    stuck = observe(desired=1, interactive=1)
    state = SchedulerState(asked_at=0.0)

    def at(now: float, config: SchedulerConfig = patient) -> Any:
        return decide(replace(stuck, now=now, last_work_at=now), config, state)

    # 1,199 s after the ask: not yet (the run saw work: busy_at = now, in every run below)
    early = at(1199.0)
    assert (early.desired, early.ask_again, early.state) == (1, False, SchedulerState(asked_at=0.0, busy_at=1199.0))
    # 1,200 s: attempt 1, backoff 1,200 × 2^0 = 1,200: next check at 2,400
    first = at(1200.0)
    assert (first.desired, first.ask_again) == (1, True)
    assert first.state == SchedulerState(asked_at=1200.0, start_attempts=1, retry_at=2400.0, busy_at=1200.0)
    assert first.reason == "start failed (attempt 1, next check in 1200 s): asking again; interactive 1"
    state = first.state
    assert at(2399.0).ask_again is False  # 1,199 s after the new ask
    # 2,400: attempt 2, backoff 1,200 × 2 = 2,400: next check at 4,800
    second = at(2400.0)
    assert second.ask_again is True
    assert second.state == SchedulerState(asked_at=2400.0, start_attempts=2, retry_at=4800.0, busy_at=2400.0)
    state = second.state
    waiting = at(4799.0)  # 2,399 s after the ask, but before retry_at: only busy_at moves
    assert (waiting.ask_again, waiting.state) == (False, replace(second.state, busy_at=4799.0))
    third = at(4800.0)  # attempt 3: 1,200 × 4 = 4,800: next at 9,600
    assert third.state == SchedulerState(asked_at=4800.0, start_attempts=3, retry_at=9600.0, busy_at=4800.0)

    # with the default cap of 1,800 s, attempt 2's 2,400 s becomes 1,800: next at 2,400 + 1,800
    state = first.state
    capped = at(2400.0, CONFIG)
    assert capped.state == SchedulerState(asked_at=2400.0, start_attempts=2, retry_at=4200.0, busy_at=2400.0)

    # the instance comes into service at last: the fault is forgotten
    state = third.state
    served = decide(replace(stuck, now=5000.0, in_service=1, last_work_at=5000.0), patient, state)
    assert (served.desired, served.ask_again, served.state) == (1, False, SchedulerState(busy_at=5000.0))


def test_a_failed_start_of_an_instance_no_longer_wanted_is_not_asked_again() -> None:
    # Two were asked for at t=0 for a burst; one serves, the second never comes. At 1,200 s only one
    # is wanted (5 interactive: ceil(5 / 120) = 1): asking again would buy an unwanted instance.
    # It goes like any surplus: after 300 s of fewer wanted.
    stuck = observe(in_service=1, desired=2, interactive=5)
    state = SchedulerState(asked_at=0.0)

    at_timeout = decide(replace(stuck, now=1200.0, last_work_at=1200.0), CONFIG, state)
    assert (at_timeout.desired, at_timeout.ask_again) == (2, False)
    assert at_timeout.state == SchedulerState(low_since=1200.0, asked_at=0.0, busy_at=1200.0)
    later = decide(replace(stuck, now=1500.0, last_work_at=1500.0), CONFIG, at_timeout.state)
    assert (later.desired, later.ask_again, later.state) == (1, False, SchedulerState(busy_at=1500.0))

    # with no work at all 50 s after the last request, the instance in service stays warm (idle
    # 50 s < 300 s): the failed start does not take it down
    quiet = decide(replace(stuck, now=1200.0, interactive=0, last_work_at=1150.0), CONFIG, state)
    assert (quiet.desired, quiet.ask_again) == (2, False)
    assert quiet.state == SchedulerState(low_since=1200.0, asked_at=0.0)  # no work seen: busy_at unset

    # at zero with two asked and one wanted: ask again for the one
    cold = decide(observe(now=1200.0, desired=2, interactive=5, last_work_at=1200.0), CONFIG, state)
    assert (cold.desired, cold.ask_again) == (1, True)
    assert cold.state == SchedulerState(asked_at=1200.0, start_attempts=1, retry_at=2400.0, busy_at=1200.0)


# (h) the endpoint is updating -----------------------------------------------------------------------


def test_an_updating_endpoint_is_left_alone() -> None:
    # 200 interactive would want ceil(200 / 120) = 2 and the held work would get 360 released,
    # but the endpoint is not InService: no change, nothing released, the state kept as it was
    state = SchedulerState(low_since=50.0)
    observation = observe(
        now=600.0,
        in_service=1,
        desired=1,
        interactive=200,
        waiting=1000,
        earliest_deadline=DAY,
        last_work_at=600.0,
        updating=True,
    )

    decision = decide(observation, CONFIG, state)

    assert (decision.desired, decision.release, decision.ask_again) == (1, 0, False)
    assert decision.state is state
    assert decision.reason == "endpoint updating: no change (interactive 200; deferrable 1000 up anyway)"
    # the same observation InService would have changed both
    running = decide(replace(observation, updating=False), CONFIG, state)
    assert (running.desired, running.release) == (2, 360)


def test_an_updating_endpoint_is_not_asked_again_for_a_start_that_looks_failed() -> None:
    # One instance asked for at t=0, none in service at 1,200 s: InService, that is a failed start,
    # asked again (attempt 1, next check at 1,200 + 1,200 = 2,400) ...
    state = SchedulerState(asked_at=0.0, busy_at=1140.0)
    stuck = observe(now=1200.0, desired=1, interactive=1, last_work_at=1200.0)
    retried = decide(stuck, CONFIG, state)
    assert (retried.desired, retried.ask_again) == (1, True)
    assert retried.state == SchedulerState(asked_at=1200.0, start_attempts=1, retry_at=2400.0, busy_at=1200.0)
    # ... but an update (a deploy) is checked first: no ask, no attempt counted, the state kept as it was
    updating = decide(replace(stuck, updating=True), CONFIG, state)
    assert (updating.desired, updating.release, updating.ask_again) == (1, 0, False)
    assert updating.state is state
    assert updating.reason == "endpoint updating: no change (interactive 1)"


# (i) purity -----------------------------------------------------------------------------------------


def test_decide_is_pure() -> None:
    state = SchedulerState(low_since=100.0, asked_at=50.0, start_attempts=1, retry_at=5000.0)
    kept = copy.deepcopy(state)
    observation = observe(
        now=700.0, in_service=1, desired=2, interactive=3, released=10, waiting=500, earliest_deadline=DAY
    )
    kept_observation = copy.deepcopy(observation)

    first = decide(observation, CONFIG, state)
    second = decide(observation, CONFIG, state)

    assert first == second
    assert state == kept and observation == kept_observation
    # 1 instance wanted (3 interactive), 2 asked: fewer wanted since 100, 600 s ≥ 300 s -> 1, which
    # the instance in service covers: the start's bookkeeping is cleared, busy_at is this run;
    # 360 − 10 = 350 released
    assert (first.desired, first.release) == (1, 350)
    assert first.state == SchedulerState(busy_at=700.0)


# (f) planning for a slower instance, and a quiet endpoint's slots -----------------------------------


def test_the_latest_start_is_planned_for_an_instance_half_as_fast_as_measured() -> None:
    # throughput_safety 2: 5,400 lines are 1,800 s at the measured 3 per s, planned as 3,600 s.
    # slack = 87,400 − 1,000 − 300 − 2 × 1,800 − 1,800 = 80,700 s (80,700 + 1,800 at 1×)
    observation = observe(now=1000.0, waiting=5400, earliest_deadline=87_400.0)

    assert slack_s(observation, replace(CONFIG, throughput_safety=2.0)) == 80_700.0
    assert slack_s(observation, CONFIG) == 82_500.0
    # started at its zero slack (t = 81,700), an instance at half the speed (1.5 lines/s) takes
    # 3,600 s after its 300 s start: done at 85,600, the margin's 1,800 s before the deadline
    assert 81_700.0 + 300 + 5400 / 1.5 == 87_400.0 - 1800


def test_deferrable_work_fills_every_slot_once_no_interactive_work_was_seen_for_the_quiet_time() -> None:
    config = replace(CONFIG, interactive_quiet_s=900.0)
    up = {"in_service": 1, "desired": 1, "waiting": 10_000, "earliest_deadline": DAY}

    # interactive work now: deferrable gets 3 of 4 slots, 3 × 120 = 360 lines
    busy = decide(observe(now=100.0, interactive=2, **up), config, SchedulerState())
    assert (busy.every_slot, busy.release, busy.state.interactive_at) == (False, 360, 100.0)

    # 899 s later, still within the quiet time: 3 slots
    still = decide(observe(now=999.0, **up), config, busy.state)
    assert (still.every_slot, still.release) == (False, 360)

    # 900 s after the last interactive work: every slot, 4 × 120 = 480 lines
    quiet = decide(observe(now=1000.0, **up), config, busy.state)
    assert (quiet.every_slot, quiet.release) == (True, 480)

    # a first run (a new deployment, or the first after a deploy) has seen nothing yet: the quiet time
    # starts then, and a batch-only deployment gets every slot 900 s later
    first = decide(observe(now=0.0, **up), config, SchedulerState())
    assert (first.every_slot, first.release, first.state.interactive_at) == (False, 360, 0.0)
    assert decide(observe(now=900.0, **up), config, first.state).every_slot is True
