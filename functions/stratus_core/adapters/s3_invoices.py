"""Invoice documents in the data bucket: `invoices/YYYY-MM/<tenant>.json` and `.csv`."""

from __future__ import annotations

from stratus_core.adapters import aws
from stratus_core.billing import Invoice


class S3InvoiceArchive:
    def __init__(self, bucket: str) -> None:
        self._bucket = bucket

    def put(self, invoice: Invoice, csv_text: str) -> None:
        base = f"invoices/{invoice.month}/{invoice.tenant_id}"
        client = aws.s3()
        client.put_object(
            Bucket=self._bucket,
            Key=f"{base}.json",
            Body=invoice.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
        client.put_object(Bucket=self._bucket, Key=f"{base}.csv", Body=csv_text.encode(), ContentType="text/csv")
