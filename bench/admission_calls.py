"""AWS calls and DynamoDB capacity units per admitted request, counted with botocore event hooks.

Runs the real authorizer logic, admission (reserve) and settlement against moto in process,
records every AWS call, and sizes each written item with DynamoDB's item-size rules to get
write request units (transactional writes cost 2 per KB). Prints cost per million requests at
the list prices in `bench/metering.py`.

    .venv/bin/python bench/admission_calls.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

# us-east-1 list prices and DynamoDB's item-size rules: one table and one implementation for every
# bench that prices AWS calls (bench/metering.py, also used by bench/aws_bill.py).
from metering import PRICES, item_size

REPO = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m-instruct"


class Recorder:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.write_units = 0
        self.read_units = 0
        self.pending: list[tuple[str, dict[str, Any], bool]] = []

    def before(self, event_name: str, params: dict[str, Any], **_: Any) -> None:
        operation = event_name.split(".")[-1]
        self.calls[operation] += 1
        if operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((_kind, spec),) = entry.items()
                self.pending.append((spec["TableName"], spec.get("Key") or spec["Item"], True))
        elif operation in ("PutItem", "UpdateItem"):
            key = params.get("Key") or params["Item"]
            self.pending.append((params["TableName"], key, False))
        elif operation == "GetItem":
            self.read_units += 1  # strongly consistent, items < 4 KB
        elif operation == "Query":
            self.read_units += 1

    def settle_sizes(self, client: Any) -> None:
        """Size each written item as it is after the write (a write costs its larger image)."""
        key_names: dict[str, list[str]] = {}
        for table, key, transactional in self.pending:
            if table not in key_names:
                schema = client.describe_table(TableName=table)["Table"]["KeySchema"]
                key_names[table] = [part["AttributeName"] for part in schema]
            item = client.get_item(TableName=table, Key={name: key[name] for name in key_names[table]})
            size = item_size(item.get("Item", {}))
            self.write_units += (2 if transactional else 1) * max(1, math.ceil(size / 1024))
        self.pending.clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "admission_calls.json")
    args = parser.parse_args()
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    from moto import mock_aws

    with mock_aws():
        from datetime import timedelta

        from stratus.localcloud.resources import create_resources
        from stratus_core.adapters import aws
        from stratus_core.admission import worst_case_prompt_tokens
        from stratus_core.clock import utcnow
        from stratus_core.contract import Usage
        from stratus_core.http.auth import authorize
        from stratus_core.intake import JobIntake
        from stratus_core.jobs import Job
        from stratus_core.keys import KeyCreate, Scope
        from stratus_core.services import Services
        from stratus_core.tenants import TenantCreate, TenantLimits

        os.environ.update(create_resources("bench"))
        services = Services()
        services.tenants.create(
            TenantCreate(
                tenant_id="acme",
                name="Acme",
                limits=TenantLimits(
                    requests_per_minute=10**6, tokens_per_minute=10**9, tokens_per_month=10**12, max_in_flight=10**5
                ),
            )
        )
        key = services.keys.create("acme", KeyCreate(scopes=[Scope.INFERENCE])).api_key
        client = aws.dynamodb()
        phases: dict[str, Recorder] = {}
        prompt = "Summarise the following paragraph in one sentence: " + "lorem ipsum " * 40
        # Settlement usually lands in a later minute than admission (generation takes time).
        later = Services(clock=lambda: utcnow() + timedelta(minutes=2))

        def job(job_id: str) -> Job:
            """The job row the intake writes after admission (written outside the measured calls)."""
            reservation = services.admission_store.get("acme", job_id)
            assert reservation is not None
            from stratus_core.contract import PackedRequest, SamplingParams

            request = PackedRequest(
                job_id=job_id,
                tenant_id="acme",
                kind="completion",
                model=MODEL,
                prompt=prompt,
                params=SamplingParams(max_tokens=256),
            )
            stored = JobIntake.job_for(request, reservation.created_at, reservation.created_at + timedelta(hours=1))
            services.job_store.create(stored)
            return stored

        for phase in ("authorize", "reserve", "settle", "reserve2", "settle_later_minute"):
            jobs = {}
            if phase.startswith("settle"):
                source = "reserve" if phase == "settle" else "reserve2"
                jobs = {i: job(f"{source}-{i}") for i in range(args.requests)}
            recorder = phases[phase] = Recorder()
            client.meta.events.register("provide-client-params.dynamodb.*", recorder.before)
            for i in range(args.requests):
                if phase == "authorize":
                    authorize(f"Bearer {key}", services.keys)
                elif phase.startswith("reserve"):
                    services.admission.reserve("acme", f"{phase}-{i}", MODEL, worst_case_prompt_tokens([prompt]), 256)
                elif phase == "settle":
                    services.settlement.complete(jobs[i], Usage.of(130, 200), {"object": "text_completion"})
                else:
                    later.settlement.complete(jobs[i], Usage.of(130, 200), {"object": "text_completion"})
            client.meta.events.unregister("provide-client-params.dynamodb.*", recorder.before)
            recorder.settle_sizes(client)

    n = args.requests
    rows = {}
    print(f"per admitted request ({n} requests, moto in process)")
    print(f"{'phase':<20} {'AWS calls':<45} {'WRU':>6} {'RRU':>6}")
    for phase, recorder in phases.items():
        calls = {op: count / n for op, count in sorted(recorder.calls.items())}
        rows[phase] = {"calls": calls, "write_units": recorder.write_units / n, "read_units": recorder.read_units / n}
        text = ", ".join(f"{op} {count:g}" for op, count in calls.items())
        print(f"{phase:<20} {text:<45} {recorder.write_units / n:>6.2f} {recorder.read_units / n:>6.2f}")
    admitted = [rows["reserve"], rows["settle_later_minute"]]  # the common case
    wru = sum(Decimal(str(r["write_units"])) for r in admitted)
    rru = sum(Decimal(str(r["read_units"])) for r in admitted)
    auth_rru = Decimal(str(rows["authorize"]["read_units"]))
    dynamo = wru * PRICES["dynamodb_write"] + rru * PRICES["dynamodb_read"]
    auth = auth_rru * PRICES["dynamodb_read"] + PRICES["lambda_request"]
    per_million = {
        "dynamodb_admission_and_settlement (settled in a later minute)": dynamo * 10**6,
        "authorizer_uncached (DynamoDB reads + Lambda request fee)": auth * 10**6,
        "http_api_requests": PRICES["http_api_request"] * 10**6,
        "api_lambda_request_fee": PRICES["lambda_request"] * 10**6,
    }
    print("USD per million admitted requests (list prices; Lambda duration not included):")
    for item, cost in per_million.items():
        print(f"  {item:<60} {cost:.4f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {"requests": n, "phases": rows, "usd_per_million": {k: str(v) for k, v in per_million.items()}}, indent=2
        )
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
