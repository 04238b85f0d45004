"""`stratus simulate` on small traces whose answers are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratus.simulate import DAY_S, Policy, Request, compare, generate, pack_requests, read_trace, write_trace

# 50 completion tokens at 335.6 tok/s shared by 4 slots: 0.596 s; 100 prompt tokens: 0.119 s
POLICY = Policy(startup_s=300, model_load_s=4.5, decode_tps=335.6, prefill_tps=3356, hourly_price_usd=1.408)


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
    result = CliRunner().invoke(
        main, ["simulate", "--trace", str(tmp_path / "one.csv"), "--plot", str(tmp_path / "day.png"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["cold_starts"] == 1 and report["wait_max_s"] == 305 and report["instance_hours"] == 0.25
    assert (tmp_path / "day.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
