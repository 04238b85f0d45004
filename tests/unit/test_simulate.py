"""`stratus simulate` on small traces whose answers are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratus.simulate import (
    DAY_S,
    OFFICE_HOURS,
    Policy,
    Request,
    compare,
    generate,
    pack_requests,
    read_trace,
    write_trace,
)

# 50 completion tokens at 335.6 tok/s shared by 4 slots: 0.596 s; 100 prompt tokens: 0.119 s
POLICY = Policy(startup_s=300, model_load_s=4.5, decode_tps=335.6, prefill_tps=3356, hourly_price_usd=1.408)
TIMES = ["--model-load", "4.5", "--decode-tps", "335.6"]  # the command's arithmetic below is worked with these


def test_one_request_at_zero_instances_waits_for_a_cold_start_then_the_endpoint_goes_back_to_zero() -> None:
    report = compare([Request(0.0, 100, 50)], POLICY)

    # t=0: HasBacklogWithoutCapacity -> the step policy asks for one instance; it serves from
    # 0 + 300 + 4.5 s, i.e. the 305th second. From t=60 the per-instance backlog (1, then 0) is below
    # 90 % of the target (3.6); after 15 such minutes (t=900) and past the 600 s cooldown, back to zero.
    assert report.wait_p50_s == report.wait_max_s == 305
    assert report.cold_starts == 1 and report.peak_instances == 1
    assert report.instance_hours == 0.25 and report.cost_usd == 0.35  # 900 s at $1.408/h
    assert report.always_on_instances == 1 and report.always_on_instance_hours == 24.0
    assert report.always_on_cost_usd == 33.79 and report.always_on_wait_p95_s == 0
    assert report.busy_instance_hours == pytest.approx((100 / 839 + 50 / 83.9) / 4 / 3600, abs=1e-6)


def test_requests_within_the_batching_window_share_an_invocation() -> None:
    requests = [Request(0.0, 10, 5), Request(0.4, 10, 5), Request(0.9, 10, 5), Request(1.5, 10, 5)]

    packs = pack_requests(requests, POLICY)
    assert [(p.requests, p.prompt_tokens, p.completion_tokens) for p in packs] == [(3, 30, 15), (1, 10, 5)]
    small = Policy(max_pack_size=2)
    # a full pack closes; the next one's window starts at its own first request (0.9 s)
    assert [p.requests for p in pack_requests(requests, small)] == [2, 2]


def test_target_tracking_adds_instances_after_three_minutes_above_target() -> None:
    # 40 invocations of 40 s each (1000 tokens at 100 tok/s over 4 slots) arrive at t=0 and at 5 s steps.
    policy = Policy(max_pack_size=1, decode_tps=100, prefill_tps=1e12, startup_s=300, model_load_s=4.5)
    requests = [Request(i * 5.0, 0, 1000) for i in range(40)]

    report = compare(requests, policy)

    timeline = {int(p["t"]): p for p in report.timeline}
    # one instance from the step policy at t=0; the per-instance backlog is above 4 at t=60, 120
    # and 180, so target tracking asks for ceil(40/4) = 10, capped at MaxInstanceCount = 2, at t=180.
    assert timeline[120]["instances"] == 1 and timeline[240]["instances"] == 2
    assert report.cold_starts == 1 and report.peak_instances == 2
    assert report.wait_p50_s > 305 - 5 * 20  # everyone waited for the cold start
    assert report.always_on_instances == 1 and report.always_on_instance_hours == 24.0
    two = compare(requests, policy, always_on_instances=2)
    assert two.always_on_instance_hours == 48.0 and two.always_on_wait_p95_s < report.always_on_wait_p95_s


def test_an_always_on_endpoint_serves_at_once() -> None:
    report = compare([Request(10.0, 100, 50)], Policy(min_instances=1))
    assert report.wait_max_s == 0 and report.cold_starts == 0
    assert report.instance_hours == 24.0  # the minimum never scales in


def test_generated_days_have_their_shapes_and_are_reproducible(tmp_path: Path) -> None:
    steady, diurnal, bursty = (generate(kind, 5000, seed=3) for kind in ("steady", "diurnal", "bursty"))
    assert generate("diurnal", 5000, seed=3) == diurnal
    for day in (steady, diurnal, bursty):
        assert 4000 < len(day) < 6000 and all(0 <= r.arrival_s < DAY_S for r in day)
    night = sum(1 for r in diurnal if 1 * 3600 <= r.arrival_s < 4 * 3600)
    afternoon = sum(1 for r in diurnal if 12 * 3600 <= r.arrival_s < 15 * 3600)
    assert afternoon > 20 * max(night, 1)
    busiest_two_minutes = max(
        sum(1 for r in bursty if s <= r.arrival_s < s + 120) for r0 in bursty[::50] for s in [r0.arrival_s]
    )
    assert busiest_two_minutes >= 250
    write_trace(steady[:10], tmp_path / "t.csv")
    assert read_trace(tmp_path / "t.csv") == [
        Request(round(r.arrival_s, 3), r.prompt_tokens, r.completion_tokens) for r in steady[:10]
    ]


def test_the_command_reads_the_template_and_writes_json_and_a_plot(tmp_path: Path) -> None:
    from stratus.cli import main

    write_trace([Request(0.0, 100, 50)], tmp_path / "one.csv")
    # the template's Scaling is Scheduler; IdleScaleInMinutes is given so the numbers below do not move
    # when its default does
    base = ["simulate", "--trace", str(tmp_path / "one.csv"), "--idle-scale-in", "5", "--json", *TIMES]
    result = CliRunner().invoke(main, [*base, "--plot", str(tmp_path / "day.png")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # t=0: one interactive request: one instance, in service from 304.5 s, the request starts at 305.
    # The runs at 0..300 see it queued (busy_at 300); at t=360 nothing is left, idle for 360 − 300 = 60 s:
    # the instance stays until 300 + 300 = 600. Billed 0..599: 600 s = 0.1667 h.
    assert report["policy"] == "scheduler"
    assert report["cold_starts"] == 1 and report["wait_max_s"] == 305 and report["instance_hours"] == 0.1667
    # the optimum: one run of one minute, charged its start-up, 304.5 s = 5.075 minutes, whether the
    # request may wait the 10 s target (ceil(10 / 60) = 1 minute) or the policy's 305 s (6 minutes):
    # 5.075 / 60 = 0.08458 h
    assert report["optimum_instance_hours"] == 0.0846 and report["optimum_same_wait_instance_hours"] == 0.0846
    assert report["always_on_instance_hours"] == 24.0 and report["deadlines_missed"] == 0
    assert report["interactive_wait_p95_s"] == 305 and report["interactive_warm_wait_p95_s"] == 0.0  # none warm
    assert (tmp_path / "day.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the policy before: the instance stays for 15 low minutes (900 s): 0.25 h; without the optimum
    before = CliRunner().invoke(main, [*base, "--policy", "target-tracking", "--no-optimum"])
    assert before.exit_code == 0, before.output
    report = json.loads(before.output)
    assert (report["policy"], report["instance_hours"], report["wait_max_s"]) == ("target-tracking", 0.25, 305)
    assert report["optimum_instance_hours"] is None and report["optimum_same_wait_instance_hours"] is None


def test_the_command_s_text_names_the_two_optima(tmp_path: Path) -> None:
    from stratus.cli import main

    write_trace([Request(0.0, 100, 50)], tmp_path / "one.csv")
    result = CliRunner().invoke(
        main, ["simulate", "--trace", str(tmp_path / "one.csv"), "--idle-scale-in", "5", *TIMES]
    )
    assert result.exit_code == 0, result.output
    # both 5.075 minutes = 0.0846 h (see above), printed to two decimals
    assert (
        "clairvoyant optimum: 0.08 instance-h with every interactive request waiting at most 10 s, "
        "0.08 with waits up to this policy's longest\n"
    ) in result.output
    assert "no wait" not in result.output and "0.17 instance-h" in result.output  # the scheduler's 600 s


# ---- the scheduler ------------------------------------------------------------------------------
# A (100, 50) request takes 100/3356 + 50/335.6 = 600/3356 s of a whole instance: 3356/600 = 5.5933
# requests/s; its deferrable slots (3 of 4) do 4.195/s, so one line is 0.2384 s of held work.
# Start-up: 300 + 4.5 = 304.5 s.

SCHEDULER = Policy(startup_s=300, model_load_s=4.5, decode_tps=335.6, prefill_tps=3356, mode="scheduler")


def batch(arrival_s: float, deadline_s: float | None = None, lane: str = "batch") -> Request:
    return Request(arrival_s, 100, 50, lane, deadline_s)


def test_a_batch_line_at_zero_waits_for_its_slack_then_runs() -> None:
    report = compare([batch(0.0)], SCHEDULER)

    # deadline 86,400: slack at t = 86,400 − t − 304.5 − 0.2384 − 1,800 = 84,295.26 − t, first ≤ 0 at
    # the minute 84,300 (at 84,240 it is 55 s): one instance, in service at 84,604.5. The next run
    # (84,660) finds it up and releases the line, which starts at 84,661 and ends 0.7 s later, far
    # before its deadline. The last work went at 84,660: at 84,960 (300 s) to zero.
    # Billed 84,300..84,959: 660 s = 0.1833 h.
    assert report.lanes["batch"] == {"requests": 1, "wait_p50_s": 84661, "wait_p95_s": 84661, "wait_max_s": 84661}
    assert report.instance_hours == 0.1833 and report.cold_starts == 1 and report.peak_instances == 1
    assert report.deadlines_missed == 0 and report.policy == "scheduler"
    assert "interactive" not in report.lanes


def test_an_interactive_request_wakes_the_endpoint_and_the_held_lines_run_then() -> None:
    requests = [batch(0.0) for _ in range(10)] + [Request(3600.0, 100, 50)]

    report = compare(requests, SCHEDULER)

    # the 10 lines (2.4 s of work) are held from t=0. At 3,600 the interactive request asks for one
    # instance (in service 3,904.5; the request starts at 3,905: 305 s). At 3,960 it is up anyway:
    # min(10, ceil(1 × 4.195 × 120) = 504) = 10 lines go, one pack, started at 3,961. Zero at 4,260.
    # Billed 3,600..4,259: 660 s.
    assert report.lanes["interactive"]["wait_max_s"] == 305
    assert report.lanes["batch"] == {"requests": 10, "wait_p50_s": 3961, "wait_p95_s": 3961, "wait_max_s": 3961}
    assert report.instance_hours == 0.1833 and report.cold_starts == 1
    assert report.invocations == 2 and report.deadlines_missed == 0

    # target tracking runs each the moment it arrives: two cold starts, 2 × 900 s
    before = compare(requests, Policy(startup_s=300, model_load_s=4.5, decode_tps=335.6, prefill_tps=3356))
    assert before.instance_hours == 0.5 and before.cold_starts == 2
    assert before.lanes["batch"]["wait_max_s"] == 305


def test_interactive_requests_during_a_cold_start_are_served_by_the_one_instance() -> None:
    requests = [Request(60.0 * k, 100, 50) for k in range(10)] + [batch(0.0)]

    report = compare(requests, SCHEDULER)

    # one a minute, 0..540 s. At 0 one instance is asked for; the six requests of 0..300 never ask for a
    # second (one instance finishes 5.5933 × 30 = 167 within interactive_drain_s). At 305 the packs of
    # 0, 60, 120, 180 start (4 slots), those of 240 and 300 at 306, when the first ones end (0.715 s
    # each): waits 305, 245, 185, 125, 66, 6, then 0 for 360..540. The held line goes at 360 (started
    # 361). Last work 540: zero at 840. Billed 0..839 = 840 s = 0.2333 h.
    assert report.peak_instances == 1 and report.cold_starts == 1
    assert report.lanes["interactive"] == {"requests": 10, "wait_p50_s": 6, "wait_p95_s": 305, "wait_max_s": 305}
    assert report.lanes["batch"]["wait_max_s"] == 361
    assert report.instance_hours == 0.2333 and report.deadlines_missed == 0


def test_the_scheduler_counts_the_interactive_requests_running_not_the_packs() -> None:
    # (100, 500) requests: 100/3356 + 500/335.6 = 1.5197 s of a whole instance, 0.6580 requests/s: one
    # instance finishes 0.6580 × 30 = 19.74 within interactive_drain_s. A pack of 32 takes
    # 32 × 4 × 1.5197 = 194.5 s on one slot.
    requests = [Request(0.0, 100, 500)] + [Request(320.0, 100, 500) for _ in range(128)]

    report = compare(requests, SCHEDULER)

    # t=0: the first request asks for one instance (in service 304.5, the request starts at 305, ends
    # 311.1). At 320 the 128 arrive: 4 packs of 32, started at once on the 4 free slots, running until
    # 514.5. The run at 360 counts 128 running requests: ceil(128 / 19.74) = 7, capped at 2 (4 packs
    # would count ceil(4 / 19.74) = 1): a second instance, asked at 360 (in service at 664.5). The runs
    # at 420 and 480 still see the 128 (busy_at 480); at 540 none is left and one instance stays
    # (idle 60 s); at 780, 300 s after 480, both go. Billed 0..779 and 360..779: 780 + 420 = 1,200 s.
    timeline = {int(p["t"]): p["instances"] for p in report.timeline}  # instances before each run
    assert (timeline[360], timeline[420], timeline[780], timeline[840]) == (1, 2, 2, 0)
    assert report.peak_instances == 2 and report.cold_starts == 1
    assert report.instance_hours == 0.3333  # 1,200 s
    assert report.lanes["interactive"] == {"requests": 129, "wait_p50_s": 0, "wait_p95_s": 0, "wait_max_s": 305}
    assert report.invocations == 5


def test_a_deadline_shorter_than_a_cold_start_is_missed_and_counted() -> None:
    # a flex request due at 100 s: slack is negative at once, the instance is asked for at 0 but serves
    # from 304.5; released at 360, it ends at 361.7 > 100
    report = compare([batch(0.0, 100.0, "flex")], SCHEDULER)
    assert report.deadlines_missed == 1 and report.lanes["flex"]["wait_max_s"] == 361


def test_traces_keep_lanes_and_deadlines(tmp_path: Path) -> None:
    requests = [Request(1.5, 10, 5, "batch", 3600.25), Request(2.0, 20, 6, "flex"), Request(3.0, 1, 1)]
    write_trace(requests, tmp_path / "t.csv")
    assert read_trace(tmp_path / "t.csv") == requests
    assert [r.deadline for r in requests] == [3600.25, 3602.0, None]  # flex: arrival + 3,600 s

    (tmp_path / "old.csv").write_text("arrival_s,prompt_tokens,completion_tokens\n0.5,10,5\n", encoding="utf-8")
    assert read_trace(tmp_path / "old.csv") == [Request(0.5, 10, 5, "interactive", None)]
    (tmp_path / "bad.csv").write_text(
        "arrival_s,prompt_tokens,completion_tokens,lane\n0,1,1,urgent\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match="unknown lane 'urgent'"):
        read_trace(tmp_path / "bad.csv")


def test_the_mixed_and_batches_days_have_their_shapes() -> None:
    mixed = generate("mixed", seed=7)
    assert generate("mixed", seed=7) == mixed
    interactive = [r for r in mixed if r.lane == "interactive"]
    lines = [r for r in mixed if r.lane == "batch"]
    assert len(mixed) == len(interactive) + len(lines)  # no other lane
    # a Poisson count of mean 2,000 over 09:00-18:00; seed 7 draws 2,035; nothing outside office hours
    assert len(interactive) == 2035
    opening, closing = OFFICE_HOURS
    assert (opening, closing) == (9 * 3600, 18 * 3600)
    assert all(opening <= r.arrival_s < closing for r in interactive)
    # 20 batches of 500 lines, each submitted at once, due 24 h later
    by_arrival: dict[float, int] = {}
    for r in lines:
        by_arrival[r.arrival_s] = by_arrival.get(r.arrival_s, 0) + 1
    assert len(lines) == 10_000 and sorted(by_arrival.values()) == [500] * 20
    assert all(r.deadline == r.arrival_s + DAY_S and 0 <= r.arrival_s < DAY_S for r in lines)
    # `batches` is the same 20 batches alone, in arrival order
    alone = generate("batches", seed=7)
    assert alone == lines and [r.arrival_s for r in alone] == sorted(r.arrival_s for r in alone)
    assert {len([r for r in generate("mixed", seed=s) if r.lane == "interactive"]) for s in (1, 2)} == {1969, 1962}


def test_the_all_in_bill_adds_each_lanes_serverless_cost_and_a_thirtieth_of_the_idle_month(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import stratus.simulate as sim

    monkeypatch.setattr(sim, "SERVERLESS_USD_PER_MILLION_REQUESTS", {"interactive": 20.0, "flex": 16.0, "batch": 4.0})
    monkeypatch.setattr(sim, "IDLE_USD_PER_MONTH", 6.0)
    requests = [Request(10.0, 100, 50), Request(20.0, 100, 50, lane="flex"), Request(30.0, 1000, 750, lane="batch")]
    report = compare(requests, POLICY)

    # serverless: (20 + 16 + 4) per million requests for these three: $0.00004
    assert report.serverless_cost_usd == 0.00004
    days = report.horizon_s / DAY_S
    assert report.idle_share_usd == round(6.0 / 30 * days, 6)
    assert report.all_in_cost_usd == round(report.cost_usd + 0.00004 + report.idle_share_usd, 2)
    assert report.tokens == 2050
    assert report.all_in_usd_per_million_tokens == round(report.all_in_cost_usd / 2050 * 1e6, 4)
    # the always-on endpoint carries a thirtieth of the gateway's $213.59 month per day
    assert report.always_on_with_gateway_cost_usd == round(report.always_on_cost_usd + 213.59 / 30 * days, 2)
