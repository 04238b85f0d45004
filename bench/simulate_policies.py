"""The deadline-aware scheduler against target tracking on simulated days, beside the clairvoyant optimum.

    .venv/bin/python bench/simulate_policies.py [--plots docs/simulate] [--no-plots] [--json]

For the days steady, diurnal, bursty (5,000 requests, seed 7), mixed and batches (seed 7), runs
template.yaml's TargetTracking parameters (`policy_from_template(mode="target-tracking")`) and its
scheduler (`policy_from_template()`), each with `compare(..., optimum=True)`, and prints a markdown
table. Then sweeps IdleScaleInMinutes (1, 2, 3, 4, 5, 6, 10, 20, 30) for the scheduler on mixed,
diurnal and bursty, and checks the sweep's neighbours (2, 3, 4, 5, 6, 10) on bursty days of other
seeds and on lighter diurnal days (simulation only, no optimum). Writes `<plots>/<kind>-target-tracking.png` and
`<plots>/<kind>-scheduler.png` (the day: backlog and instances) and `<plots>/tradeoff-<kind>.png`
(instance-hours against interactive p95, one point per sweep value and one for target tracking, the
optimum at the 10 s target dashed).
With `--json`, prints the numbers as JSON instead of the tables.

Two optima (`compare(..., optimum=True)`, stratus/optimum.py; both charge every start its whole
start-up): "× optimum at 10 s" divides by the optimum with every interactive request waiting at most
the issue's 10 s target (`optimum_instance_hours`), "× strict bound" by the optimum allowed the
policy's own longest interactive wait (`optimum_same_wait_instance_hours`), which no policy whose
interactive requests wait no longer can beat. In the sweep the optima are computed once per day and
per patience (the optimum depends on an allowed wait only through ceil(wait / 60) minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from stratus.optimum import optimum_instance_hours
from stratus.simulate import (
    Policy,
    Report,
    Request,
    compare,
    generate,
    plot,
    policy_from_template,
    simulate,
)

REPO = Path(__file__).resolve().parent.parent
KINDS = ("steady", "diurnal", "bursty", "mixed", "batches")
SWEEP_KINDS = ("mixed", "diurnal", "bursty")
REQUESTS_PER_DAY = 5000
SEED = 7
IDLE_MINUTES = (1, 2, 3, 4, 5, 6, 10, 20, 30)
ROBUSTNESS_MINUTES = (2, 3, 4, 5, 6, 10)
ROBUSTNESS_DAYS = (
    *(("bursty", REQUESTS_PER_DAY, seed) for seed in (1, 2, 3, 4, 5)),
    ("diurnal", 2000, SEED),
    ("diurnal", 1000, SEED),
)


def dash(value: float | None, form: str = "{:.2f}") -> str:
    return "—" if value is None else form.format(value)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def row(kind: str, report: Report) -> dict[str, Any]:
    batch = report.lanes.get("batch", {})
    return {
        "kind": kind,
        "policy": report.policy,
        "idle_scale_in_s": None,
        "requests": report.requests,
        "instance_hours": report.instance_hours,
        "optimum_instance_hours": report.optimum_instance_hours,
        "optimum_same_wait_instance_hours": report.optimum_same_wait_instance_hours,
        "times_optimum": ratio(report.instance_hours, report.optimum_instance_hours),
        "times_strict_bound": ratio(report.instance_hours, report.optimum_same_wait_instance_hours),
        "always_on_instance_hours": report.always_on_instance_hours,
        "always_on_over_policy": ratio(report.always_on_instance_hours, report.instance_hours),
        "interactive_wait_p95_s": report.interactive_wait_p95_s if "interactive" in report.lanes else None,
        "interactive_warm_wait_p95_s": report.interactive_warm_wait_p95_s if "interactive" in report.lanes else None,
        "interactive_wait_max_s": report.lanes.get("interactive", {}).get("wait_max_s"),
        "batch_wait_p95_s": batch.get("wait_p95_s"),
        "batch_wait_max_s": batch.get("wait_max_s"),
        "deadlines_missed": report.deadlines_missed,
        "cold_starts": report.cold_starts,
        "peak_instances": report.peak_instances,
    }


def interactive_cell(r: dict[str, Any]) -> str:
    if r["interactive_wait_p95_s"] is None:
        return "—"
    return f"{r['interactive_wait_p95_s']:.1f} s / {r['interactive_warm_wait_p95_s']:.1f} s"


def times(r: dict[str, Any], key: str, hours: str) -> str:
    return f"{dash(r[key], '{:.2f}×')} ({dash(r[hours])} h)"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| day | policy | instance-h | × optimum at 10 s (its h) | × strict bound (its h) | always-on ÷ policy "
        "| interactive p95 all / warm | interactive max wait | batch p95 wait | deadlines missed "
        "| cold starts | peak instances |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        batch = "—" if r["batch_wait_p95_s"] is None else f"{r['batch_wait_p95_s'] / 3600:.1f} h"
        longest = "—" if r["interactive_wait_max_s"] is None else f"{r['interactive_wait_max_s']:.0f} s"
        lines.append(
            f"| {r['kind']} ({r['requests']:,}) | {r['policy']} | {r['instance_hours']:.2f} "
            f"| {times(r, 'times_optimum', 'optimum_instance_hours')} "
            f"| {times(r, 'times_strict_bound', 'optimum_same_wait_instance_hours')} "
            f"| {dash(r['always_on_over_policy'], '{:.1f}×')} ({r['always_on_instance_hours']:.1f} h) "
            f"| {interactive_cell(r)} | {longest} | {batch} | {r['deadlines_missed']} | {r['cold_starts']} "
            f"| {r['peak_instances']} |"
        )
    return "\n".join(lines)


def sweep_table(rows: list[dict[str, Any]], target_tracking: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| day | IdleScaleInMinutes | instance-h | × optimum at 10 s | × strict bound (its h) "
        "| interactive p95 all / warm | interactive max wait | cold starts | peak | deadlines missed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in SWEEP_KINDS:
        for r in [r for r in rows if r["kind"] == kind] + [target_tracking[kind]]:
            minutes = "target tracking" if r["idle_scale_in_s"] is None else f"{r['idle_scale_in_s'] / 60:.0f}"
            lines.append(
                f"| {kind} | {minutes} | {r['instance_hours']:.2f} | {dash(r['times_optimum'], '{:.2f}×')} "
                f"| {times(r, 'times_strict_bound', 'optimum_same_wait_instance_hours')} "
                f"| {interactive_cell(r)} | {r['interactive_wait_max_s']:.0f} s | {r['cold_starts']} "
                f"| {r['peak_instances']} | {r['deadlines_missed']} |"
            )
    return "\n".join(lines)


def robustness_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| day | requests/day | seed | "
        + " | ".join(f"{m} min: instance-h / p95 / cold starts" for m in ROBUSTNESS_MINUTES)
        + " | target tracking |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in ROBUSTNESS_MINUTES) + " | ---: |",
    ]
    for r in rows:
        cells = [
            f"{c['instance_hours']:.2f} / {c['interactive_wait_p95_s']:.0f} s / {c['cold_starts']}" for c in r["cells"]
        ]
        lines.append(f"| {r['kind']} | {r['requests_per_day']:,} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_tradeoff(points: list[tuple[str, Report]], path: Path, title: str, target_s: float) -> None:
    """Instance-hours against interactive p95 wait, one point per policy setting, with the optimum at
    the interactive wait target (every interactive request waiting at most `target_s`) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, report in points:
        axis.scatter(report.interactive_wait_p95_s, report.instance_hours, color="tab:blue")
        axis.annotate(label, (report.interactive_wait_p95_s, report.instance_hours), fontsize=8)
    optimum = next((r.optimum_instance_hours for _, r in points if r.optimum_instance_hours is not None), None)
    if optimum is not None:
        axis.axhline(
            optimum,
            color="tab:green",
            linestyle="--",
            label=f"clairvoyant optimum, every interactive request waiting ≤ {target_s:.0f} s: {optimum:.2f} h",
        )
    axis.axvline(target_s, color="tab:gray", linestyle=":", label=f"interactive p95 target {target_s:.0f} s")
    axis.legend(fontsize=8)
    axis.set_xlabel("interactive p95 wait (s)")
    axis.set_ylabel("instance-hours")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def day(kind: str) -> list[Request]:
    return generate(kind, REQUESTS_PER_DAY, SEED)


