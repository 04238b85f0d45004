"""Warm windows: the scheduler before and after issue 28, on every generated day and one of our own.

    .venv/bin/python bench/warm_windows.py [--before f75631c] [--json]

Runs, in one process, the simulator (`stratus.simulate.compare(..., optimum=True)`) with the
template's scheduler as it is now ("after") and with `stratus_core/scheduling.py` as it was at
`--before` ("before", loaded from git and put in place of today's `decide`). Days: the generator's
steady, diurnal, bursty (5,000 requests), mixed and batches (seed 7), and "evening batches", a day
the generator does not make: 14 batches of 100 to 2,000 lines, most submitted between 17:00 and
23:00, three in the morning (seed 11). Then the margin's price: the batch days again with the
instance at half the throughput the scheduler was told (`throughput_estimate=2`), with the planning
factor at 2 (today's) and at 1 (none).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from stratus import simulate as sim

REPO = Path(__file__).resolve().parent.parent
DAYS = ("steady", "diurnal", "bursty", "mixed", "batches")


def evening_batches(seed: int = 11) -> list[sim.Request]:
    rng = random.Random(seed)
    requests: list[sim.Request] = []
    starts = [rng.uniform(17 * 3600, 23 * 3600) for _ in range(11)] + [
        rng.uniform(6 * 3600, 10 * 3600) for _ in range(3)
    ]
    for start in starts:
        lines = rng.randint(100, 2000)
        requests += [sim.Request(start, *sim._sizes(rng), lane="batch") for _ in range(lines)]
    return sorted(requests, key=lambda r: r.arrival_s)


def day(kind: str) -> list[sim.Request]:
    return evening_batches() if kind == "evening batches" else sim.generate(kind, 5000, 7)


@dataclass(frozen=True)
class _OldDecision:
    """The old `Decision`, with the field today's simulator reads (the old policy never filled every slot)."""

    inner: Any

    def __getattr__(self, name: str) -> Any:
        return False if name == "every_slot" else getattr(self.inner, name)


def load_before(revision: str) -> Any:
    source = subprocess.run(
        ["git", "show", f"{revision}:functions/stratus_core/scheduling.py"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "scheduling_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("scheduling_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scheduling_before"] = module
    spec.loader.exec_module(module)
    return module


def run(kind: str, requests: list[sim.Request], policy: sim.Policy, before: Any | None) -> dict[str, Any]:
    saved = (sim.decide, sim.SchedulerConfig, sim.SchedulerState)
    if before is not None:
        sim.decide = lambda o, c, s: _OldDecision(before.decide(o, c, s))  # type: ignore[assignment]
        known = {f.name for f in fields(before.SchedulerConfig)}  # the old config lacks today's new fields

        def old_config(**values: Any) -> Any:
            return before.SchedulerConfig(**{k: v for k, v in values.items() if k in known})

        sim.SchedulerConfig, sim.SchedulerState = old_config, before.SchedulerState  # type: ignore[assignment, misc]
    try:
        report = sim.compare(requests, policy, optimum=True)
    finally:
        sim.decide, sim.SchedulerConfig, sim.SchedulerState = saved  # type: ignore[misc]
    return {
        "day": kind,
        "policy": "before" if before is not None else "after",
        "instance_hours": report.instance_hours,
        "optimum_instance_hours": report.optimum_instance_hours,
        "times_optimum": report.instance_hours / report.optimum_instance_hours
        if report.optimum_instance_hours
        else None,
        "cold_starts": report.cold_starts,
        "deadlines_missed": report.deadlines_missed,
        "interactive_warm_wait_p95_s": report.interactive_warm_wait_p95_s if "interactive" in report.lanes else None,
        "batch_wait_p95_h": report.lanes["batch"]["wait_p95_s"] / 3600 if "batch" in report.lanes else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="f75631c", help="the commit whose scheduling.py is 'before'")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    before = load_before(args.before)
    policy = sim.policy_from_template()
    rows = []
    for kind in (*DAYS, "evening batches"):
        requests = day(kind)
        rows += [run(kind, requests, policy, before), run(kind, requests, policy, None)]
    slow = replace(policy, throughput_estimate=2.0)
    margin_rows = []
    for kind in ("batches", "evening batches"):
        requests = day(kind)
        for safety in (2.0, 1.0):
            row = run(kind, requests, replace(slow, throughput_safety=safety), None)
            margin_rows.append({**row, "policy": f"after, real throughput 0.5x the estimate, planned at {safety:.0f}x"})
    if args.json:
        print(json.dumps({"days": rows, "margin": margin_rows}, indent=2))
        return

    def cell(value: float | None, form: str) -> str:
        return "—" if value is None else form.format(value)

    print(
        "| day | policy | instance-h | optimum h | × optimum | cold starts | deadlines missed "
        "| interactive p95 warm | batch p95 wait |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows + margin_rows:
        print(
            f"| {r['day']} | {r['policy']} | {r['instance_hours']:.2f} | {r['optimum_instance_hours']:.2f} "
            f"| {cell(r['times_optimum'], '{:.2f}×')} | {r['cold_starts']} | {r['deadlines_missed']} "
            f"| {cell(r['interactive_warm_wait_p95_s'], '{:.1f} s')} | {cell(r['batch_wait_p95_h'], '{:.1f} h')} |"
        )


if __name__ == "__main__":
    main()
