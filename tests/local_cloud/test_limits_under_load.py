"""Many concurrent clients (CI 24, `make reliability` 50) on one tenant with small limits, through the
local cloud (tiny model): no limit is exceeded, and every admitted request finishes and is billed
exactly what its client was told."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

pytest.importorskip("torch")

from tests.local_cloud.conftest import MODEL, Cloud, launch, send, tiny_artifact
from tests.reliability.report import Section, write_section

LIMITS = {"requests_per_minute": 12, "tokens_per_minute": 100_000, "tokens_per_month": 4000, "max_in_flight": 4}
CLIENTS = int(os.environ.get("STRATUS_LIMIT_CLIENTS", "24"))  # CI: 24; `make reliability`: 50


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with launch(tiny_artifact(tmp_path_factory), tmp_path_factory, engine="echo") as running:
        yield running


def client(url: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], int]:
    """One client: retries while the tenant is at max_in_flight, gives up on any other refusal (the
    limit that refused it is in the answer's body as `limit`)."""
    for attempt in range(1, 200):
        status, answer, headers = send(url, key, body, prefer="respond-async, wait=25")
        if status == 429:
            answer["limit"] = headers["x-stratus-limit"]
        if status != 429 or answer["limit"] != "max_in_flight":
            return status, answer, attempt
        time.sleep(1.0)  # a client told to wait; retrying at once only crowds the emulator
    return status, answer, attempt


def test_concurrent_clients_never_exceed_a_limit_and_every_admitted_request_is_billed(cloud: Cloud) -> None:
    admin = cloud.admin_key
    cloud.call("POST", "/admin/tenants", admin, {"tenant_id": "hot", "name": "Hot", "limits": LIMITS})
    key = cloud.call("POST", "/admin/tenants/hot/keys", admin, {"scopes": ["inference", "usage"]})["api_key"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 8}

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda _: client(f"{cloud.url}/v1/chat/completions", key, body), range(CLIENTS)))
    elapsed = time.monotonic() - started

    admitted = [b for status, b, _ in answers if status in (200, 202)]
    refused = [b for status, b, _ in answers if status == 429]
    assert len(admitted) + len(refused) == CLIENTS, [(s, b) for s, b, _ in answers if s not in (200, 202, 429)]
    assert sum(attempts for _, _, attempts in answers) > CLIENTS  # max_in_flight did turn clients away
    assert {b["limit"] for b in refused} <= {"requests_per_minute", "tokens_per_month"}

    # every admitted request finishes; what the clients were told is what is billed
    reported = 0
    minutes: dict[int, int] = {}
    for answer in admitted:
        job = answer
        deadline = time.monotonic() + 120
        while job.get("object") == "job" and job.get("status") not in ("completed", "failed", "expired"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
            job = cloud.call("GET", f"/v1/jobs/{answer['id']}", key)
        result = job.get("result") or job
        assert result["object"] == "chat.completion", job
        reported += result["usage"]["total_tokens"]
        minutes[result["created"] // 60] = minutes.get(result["created"] // 60, 0) + 1
    # no calendar minute admitted more than the per-minute limit (a run may straddle two minutes)
    assert max(minutes.values()) <= LIMITS["requests_per_minute"], (minutes, elapsed)
    if any(b["limit"] == "requests_per_minute" for b in refused):  # refused only once a minute was full
        assert LIMITS["requests_per_minute"] in minutes.values(), minutes
    usage = cloud.call("GET", "/v1/usage", key)["totals"]
    assert (usage["requests"], usage["total_tokens"]) == (len(admitted), reported)
    assert usage["total_tokens"] <= LIMITS["tokens_per_month"]
    tenant = cloud.call("GET", "/admin/tenants/hot", admin)
    assert tenant.get("in_flight", 0) == 0, tenant
    invoices = cloud.call("GET", f"/admin/invoices/{datetime.now(UTC):%Y-%m}", admin)["data"]
    assert {i["tenant_id"]: i["total_tokens"] for i in invoices}["hot"] == reported

    attempts = sum(a for _, _, a in answers)
    write_section(
        Section(
            order=3,
            requests=attempts,
            title=f"{CLIENTS} concurrent clients on one tenant with small limits, on the local cloud",
            how=(
                "`stratus local up` in its own process with a tiny random model; 50 threads post chat "
                "completions at once for one tenant with limits " + json.dumps(LIMITS) + "; a client refused "
                f"for max_in_flight retries after 1 s, other refusals are final. Took {elapsed:.0f} s."
            ),
            injected={
                "requests sent (retries included)": attempts,
                "admitted": len(admitted),
                "refused (requests_per_minute or tokens_per_month)": len(refused),
                "refused for max_in_flight, then retried": attempts - CLIENTS,
            },
            outcome=f"admitted per calendar minute {json.dumps(minutes)}; {reported} tokens reported and billed",
            invariants=[
                "no calendar minute admitted more than requests_per_minute",
                "billed tokens (usage and invoice) == what the clients were told; under the monthly quota",
                "every admitted request finished; in flight 0 at the end",
            ],
            tenants={"hot": (reported, usage["total_tokens"])},
        )
    )


def _function_of(name: str) -> str:
    """`stratus-request-failures`, `RequestFailuresFunction`, `request_failures` → `requestfailures`."""
    return name.lower().removeprefix("stratus-").removesuffix("function").replace("-", "").replace("_", "")


def test_each_log_line_names_the_function_that_wrote_it(cloud: Cloud) -> None:
    """Read as an operator reads `stratus local up`'s log after the concurrent clients above: every
    function's line carries its own service and function name, and no other caller's identity (the
    authorizer's tenant and key ids appear only on its own lines)."""
    deadline = time.monotonic() + 60  # a sweep runs every 30 s, the scheduler every 5 s
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in cloud.log.read_text().splitlines() if line.startswith("{")]
        services = {line.get("service") for line in lines}
        if {"stratus-sweeper", "stratus-scheduler"} <= services:
            break
        time.sleep(1)
    by_function = [line for line in lines if "function_name" in line]
    allowed = [line for line in by_function if line.get("message") == "allowed"]

    assert allowed  # the authorizer's own lines (its decisions are cached per key: how many varies)
    assert {"stratus-authorizer", "stratus-sweeper", "stratus-scheduler"} <= services
    wrong = [line for line in by_function if _function_of(line["function_name"]) != _function_of(line["service"])]
    assert wrong == [], wrong[:5]
    assert {line["service"] for line in allowed} == {"stratus-authorizer"}
    assert {line["service"] for line in lines if line.get("message") == "sweep done"} == {"stratus-sweeper"}
    assert {line["service"] for line in lines if line.get("message") == "scheduled"} <= {"stratus-scheduler"}
    identities = [line for line in by_function if "tenant_id" in line and line["service"] != "stratus-authorizer"]
    assert all(line["tenant_id"] == "hot" for line in identities)  # one tenant here: never a stale other one
