"""The first page of `GET /v1/jobs` for a tenant with 10,000 jobs: one bounded Query, whatever the partition holds.

Writes `--jobs` completed job items for one tenant into moto's jobs table (`BatchWriteItem`, 25 a
call, each item as the job store writes it: time-ordered ids, a compressed answer), then times the
API function's handler answering `GET /v1/jobs?limit=20` through the local gateway (the authorizer's
answer cached, as API Gateway caches it), median of `--runs` after one warm-up call. For contrast it
times reading the whole partition (every page of the same `Query`), which a list that sorts in
memory would need for its first page. moto in process: the figures compare the two reads, they are
not DynamoDB's latency.

With `--browser`, it also serves that gateway (and the console's files) over HTTP and times the
console in Debian's Chromium, driven by Playwright: from opening the tenant's "Batches and jobs" view
to its first page of jobs on screen, signed in with the tenant's key, median of `--runs` (each a new
reload of the view in the signed-in tab: `index.html` fetched again, the other files cached).

    .venv/bin/python bench/console_pages.py [--jobs 10000] [--runs 5] [--browser]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

PAGE = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time the console's first page in Chromium")
    args = parser.parse_args()
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Bench")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "bench")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    from moto import mock_aws

    with mock_aws():
        from api.app import lambda_handler as api
        from authorizer.app import lambda_handler as authorizer
        from stratus.localcloud.gateway import HttpApiGateway, LocalContext
        from stratus.localcloud.resources import create_resources
        from stratus_core.adapters import aws
        from stratus_core.adapters.dynamo.job_store import job_item
        from stratus_core.contract import Usage
        from stratus_core.jobs import Job, JobStatus, new_job_id
        from stratus_core.keys import KeyCreate, Scope
        from stratus_core.services import Services
        from stratus_core.tenants import TenantCreate

        os.environ.update(create_resources("bench"))
        services = Services()
        services.tenants.create(TenantCreate(tenant_id="acme", name="Acme"))
        key = services.keys.create("acme", KeyCreate(scopes=[Scope.INFERENCE])).api_key

        started = time.perf_counter()
        first = datetime.now(UTC) - timedelta(days=7)
        answer = {"object": "chat.completion", "choices": [{"message": {"role": "assistant", "content": "ok " * 60}}]}
        items = []
        for number in range(args.jobs):
            at = first + timedelta(seconds=number * 30)
            job = Job(
                job_id=new_job_id(at),
                tenant_id="acme",
                kind="chat",
                model="smollm2-135m-instruct",
                status=JobStatus.COMPLETED,
                created_at=at,
                deadline=at + timedelta(hours=1),
                finished_at=at + timedelta(seconds=2),
                body_key=f"requests/acme/{number}.json",
                result=answer,
                usage=Usage.of(120, 60),
            )
            items.append(job_item(job, 30 * 86_400, timedelta(minutes=5)))
        client = aws.dynamodb()
        table = services.settings.jobs_table
        for start in range(0, len(items), 25):
            requests: Any = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            client.batch_write_item(RequestItems={table: requests})
        loaded = time.perf_counter() - started

        api_ms: list[float] = []

        def timed(event: dict[str, Any], context: LocalContext) -> Any:
            began = time.perf_counter()
            result = api(event, context)
            api_ms.append((time.perf_counter() - began) * 1000)
            return result

        gateway = HttpApiGateway(authorizer, timed, cache_ttl_seconds=30)
        headers = {"authorization": f"Bearer {key}"}
        for _ in range(args.runs + 1):
            page = gateway.handle("GET", "/v1/jobs", f"limit={PAGE}", headers, b"")
            assert page.status == 200, page.body
        body = json.loads(page.body)
        newest = max(item["job_id"]["S"] for item in items)
        assert len(body["data"]) == PAGE and body["has_more"] and body["data"][0]["id"] == newest

        query = {
            "TableName": table,
            "KeyConditionExpression": "tenant_id = :t AND begins_with(job_id, :p)",
            "ExpressionAttributeValues": {":t": {"S": "acme"}, ":p": {"S": "job_"}},
            "ConsistentRead": True,
        }
        page_ms: list[float] = []
        for _ in range(args.runs):
            began = time.perf_counter()
            client.query(**query, ScanIndexForward=False, Limit=PAGE + 1)
            page_ms.append((time.perf_counter() - began) * 1000)

        whole_ms: list[float] = []
        for _ in range(args.runs):
            began = time.perf_counter()
            read = 0
            for found in client.get_paginator("query").paginate(**query):
                read += found["Count"]
            whole_ms.append((time.perf_counter() - began) * 1000)
        assert read == args.jobs
        handler_ms = api_ms[1:]  # before the browser's calls go through the same handler
        shown_ms = browser_first_page(gateway, key, args.runs) if args.browser else []

    print(f"one tenant, {args.jobs} job items in moto (loaded in {loaded:.1f} s with BatchWriteItem)")
    print(
        f"  GET /v1/jobs?limit={PAGE}, API handler: median {statistics.median(handler_ms):.1f} ms "
        f"of {args.runs} (one Query, Limit {PAGE + 1}: {PAGE + 1} items read)"
    )
    print(f"  of which the Query alone (moto reads the partition in Python): {statistics.median(page_ms):.1f} ms")
    whole = statistics.median(whole_ms)
    print(f"  whole partition, every page of the same Query: median {whole:.1f} ms ({read} items read)")
    if shown_ms:
        print(
            f"  the console's 'Batches and jobs' view in Chromium, opened to its first {PAGE} jobs on screen: "
            f"median {statistics.median(shown_ms):.0f} ms of {len(shown_ms)}"
            f" (min {min(shown_ms):.0f}, max {max(shown_ms):.0f})"
        )


def browser_first_page(gateway: Any, key: str, runs: int) -> list[float]:
    """Serve the gateway and the console on a free port; time the tenant's jobs view in Chromium."""
    import threading

    import uvicorn
    from console.app import lambda_handler as console
    from playwright.sync_api import sync_playwright

    from stratus.localcloud.cloud import LocalCloud
    from stratus.localcloud.endpoint import free_port

    gateway._console = console  # the same gateway, with the console's files as `stratus local up` serves them
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(LocalCloud._gateway_app(gateway), port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/console/"
    shown: list[float] = []
    chromium = os.environ.get("STRATUS_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(url)
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign out").wait_for()
        page.goto(f"{url}#/work")
        for _ in range(runs + 1):  # the first one warms the handlers up
            began = time.perf_counter()
            page.reload()  # the tab keeps its key (sessionStorage); the files come from the cache but index.html
            page.locator("tr[data-job]").nth(PAGE - 1).wait_for()
            shown.append((time.perf_counter() - began) * 1000)
        browser.close()
    server.should_exit = True
    return shown[1:]


if __name__ == "__main__":
    main()
