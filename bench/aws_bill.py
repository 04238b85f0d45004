"""The whole AWS bill of one request, per kind of request and per service, on the local cloud.

Runs `stratus local up`'s cloud in this process with the instant echo engine (so the serverless path
is measured, not a model), meters every AWS call of every function (`bench/metering.py`), and sends
N requests of each kind:

- **interactive**: chat completions with the official openai client and the default wait;
- **async**: `Prefer: respond-async`, then `GET /v1/jobs/{id}` once a second until it is done;
- **batch**: one JSONL file of N lines through `/v1/files` and `/v1/batches` (the client polls the
  batch every 5 s, then downloads the output);
- **submission**: a trusted producer's SQS message with N inline requests (the tenant polls and
  downloads as above);
- **console** (only when asked: `--kinds console`): page views of the web console in Debian's
  Chromium, driven by Playwright. Each session is a new browser (nothing cached) that signs in and
  opens every view of its role once: the operator's five, then a tenant's four. A "request" is one
  view; the sign-in's own calls are counted in the first.

Each kind is measured from its first request until every job it made is finished and the functions
are quiet; the steady cost of schedules and pollers is left out of it and reported as the idle month.
Prices: `PRICES` (us-east-1 list prices, on-demand, arm64 Lambda). Writes `bench/out/aws_bill.json`
and prints the tables `bench/RESULTS.md` carries.

    .venv/bin/python bench/aws_bill.py [--requests 60] [--batch-lines 100] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "functions"))  # this checkout's functions, before the venv's .pth

from load import call  # noqa: E402
from metering import IDLE, PRICES, PRICES_AS_OF, Meter, Units, emf_metrics  # noqa: E402

MODEL = "smollm2-135m-instruct"
PLATFORM_LOG_BYTES = 400
"""Lambda's own lines per invocation (START, END, REPORT with the X-Ray ids), from their documented
formats: e.g. `REPORT RequestId: 3604209a-… Duration: 2.34 ms Billed Duration: 3 ms Memory Size: 512 MB
Max Memory Used: 81 MB XRAY TraceId: 1-… SegmentId: … Sampled: true` is about 250 bytes."""
IDLE_POLLERS_PER_MAPPING = 5
"""Lambda polls an SQS queue with five long-polling (20 s) connections when it is idle (Lambda's
"Using Lambda with Amazon SQS" guide: processing starts with five batches at a time)."""
SCHEDULED_FUNCTIONS = ("SchedulerFunction", "SweeperFunction", "RequestFailuresFunction", "BillingFunction")
"""Functions on a schedule (the dead-letter queues are drained by one): their steady cost is the idle
month's, not any kind's."""
MINUTES_PER_MONTH = 30 * 24 * 60


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=60, help="interactive and async requests")
    parser.add_argument("--batch-lines", type=int, default=100, help="lines per batch and per submission")
    parser.add_argument("--concurrency", type=int, default=4, help="interactive and async clients at once")
    parser.add_argument("--idle-seconds", type=float, default=40, help="how long to watch the schedules alone")
    parser.add_argument("--kinds", default="interactive,async,batch,submission", help="which kinds ('none': idle only)")
    parser.add_argument("--console-sessions", type=int, default=4, help="console sessions per role (kind console)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "aws_bill.json")
    parser.add_argument("--label", default="", help="a name for this run in the output")
    args = parser.parse_args()

    os.environ.update(
        {
            "STRATUS_ENGINE": "echo",
            "HF_HUB_OFFLINE": "1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    meter = Meter()
    meter.install()
    work = Path(tempfile.mkdtemp(prefix="aws-bill-"))
    artifact = tiny_artifact(work)

    from stratus.localcloud.cloud import LocalCloud, LocalCloudConfig
    from stratus.localcloud.endpoint import free_port
    from stratus.template import load_template

    template = load_template()
    config = LocalCloudConfig(
        model_dir=artifact,
        port=free_port(),
        idle_seconds=3600,  # the endpoint stays up across the kinds: a cold start is not the path
        sweep_seconds=10,
        scheduler_seconds=5,
        function_log_level=None,
        engine="echo",
    )
    cloud = LocalCloud(config).start()
    from stratus.localcloud.gateway import LocalContext

    try:
        tenant_key = setup_tenant(cloud.url, cloud.admin_key)
        wait_quiet(meter)
        # The idle month first: the endpoint at zero, nothing queued or held, only the schedules.
        idle_before, emf_before = meter.snapshot(), len(meter.emf)
        time.sleep(args.idle_seconds)
        idle_after, idle_emf = meter.snapshot(), meter.emf[emf_before:]
        billing_before, emf_before = meter.snapshot(), len(meter.emf)
        billing = meter.timed("BillingFunction", billing_handler(template))
        billing({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, LocalContext("billing"))
        billing_after, billing_emf = meter.snapshot(), meter.emf[emf_before:]
        spent_idle = {name: idle_after[name].minus(idle_before.get(name, Units())) for name in idle_after}
        spent_idle["BillingFunction"] = billing_after["BillingFunction"].minus(
            billing_before.get("BillingFunction", Units())
        )
        idle = idle_month(spent_idle, template, emf_metrics(idle_emf), emf_metrics(billing_emf))
        print_idle(idle)

        results: dict[str, Any] = {}
        kinds = [
            ("interactive", args.requests, lambda: run_interactive(cloud.url, tenant_key, args)),
            ("async", args.requests, lambda: run_async(cloud.url, tenant_key, args)),
            ("batch", args.batch_lines, lambda: run_batch(cloud.url, tenant_key, args.batch_lines)),
            ("submission", args.batch_lines, lambda: run_submission(cloud.url, tenant_key, args.batch_lines, meter)),
            (
                "console",
                args.console_sessions * (len(OPERATOR_VIEWS) + len(TENANT_VIEWS)),
                lambda: run_console(cloud.url, cloud.admin_key, console_key, args.console_sessions),
            ),
        ]
        wanted = [kind for kind in kinds if kind[0] in args.kinds.split(",")]
        console_key = console_tenant_key(cloud.url, cloud.admin_key) if "console" in args.kinds else ""
        if wanted:
            chat(cloud.url, tenant_key)  # wake the endpoint and import every handler: not measured
            wait_quiet(meter)
        for kind, count, run in wanted:
            before = meter.snapshot()
            gateway_before = meter.gateway_requests
            started = time.monotonic()
            latencies = run()
            wait_quiet(meter)
            after = meter.snapshot()
            spent = {name: after[name].minus(before.get(name, Units())) for name in after}
            results[kind] = bill(
                kind, count, spent, meter.gateway_requests - gateway_before, template, latencies, started
            )
            print_kind(results[kind])
    finally:
        cloud.stop()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "label": args.label,
        "prices_as_of": PRICES_AS_OF,
        "prices": {k: str(v) for k, v in PRICES.items()},
        "kinds": results,
        "idle": idle,
    }
    args.output.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.output}")


# --- the requests -----------------------------------------------------------------------------


def tiny_artifact(work: Path) -> Path:
    from gpu_jobs.build import BuildRequest, build
    from gpu_jobs.tiny import build_tiny_model

    source = build_tiny_model(work / "tiny")
    artifact = work / "artifact"
    build(BuildRequest(source=source, output=artifact, method="fp32", model_name=MODEL))
    return artifact


def setup_tenant(url: str, admin_key: str) -> str:
    limits = {"requests_per_minute": 100_000, "tokens_per_minute": 10**8, "max_in_flight": 10_000}
    status, _ = call(f"{url}/admin/tenants", admin_key, "POST", {"tenant_id": "acme", "name": "Acme", "limits": limits})
    assert status == 201, status
    status, key = call(f"{url}/admin/tenants/acme/keys", admin_key, "POST", {"scopes": ["inference", "batch"]})
    assert status == 201, key
    return str(key["api_key"])


PROMPT = [{"role": "user", "content": "Summarise in one sentence why the sky is blue, for a child of six."}]


def chat(url: str, key: str) -> float:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=5, timeout=120)
    start = time.perf_counter()
    client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=32)  # type: ignore[arg-type]
    return time.perf_counter() - start


def run_interactive(url: str, key: str, args: argparse.Namespace) -> list[float]:
    with ThreadPoolExecutor(args.concurrency) as pool:
        return list(pool.map(lambda _: chat(url, key), range(args.requests)))


def run_async(url: str, key: str, args: argparse.Namespace) -> list[float]:
    def one(_: int) -> float:
        start = time.perf_counter()
        body = {"model": MODEL, "messages": PROMPT, "max_tokens": 32}
        status, job = call(f"{url}/v1/chat/completions", key, "POST", body, prefer="respond-async")
        assert status == 202, (status, job)
        while job.get("status") not in ("completed", "failed", "cancelled", "expired"):
            time.sleep(1)
            status, job = call(f"{url}/v1/jobs/{job['id']}", key)
        assert job["status"] == "completed", job
        return time.perf_counter() - start

    with ThreadPoolExecutor(args.concurrency) as pool:
        return list(pool.map(one, range(args.requests)))


def jsonl(lines: int) -> str:
    body = {"model": MODEL, "messages": PROMPT, "max_tokens": 32}
    return "".join(
        json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n"
        for i in range(lines)
    )


def finish_batch(client: Any, batch_id: str) -> None:
    deadline = time.monotonic() + 900
    batch = client.batches.retrieve(batch_id)
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(5)
        batch = client.batches.retrieve(batch_id)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == batch.request_counts.total, batch.request_counts
    client.files.content(batch.output_file_id).text  # noqa: B018 - the tenant downloads its answers


def run_batch(url: str, key: str, lines: int) -> list[float]:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=5, timeout=120)
    start = time.perf_counter()
    uploaded = client.files.create(file=("in.jsonl", jsonl(lines).encode()), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    finish_batch(client, batch.id)
    return [time.perf_counter() - start]


def run_submission(url: str, key: str, lines: int, meter: Meter) -> list[float]:
    import boto3
    import openai

    body = {"model": MODEL, "messages": PROMPT, "max_tokens": 32}
    message = {
        "submission_id": "bill-1",
        "tenant_id": "acme",
        "endpoint": "/v1/chat/completions",
        "requests": [{"custom_id": f"line-{i}", "body": body} for i in range(lines)],
    }
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=5, timeout=120)
    earlier = {b.id for b in client.batches.list().data}
    start = time.perf_counter()
    with meter.acting_as("producer"):
        boto3.client("sqs").send_message(QueueUrl=os.environ["BATCH_QUEUE_URL"], MessageBody=json.dumps(message))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        made = [b for b in client.batches.list().data if b.id not in earlier]
        if made:
            finish_batch(client, made[0].id)
            return [time.perf_counter() - start]
        time.sleep(2)
    raise AssertionError("the submission made no batch")


OPERATOR_VIEWS = ("tenants", "usage", "invoices", "batches", "endpoint")
TENANT_VIEWS = ("usage", "limits", "work", "keys")
CHROMIUM = os.environ.get("STRATUS_CHROMIUM", "/usr/bin/chromium")


def console_tenant_key(url: str, admin_key: str) -> str:
    """A key of acme's that opens every tenant view (the bill's tenant key has no `usage` scope)."""
    status, made = call(
        f"{url}/admin/tenants/acme/keys", admin_key, "POST", {"scopes": ["inference", "batch", "usage"]}
    )
    assert status == 201, made
    return str(made["api_key"])


def run_console(url: str, admin_key: str, tenant_key: str, sessions: int) -> list[float]:
    """Sessions of the console, each in a new browser context (an empty cache), each view until the
    network is idle; the seconds each view took to settle."""
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    seconds: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        for key, views in [(admin_key, OPERATOR_VIEWS), (tenant_key, TENANT_VIEWS)] * sessions:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            pending: set[Any] = set()
            # Playwright sets an attribute on each handler: a set's bound method takes none
            page.on("request", lambda request, pending=pending: pending.add(request))
            page.on("requestfinished", lambda request, pending=pending: pending.discard(request))
            page.on("requestfailed", lambda request, pending=pending: pending.discard(request))
            page.goto(f"{url}/console/")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="Sign out").wait_for()
            for view in views:
                start = time.perf_counter()
                page.goto(f"{url}/console/#/{view}")
                page.locator("main h1").wait_for()
                settle(page, pending)
                seconds.append(time.perf_counter() - start)
            context.close()
        browser.close()
    return seconds


def settle(page: Any, pending: set[Any], quiet: float = 0.5) -> None:
    """Until the page has had no request in flight for `quiet` seconds (a view's calls are chained).
    Playwright's wait, not `time.sleep`: its events are only delivered while it runs."""
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        page.wait_for_timeout(50)
        if pending:
            since = time.monotonic()


def wait_quiet(meter: Meter, quiet_seconds: float = 12.0) -> None:
    """Until no function but the schedules has made a call for `quiet_seconds` (more than two of the
    scheduler's 5 s runs: held work waits for one)."""

    def activity() -> int:
        return sum(
            sum(units.calls.values()) + units.invocations
            for name, units in meter.snapshot().items()
            if name not in (IDLE, *SCHEDULED_FUNCTIONS)
        )

    last, since = activity(), time.monotonic()
    while time.monotonic() - since < quiet_seconds:
        time.sleep(0.5)
        now = activity()
        if now != last:
            last, since = now, time.monotonic()


def billing_handler(template: dict[str, Any]) -> Any:
    from stratus.localcloud.functions import handler

    return handler(template, "BillingFunction")


# --- the bill ---------------------------------------------------------------------------------


def deployed_by_default(template: dict[str, Any], resource: dict[str, Any]) -> bool:
    """Whether a resource exists with every parameter at its default (its `Condition`, if any)."""

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return template["Parameters"][node["Ref"]].get("Default")
        if isinstance(node, dict) and "Condition" in node:
            return holds(node["Condition"])
        if isinstance(node, dict) and "Fn::Equals" in node:
            left, right = node["Fn::Equals"]
            return str(value(left)) == str(value(right))
        if isinstance(node, dict) and "Fn::Not" in node:
            return not value(node["Fn::Not"][0])
        if isinstance(node, dict) and "Fn::And" in node:
            return all(value(part) for part in node["Fn::And"])
        if isinstance(node, dict) and "Fn::Or" in node:
            return any(value(part) for part in node["Fn::Or"])
        return node

    def holds(name: str) -> bool:
        return bool(value(template["Conditions"][name]))

    return "Condition" not in resource or holds(resource["Condition"])


def memory_mb(template: dict[str, Any], function: str) -> int:
    """The function's `MemorySize` (its own, else the Globals'; a parameter's default for a `!Ref`)."""
    default = template["Globals"]["Function"].get("MemorySize", 128)
    resource = template["Resources"].get(function.removesuffix(" (releases)"), {})
    value = resource.get("Properties", {}).get("MemorySize", default)
    if isinstance(value, dict) and "Ref" in value:
        value = template["Parameters"][value["Ref"]]["Default"]
    return int(value)


def traced(template: dict[str, Any]) -> bool:
    """Whether the functions trace by default (`Tracing`, a value or a parameter's default)."""
    value = template["Globals"]["Function"].get("Tracing")
    if isinstance(value, dict) and "Ref" in value:
        value = template["Parameters"][value["Ref"]].get("Default")
    return value == "Active"


def usd(units: Units, function: str | None, template: dict[str, Any]) -> dict[str, Decimal]:
    """The cost of one actor's units, per service."""
    costs = {
        "DynamoDB": Decimal(str(units.units["dynamodb_write"])) * PRICES["dynamodb_write"]
        + Decimal(str(units.units["dynamodb_read"])) * PRICES["dynamodb_read"],
        "S3": units.units["s3_tier1"] * PRICES["s3_tier1"] + units.units["s3_tier2"] * PRICES["s3_tier2"],
        "SQS": units.units["sqs_request"] * PRICES["sqs_request"],
        "SNS": units.units["sns_publish"] * PRICES["sns_publish"],
        "Lambda requests": Decimal(0),
        "Lambda duration": Decimal(0),
        "CloudWatch Logs": Decimal(0),
        "X-Ray": Decimal(0),
    }
    if function is not None and units.invocations:
        gb = Decimal(memory_mb(template, function)) / 1024
        costs["Lambda requests"] = units.invocations * PRICES["lambda_request"]
        costs["Lambda duration"] = Decimal(units.billed_ms) / 1000 * gb * PRICES["lambda_gb_second"]
        log_bytes = units.log_bytes + units.invocations * PLATFORM_LOG_BYTES
        costs["CloudWatch Logs"] = Decimal(log_bytes) / 10**9 * PRICES["logs_gb"]
        costs["X-Ray"] = units.invocations * PRICES["xray_trace"]  # upper bound: every invocation sampled
    return costs


def is_function(name: str, template: dict[str, Any]) -> bool:
    return name.removesuffix(" (releases)") in template["Resources"]


def bill(
    kind: str,
    count: int,
    spent: dict[str, Units],
    gateway_requests: int,
    template: dict[str, Any],
    latencies: list[float],
    started: float,
) -> dict[str, Any]:
    per_actor: dict[str, Any] = {}
    totals: dict[str, Decimal] = {"API Gateway": gateway_requests * PRICES["http_api_request"]}
    work = {
        name: units
        for name, units in spent.items()
        if name not in (IDLE, *SCHEDULED_FUNCTIONS) and (units.calls or units.invocations)
    }
    for name, units in sorted(work.items()):
        costs = usd(units, name if is_function(name, template) else None, template)
        for service, cost in costs.items():
            totals[service] = totals.get(service, Decimal(0)) + cost
        per_actor[name] = {
            "calls_per_request": {op: round(n / count, 3) for op, n in sorted(units.calls.items()) if n},
            "units_per_request": {u: round(n / count, 3) for u, n in sorted(units.units.items()) if n},
            "invocations_per_request": round(units.invocations / count, 3),
            "billed_ms_per_request": round(units.billed_ms / count, 1),
            "cpu_ms_per_invocation": round(units.cpu_ms / units.invocations, 1) if units.invocations else None,
            "ms_per_invocation": round(units.billed_ms / units.invocations, 1) if units.invocations else None,
            "aws_call_ms_per_request": {svc: round(ms / count, 1) for svc, ms in sorted(units.call_ms.items())},
            "aws_calls_per_request": round(sum(units.calls.values()) / count, 2),
            "memory_mb": memory_mb(template, name) if is_function(name, template) else None,
            "log_bytes_per_request": round(units.log_bytes / count),
            "usd_per_million": {s: f"{c / count * 10**6:.3f}" for s, c in costs.items() if c},
        }
    per_million = {service: cost / count * 10**6 for service, cost in totals.items()}
    xray = per_million.get("X-Ray", Decimal(0))
    all_in = sum(per_million.values()) - (Decimal(0) if traced(template) else xray)
    ordered = sorted(latencies)
    return {
        "kind": kind,
        "requests": count,
        "seconds": round(time.monotonic() - started, 1),
        "gateway_requests_per_request": round(gateway_requests / count, 3),
        "latency_p50_s": round(ordered[len(ordered) // 2], 3) if ordered else None,
        "latency_p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3) if ordered else None,
        "usd_per_million": {s: f"{c:.3f}" for s, c in per_million.items()},
        "tracing_by_default": traced(template),
        "usd_per_million_total": f"{all_in:.3f}",  # X-Ray counted only when the template traces by default
        "usd_per_million_total_without_xray": f"{sum(per_million.values()) - xray:.3f}",
        "usd_per_million_total_with_xray": f"{sum(per_million.values()):.3f}",
        "actors": per_actor,
    }


def idle_month(
    spent: dict[str, Units],
    template: dict[str, Any],
    idle_metrics: set[tuple[str, ...]],
    billing_metrics: set[tuple[str, ...]],
) -> dict[str, Any]:
    """A month with no requests: the schedules at AWS's rates, the idle event-source polls, CloudWatch.
    A custom metric is billed for each hour it gets data: the scheduler's and sweeper's every hour,
    the daily billing run's for 30 hours."""
    rates = {
        "SchedulerFunction": MINUTES_PER_MONTH,
        "SweeperFunction": MINUTES_PER_MONTH // 5,
        "RequestFailuresFunction": MINUTES_PER_MONTH // 5,
        "BillingFunction": 30,
    }
    lines: dict[str, Decimal] = {}
    per_run: dict[str, Any] = {}
    for function, runs in rates.items():
        units = spent.get(function)
        if not units or not units.invocations:
            continue
        costs = usd(units, function, template)
        run_cost = sum(c for s, c in costs.items() if s != "X-Ray" or traced(template)) / units.invocations
        lines[f"{function} ({runs:,} runs)"] = run_cost * runs
        per_run[function] = {
            "calls_per_run": {op: round(n / units.invocations, 2) for op, n in sorted(units.calls.items())},
            "billed_ms_per_run": round(units.billed_ms / units.invocations, 1),
            "usd_per_run": f"{run_cost:.8f}",
        }
    mappings = sum(
        1
        for resource in template["Resources"].values()
        for event in resource.get("Properties", {}).get("Events", {}).values()
        if event["Type"] == "SQS"
    )
    polls = mappings * IDLE_POLLERS_PER_MAPPING * 3 * MINUTES_PER_MONTH  # a 20 s long poll: 3 a minute
    lines[f"idle SQS polls ({mappings} event source mappings × {IDLE_POLLERS_PER_MAPPING} pollers)"] = (
        polls * PRICES["sqs_request"]
    )
    alarm_metrics = 0
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            properties = resource["Properties"]
            alarm_metrics += sum(1 for m in properties.get("Metrics", []) if "MetricStat" in m) or 1
    lines[f"CloudWatch alarms ({alarm_metrics} metrics)"] = alarm_metrics * PRICES["alarm_metric_month"]
    dashboards = sum(
        1
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Dashboard" and deployed_by_default(template, r)
    )
    lines[f"CloudWatch dashboard ({dashboards})"] = dashboards * PRICES["dashboard_month"]
    keys = sum(1 for r in template["Resources"].values() if r["Type"] == "AWS::KMS::Key")
    lines[f"KMS keys ({keys})"] = keys * PRICES["kms_key_month"]
    lines[f"custom metrics published every hour while idle ({len(idle_metrics)})"] = (
        len(idle_metrics) * PRICES["custom_metric_month"]
    )
    daily = billing_metrics - idle_metrics
    hours = MINUTES_PER_MONTH // 60
    lines[f"custom metrics of the daily billing run ({len(daily)}, 30 hours each)"] = (
        len(daily) * PRICES["custom_metric_month"] * 30 / hours
    )
    return {
        "usd_per_month": {k: f"{v:.2f}" for k, v in lines.items()},
        "usd_per_month_total": f"{sum(lines.values()):.2f}",
        "per_run": per_run,
        "custom_metrics_while_idle": sorted("/".join(m) for m in idle_metrics),
        "custom_metrics_of_billing": sorted("/".join(m) for m in billing_metrics),
    }


def print_kind(result: dict[str, Any]) -> None:
    print(
        f"\n{result['kind']}: {result['requests']} requests, {result['seconds']} s,"
        f" p50 {result['latency_p50_s']} s, p95 {result['latency_p95_s']} s"
    )
    for service, cost in result["usd_per_million"].items():
        print(f"  {service:<18} {cost:>10} USD per million")
    total, without = result["usd_per_million_total"], result["usd_per_million_total_without_xray"]
    print(f"  {'total':<18} {total:>10} (without X-Ray {without})")
    for name, actor in result["actors"].items():
        print(
            f"    {name}: {actor['calls_per_request']} units {actor['units_per_request']}"
            f" invocations {actor['invocations_per_request']} ms {actor['billed_ms_per_request']}"
        )


def print_idle(idle: dict[str, Any]) -> None:
    print("\nidle month:")
    for line, cost in idle["usd_per_month"].items():
        print(f"  {line:<70} {cost:>8}")
    print(f"  {'total':<70} {idle['usd_per_month_total']:>8}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
