"""What answering a refused key in OpenAI's shape costs: the API function now runs for it.

An HTTP API's authorizer cannot reshape its denials, so the authorizer passes refused keys on and
the API function answers them before any route (`api/app.py`). This measures, in process on moto,
how long each function's handler takes for a refused key (warm, median of `--requests`), and
prices it at the template's memory sizes and Lambda's arm64 list price: the cost per million
*refused* requests that this choice adds. Valid requests are not affected (the authorizer's cached
answer covers them, as before).

    .venv/bin/python bench/auth_refusal.py --requests 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from decimal import Decimal
from typing import Any

# us-east-1 list prices, 2026-12-01 (Lambda: requests and arm64 GB-seconds)
LAMBDA_REQUEST = Decimal("0.20") / 10**6
LAMBDA_ARM_GB_SECOND = Decimal("0.0000133334")
API_MEMORY_MB = 512
AUTHORIZER_MEMORY_MB = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
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

        os.environ.update(create_resources("bench"))
        authorizer_ms: list[float] = []
        api_ms: list[float] = []

        def timed(handler: Any, sink: list[float]) -> Any:
            def run(event: dict[str, Any], context: LocalContext) -> Any:
                started = time.perf_counter()
                result = handler(event, context)
                sink.append((time.perf_counter() - started) * 1000)
                return result

            return run

        gateway = HttpApiGateway(timed(authorizer, authorizer_ms), timed(api, api_ms), cache_ttl_seconds=0)
        headers = {"authorization": "Bearer sk-" + "A" * 43, "content-type": "application/json"}
        for _ in range(args.requests):
            answer = gateway.handle("GET", "/v1/models", "", headers, b"")
            assert answer.status == 401, answer.body
    authorizer_median = statistics.median(authorizer_ms[10:])
    api_median = statistics.median(api_ms[10:])
    billed_api_ms = max(1, round(api_median))  # Lambda bills by the millisecond, at least 1 ms
    api_cost = LAMBDA_REQUEST + Decimal(billed_api_ms) / 1000 * API_MEMORY_MB / 1024 * LAMBDA_ARM_GB_SECOND
    print(f"refused keys, {args.requests} requests, handlers warm, moto in process")
    print(f"  authorizer handler (runs either way): median {authorizer_median:.2f} ms")
    print(f"  API function handler, answering the 401: median {api_median:.2f} ms (billed {billed_api_ms} ms)")
    print(f"  added by answering in OpenAI's shape: ${api_cost * 10**6:.4f} per million refused requests")


if __name__ == "__main__":
    main()
