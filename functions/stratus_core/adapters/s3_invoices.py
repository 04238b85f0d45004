"""Invoice documents in the data bucket: `invoices/YYYY-MM/<tenant>.json` and `.csv`, written once.

Each object is put with `If-None-Match: *` (S3's conditional write): if the key exists, S3 answers
412 `PreconditionFailed` (409 `ConditionalRequestConflict` while another conditional write of it is
in flight) and keeps what it holds. The CSV goes first and the JSON last, so a stored JSON is the
mark of a final invoice: `finalized` lists those. A run that died between the two leaves a CSV
whose invoice is not final yet; the next run's put of that CSV finds it and keeps it (its figures
come from the same closed usage), then writes the JSON.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from stratus_core.adapters import aws
from stratus_core.billing import Invoice

ALREADY_WRITTEN = ("PreconditionFailed", "ConditionalRequestConflict")


class S3InvoiceArchive:
    def __init__(self, bucket: str) -> None:
        self._bucket = bucket

    def finalized(self, month: str) -> set[str]:
        prefix = f"invoices/{month}/"
        tenants: set[str] = set()
        for page in aws.s3().get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            for stored in page.get("Contents", []):
                name = stored["Key"].removeprefix(prefix)
                if name.endswith(".json"):
                    tenants.add(name.removesuffix(".json"))
        return tenants

    def put(self, invoice: Invoice, csv_text: str) -> bool:
        base = f"invoices/{invoice.month}/{invoice.tenant_id}"
        self._put_once(f"{base}.csv", csv_text.encode(), "text/csv")
        return self._put_once(f"{base}.json", invoice.model_dump_json(indent=2).encode(), "application/json")

    def _put_once(self, key: str, body: bytes, content_type: str) -> bool:
        """False if an object is stored under `key` already (it is left as it is)."""
        try:
            aws.s3().put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
        except ClientError as error:
            if aws.error_code(error) in ALREADY_WRITTEN:
                return False
            raise
        return True
