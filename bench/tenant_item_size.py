"""The tenant item's size as requests are held on it: what each of its writes costs (1 WCU per KB).

Admits requests one by one on moto through `Services` (the item the code writes), sizes the item
with DynamoDB's rules (`metering.item_size`) after 1, 4, 9, 16, 20, 50, 100 and 1,000 held, then
settles one (its usage lands on the item). `docs/dynamodb-ceilings.md` carries the numbers.

    .venv/bin/python bench/tenant_item_size.py
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "functions"))

from metering import item_size  # noqa: E402

MODEL = "smollm2-135m-instruct"
REPORT_AT = (1, 4, 9, 16, 20, 50, 100, 1000)


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    import boto3
    from moto import mock_aws

    from stratus.localcloud.functions import reset_services
    from stratus.localcloud.resources import create_all
    from stratus.template import function_environment, load_template

    with mock_aws():
        template = load_template()
        reset_services(template)
        refs = create_all("size").refs
        os.environ.update(function_environment(template, refs))
        from stratus_core.contract import Usage
        from stratus_core.jobs import new_job_id
        from stratus_core.services import Services
        from stratus_core.settlement import Settle
        from stratus_core.tenants import TenantCreate, TenantLimits

        services = Services()
        limits = TenantLimits(max_in_flight=100_000, requests_per_minute=10**6, tokens_per_minute=10**9)
        services.tenants.create(TenantCreate(tenant_id="acme-corp", name="Acme Corporation", limits=limits))
        client = boto3.client("dynamodb")

        def size() -> int:
            key = {"tenant_id": {"S": "acme-corp"}}
            return item_size(client.get_item(TableName=refs["TenantsTable"], Key=key)["Item"])

        print(f"{'requests held':>14} {'bytes':>8} {'WCU per write':>14}")
        print(f"{0:>14} {size():>8} {-(-size() // 1024):>14}")
        held = []
        for n in range(1, max(REPORT_AT) + 1):
            job_id = new_job_id()
            held.append(job_id)
            services.admission.reserve("acme-corp", job_id, MODEL, prompt_tokens_bound=200, max_tokens=256)
            if n in REPORT_AT:
                print(f"{n:>14} {size():>8} {-(-size() // 1024):>14}")
        reservation = services.admission_store.get("acme-corp", held[0])
        assert reservation is not None
        reservation = reservation.model_copy(update={"model": MODEL})
        cost = services.catalog.cost(MODEL, 100, 50, "interactive")
        services.admission_store.settle_held(reservation, Settle(Usage.of(100, 50), cost), datetime.now(UTC))
        print(f"one settled (its day's usage on the item), {len(held) - 1} held: {size()} bytes")


if __name__ == "__main__":
    main()
