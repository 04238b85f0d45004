"""The first page of `GET /v1/jobs` for a tenant with 10,000 jobs: one bounded Query, whatever the partition holds.

Writes `--jobs` completed job items for one tenant into moto's jobs table (`BatchWriteItem`, 25 a
call, each item as the job store writes it: time-ordered ids, a compressed answer), then times the
API function's handler answering `GET /v1/jobs?limit=20` through the local gateway (the authorizer's
answer cached, as API Gateway caches it), median of `--runs` after one warm-up call. For contrast it
times reading the whole partition (every page of the same `Query`), which a list that sorts in
memory would need for its first page. moto in process: the figures compare the two reads, they are
not DynamoDB's latency.

    .venv/bin/python bench/console_pages.py [--jobs 10000] [--runs 5]
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
            items.append(job_item(job, 30 * 86_400))
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

    print(f"one tenant, {args.jobs} job items in moto (loaded in {loaded:.1f} s with BatchWriteItem)")
    print(
        f"  GET /v1/jobs?limit={PAGE}, API handler: median {statistics.median(api_ms[1:]):.1f} ms "
        f"of {args.runs} (one Query, Limit {PAGE + 1}: {PAGE + 1} items read)"
    )
    print(f"  of which the Query alone (moto reads the partition in Python): {statistics.median(page_ms):.1f} ms")
    whole = statistics.median(whole_ms)
    print(f"  whole partition, every page of the same Query: median {whole:.1f} ms ({read} items read)")


if __name__ == "__main__":
    main()