def with_optimum(
    report: Report, kind: str, requests: list[Request], policy: Policy, cache: dict[tuple[str, int], float]
) -> Report:
    """`report` with what `compare(..., optimum=True)` sets, each optimum computed once per day and per
    patience: the optimum reads an allowed wait only as ceil(wait / 60) minutes (stratus/optimum.py)."""

    def hours(wait_s: float) -> float:
        key = (kind, math.ceil(wait_s / 60))
        if key not in cache:
            cache[key] = round(optimum_instance_hours(requests, policy, wait_s), 4)
        return cache[key]

    report.optimum_instance_hours = hours(policy.interactive_target_s)
    report.optimum_same_wait_instance_hours = hours(report.lanes.get("interactive", {}).get("wait_max_s", 0.0))
    return report


def remember(cache: dict[tuple[str, int], float], kind: str, wait_s: float, hours: float | None) -> None:
    """Keep an optimum `compare` computed for the sweep (and check that one patience gives one optimum)."""
    assert hours is not None
    key = (kind, math.ceil(wait_s / 60))
    if cache.setdefault(key, hours) != hours:
        raise RuntimeError(f"two optima for {key}: {cache[key]} and {hours}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plots", type=Path, default=REPO / "docs" / "simulate", help="where the PNGs go")
    parser.add_argument("--no-plots", action="store_true", help="write no PNG")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of markdown")
    args = parser.parse_args()
    if not args.no_plots:
        args.plots.mkdir(parents=True, exist_ok=True)

    before: Policy = policy_from_template(mode="target-tracking")
    after: Policy = policy_from_template()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    reports: dict[tuple[str, str], Report] = {}
    cache: dict[tuple[str, int], float] = {}
    for kind in KINDS:
        requests = day(kind)
        for policy in (before, after):
            report = compare(requests, policy, optimum=True)
            remember(cache, kind, policy.interactive_target_s, report.optimum_instance_hours)
            longest = report.lanes.get("interactive", {}).get("wait_max_s", 0.0)
            remember(cache, kind, longest, report.optimum_same_wait_instance_hours)
            reports[kind, policy.mode] = report
            rows.append(row(kind, report) | {"idle_scale_in_s": policy.idle_scale_in_s if policy is after else None})
            if not args.no_plots:
                plot(report, args.plots / f"{kind}-{policy.mode}.png", kind)

    sweep: list[dict[str, Any]] = []
    target_tracking: dict[str, dict[str, Any]] = {}
    for kind in SWEEP_KINDS:
        requests = day(kind)
        points: list[tuple[str, Report]] = []
        for minutes in IDLE_MINUTES:
            policy = replace(after, idle_scale_in_s=60.0 * minutes)
            report = (
                reports[kind, after.mode]
                if policy.idle_scale_in_s == after.idle_scale_in_s
                else with_optimum(compare(requests, policy), kind, requests, policy, cache)
            )
            sweep.append(row(kind, report) | {"idle_scale_in_s": policy.idle_scale_in_s})
            points.append((f"idle {minutes} min", report))
        tracked = reports[kind, before.mode]
        target_tracking[kind] = row(kind, tracked)
        points.append(("target tracking", tracked))
        if not args.no_plots:
            plot_tradeoff(
                points,
                args.plots / f"tradeoff-{kind}.png",
                f"{kind}: the scheduler's IdleScaleInMinutes, seed {SEED}",
                after.interactive_target_s,
            )

    robustness: list[dict[str, Any]] = []  # the sweep's neighbours on other seeds and lighter days (no optimum)
    for kind, per_day, seed in ROBUSTNESS_DAYS:
        requests = generate(kind, per_day, seed)
        cells = []
        for policy in [replace(after, idle_scale_in_s=60.0 * m) for m in ROBUSTNESS_MINUTES] + [before]:
            report = simulate(requests, policy)
            cells.append(
                {
                    "policy": policy.mode,
                    "idle_scale_in_s": policy.idle_scale_in_s if policy is not before else None,
                    "instance_hours": report.instance_hours,
                    "interactive_wait_p95_s": report.interactive_wait_p95_s,
                    "cold_starts": report.cold_starts,
                }
            )
        robustness.append({"kind": kind, "requests_per_day": per_day, "seed": seed, "cells": cells})
    elapsed = time.perf_counter() - started

    if args.json:
        numbers = {"policies": rows, "idle_scale_in_sweep": sweep, "robustness": robustness}
        print(json.dumps(numbers | {"seconds": round(elapsed, 1)}, indent=2))
        return
    print(
        f"template defaults: IdleScaleInMinutes {after.idle_scale_in_s / 60:.0f}, "
        f"WarmWindowMinutes {after.warm_window_s / 60:.0f}, DeadlineMarginMinutes {after.deadline_margin_s / 60:.0f}, "
        f"TargetBacklogPerInstance {before.target_backlog_per_instance:.0f}, MaxInstanceCount {after.max_instances}, "
        f"interactive wait target {after.interactive_target_s:.0f} s"
    )
    print()
    print(table(rows))
    print()
    print(sweep_table(sweep, target_tracking))
    print()
    print(robustness_table(robustness))
    print()
    print(f"{elapsed:.0f} s")


if __name__ == "__main__":
    main()
