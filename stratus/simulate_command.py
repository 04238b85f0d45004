"""`stratus simulate`: cost and elasticity of the scaling policy on a day of requests."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stratus.simulate import DECODE_TPS, MODEL_LOAD_S


@click.command("simulate")
@click.option(
    "--trace",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="CSV: arrival_s,prompt_tokens,completion_tokens.",
)
@click.option(
    "--generate",
    "kind",
    type=click.Choice(["steady", "diurnal", "bursty", "mixed", "batches"]),
    help="A generated day instead of --trace.",
)
@click.option(
    "--policy",
    "mode",
    type=click.Choice(["scheduler", "target-tracking"]),
    help="Scaling policy (default: template.yaml's Scaling).",
)
@click.option("--idle-scale-in", type=float, help="IdleScaleInMinutes (default: template.yaml).")
@click.option("--warm-window", type=float, help="WarmWindowMinutes (default: template.yaml).")
@click.option(
    "--throughput-estimate",
    type=float,
    default=1.0,
    show_default=True,
    help="The scheduler's throughput estimate over the instance's real one (2: the instance is half as fast).",
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
    default=MODEL_LOAD_S,
    show_default=True,
    help="Seconds from the container's start to /ping 200: vLLM compiled, as the template runs it (bench/RESULTS.md).",
)
@click.option(
    "--decode-tps",
    type=float,
    default=DECODE_TPS,
    show_default=True,
    help="Completion tokens/s of one instance, all slots busy: vLLM compiled, 64 requests (bench/RESULTS.md).",
)
@click.option("--prefill-tps", type=float, default=3356.0, show_default=True, help="Prompt tokens/s of one instance.")
@click.option("--always-on", default=1, show_default=True, help="Instances of the always-on endpoint compared against.")
@click.option(
    "--plot", type=click.Path(path_type=Path, dir_okay=False), help="PNG of backlog and instances over the day."
)
@click.option(
    "--optimum/--no-optimum",
    default=True,
    show_default=True,
    help="Also compute the clairvoyant optimum (dynamic programming over minutes; seconds per day).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def simulate_command(
    trace: Path | None,
    kind: str | None,
    requests_per_day: int,
    seed: int,
    mode: str | None,
    idle_scale_in: float | None,
    warm_window: float | None,
    throughput_estimate: float,
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
    optimum: bool,
    as_json: bool,
) -> None:
    """Replay a day of requests against template.yaml's scaling policy: instance-hours, cost,
    waits per lane (cold starts included), deadlines missed, against an always-on endpoint, the
    pure busy time and the clairvoyant optimum."""
    from stratus import simulate as sim

    if (trace is None) == (kind is None):
        raise click.UsageError("give --trace FILE or --generate steady|diurnal|bursty|mixed|batches")
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
        mode=mode,
        idle_scale_in_s=None if idle_scale_in is None else idle_scale_in * 60,
        warm_window_s=None if warm_window is None else warm_window * 60,
        throughput_estimate=throughput_estimate,
    )
    report = sim.compare(requests, policy, always_on, optimum=optimum)
    if plot:
        sim.plot(report, plot, str(trace.name if trace else kind))
    if as_json:
        click.echo(json.dumps(report.summary(), indent=2))
        return
    s = report.summary()
    lanes = "".join(
        f"  {lane}: {v['requests']:.0f} requests, wait p50 {v['wait_p50_s']:.0f} s  p95 {v['wait_p95_s']:.0f} s  "
        f"max {v['wait_max_s']:.0f} s\n"
        for lane, v in s["lanes"].items()
    )
    bound = (
        f"clairvoyant optimum: {s['optimum_instance_hours']:.2f} instance-h with every interactive request "
        f"waiting at most {policy.interactive_target_s:.0f} s, {s['optimum_same_wait_instance_hours']:.2f} with "
        "waits up to this policy's longest\n"
        if s["optimum_instance_hours"] is not None and s["optimum_same_wait_instance_hours"] is not None
        else ("clairvoyant optimum: none, no schedule meets these deadlines\n" if optimum else "")
    )
    click.echo(
        f"{s['requests']} requests in {s['invocations']} invocations\n"
        f"{s['policy']}:  {s['instance_hours']:.2f} instance-h  ${s['cost_usd']:.2f}  "
        f"wait p50 {s['wait_p50_s']:.0f} s  p95 {s['wait_p95_s']:.0f} s  max {s['wait_max_s']:.0f} s  "
        f"cold starts {s['cold_starts']}  peak {s['peak_instances']} instances  "
        f"deadlines missed {s['deadlines_missed']}\n"
        f"{lanes}"
        f"  interactive p95 while warm: {s['interactive_warm_wait_p95_s']:.1f} s\n"
        f"{bound}"
        f"always-on ({s['always_on_instances']}): {s['always_on_instance_hours']:.2f} instance-h  "
        f"${s['always_on_cost_usd']:.2f}  wait p95 {s['always_on_wait_p95_s']:.0f} s\n"
        f"busy time (lower bound): {s['busy_instance_hours']:.2f} instance-h  ${s['busy_cost_usd']:.2f}\n"
        f"all in: ${s['all_in_cost_usd']:.2f} (GPU ${s['cost_usd']:.2f}, serverless ${s['serverless_cost_usd']:.2f}, "
        f"idle share ${s['idle_share_usd']:.2f}) for {s['tokens']:,} tokens: "
        f"${s['all_in_usd_per_million_tokens'] or 0:.2f} per million tokens\n"
        f"always-on with a gateway (LiteLLM on ECS + RDS, $213.59 a month): "
        f"${s['always_on_with_gateway_cost_usd']:.2f}: "
        f"${s['always_on_with_gateway_usd_per_million_tokens'] or 0:.2f} per million tokens"
    )
