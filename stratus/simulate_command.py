"""`stratus simulate`: cost and elasticity of the scaling policy on a day of requests."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("simulate")
@click.option(
    "--trace",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="CSV: arrival_s,prompt_tokens,completion_tokens.",
)
@click.option(
    "--generate", "kind", type=click.Choice(["steady", "diurnal", "bursty"]), help="A generated day instead of --trace."
)
@click.option("--requests-per-day", default=5000, show_default=True)
@click.option("--seed", default=7, show_default=True)
@click.option("--save-trace", type=click.Path(path_type=Path, dir_okay=False), help="Write the generated trace here.")
@click.option("--target-backlog", type=float, help="TargetBacklogPerInstance (default: template.yaml).")
@click.option("--max-instances", type=int, help="MaxInstanceCount (default: template.yaml).")
@click.option("--scale-in-cooldown", type=int, help="ScaleInCooldownSeconds (default: template.yaml).")
@click.option("--scale-out-cooldown", type=int, help="ScaleOutCooldownSeconds (default: template.yaml).")
@click.option("--slots", type=int, help="MaxConcurrentInvocationsPerInstance (default: template.yaml).")
@click.option("--price", type=float, help="USD per instance-hour (default: template.yaml's InstanceHourlyPriceUsd).")
@click.option(
    "--startup",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds from scale-out to a running container (assumed; measure yours).",
)
@click.option(
    "--model-load",
    type=float,
    default=4.5,
    show_default=True,
    help="Seconds to /ping 200 (bench/RESULTS.md cold start).",
)
@click.option(
    "--decode-tps",
    type=float,
    default=335.6,
    show_default=True,
    help="Completion tokens/s of one instance, all slots busy (bench/RESULTS.md).",
)
@click.option("--prefill-tps", type=float, default=3356.0, show_default=True, help="Prompt tokens/s of one instance.")
@click.option("--always-on", default=1, show_default=True, help="Instances of the always-on endpoint compared against.")
@click.option(
    "--plot", type=click.Path(path_type=Path, dir_okay=False), help="PNG of backlog and instances over the day."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def simulate_command(
    trace: Path | None,
    kind: str | None,
    requests_per_day: int,
    seed: int,
    save_trace: Path | None,
    target_backlog: float | None,
    max_instances: int | None,
    scale_in_cooldown: int | None,
    scale_out_cooldown: int | None,
    slots: int | None,
    price: float | None,
    startup: float,
    model_load: float,
    decode_tps: float,
    prefill_tps: float,
    always_on: int,
    plot: Path | None,
    as_json: bool,
) -> None:
    """Replay a day of requests against template.yaml's scaling policy: instance-hours, cost,
    waits (cold starts included), against an always-on endpoint and the pure busy time."""
    from stratus import simulate as sim

    if (trace is None) == (kind is None):
        raise click.UsageError("give --trace FILE or --generate steady|diurnal|bursty")
    requests = sim.read_trace(trace) if trace else sim.generate(kind or "", requests_per_day, seed)
    if save_trace:
        sim.write_trace(requests, save_trace)
    policy = sim.policy_from_template(
        target_backlog_per_instance=target_backlog,
        max_instances=max_instances,
        scale_in_cooldown_s=scale_in_cooldown,
        scale_out_cooldown_s=scale_out_cooldown,
        slots=slots,
        hourly_price_usd=price,
        startup_s=startup,
        model_load_s=model_load,
        decode_tps=decode_tps,
        prefill_tps=prefill_tps,
    )
    report = sim.compare(requests, policy, always_on)
    if plot:
        sim.plot(report, plot, str(trace.name if trace else kind))
    if as_json:
        click.echo(json.dumps(report.summary(), indent=2))
        return
    s = report.summary()
    click.echo(
        f"{s['requests']} requests in {s['invocations']} invocations\n"
        f"autoscaled:  {s['instance_hours']:.2f} instance-h  ${s['cost_usd']:.2f}  "
        f"wait p50 {s['wait_p50_s']:.0f} s  p95 {s['wait_p95_s']:.0f} s  max {s['wait_max_s']:.0f} s  "
        f"cold starts {s['cold_starts']}  peak {s['peak_instances']} instances\n"
        f"always-on ({s['always_on_instances']}): {s['always_on_instance_hours']:.2f} instance-h  "
        f"${s['always_on_cost_usd']:.2f}  wait p95 {s['always_on_wait_p95_s']:.0f} s\n"
        f"busy time (lower bound): {s['busy_instance_hours']:.2f} instance-h  ${s['busy_cost_usd']:.2f}"
    )
