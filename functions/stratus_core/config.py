"""The one place that turns the function's environment into settings.

The SAM template sets these variables (`Globals.Function.Environment`); the tests and the local
cloud set them from the same template, so a renamed resource breaks them together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Settings:
    tenants_table: str
    api_keys_table: str
    usage_table: str
    data_bucket: str
    price_catalog_json: str | None
    reservation_retention_days: int
    transaction_attempts: int
    jobs_table: str
    requests_queue_url: str
    endpoint_name: str
    request_ttl_seconds: int
    invocation_timeout_seconds: int
    result_check_seconds: int
    max_pack_size: int
    job_retention_days: int
    files_table: str
    batches_table: str
    batch_queue_url: str
    batch_requests_queue_url: str


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(
        tenants_table=_required("TENANTS_TABLE"),
        api_keys_table=_required("API_KEYS_TABLE"),
        usage_table=_required("USAGE_TABLE"),
        data_bucket=os.environ.get("DATA_BUCKET", ""),
        price_catalog_json=os.environ.get("PRICE_CATALOG") or None,
        reservation_retention_days=int(os.environ.get("RESERVATION_RETENTION_DAYS", "400")),
        transaction_attempts=int(os.environ.get("ADMISSION_TRANSACTION_ATTEMPTS", "8")),
        jobs_table=os.environ.get("JOBS_TABLE", ""),
        requests_queue_url=os.environ.get("REQUESTS_QUEUE_URL", ""),
        endpoint_name=os.environ.get("ENDPOINT_NAME", ""),
        request_ttl_seconds=int(os.environ.get("REQUEST_TTL_SECONDS", "3600")),
        invocation_timeout_seconds=int(os.environ.get("INVOCATION_TIMEOUT_SECONDS", "900")),
        result_check_seconds=int(os.environ.get("RESULT_CHECK_SECONDS", "300")),
        max_pack_size=int(os.environ.get("MAX_PACK_SIZE", "32")),
        job_retention_days=int(os.environ.get("JOB_RETENTION_DAYS", "30")),
        files_table=os.environ.get("FILES_TABLE", ""),
        batches_table=os.environ.get("BATCHES_TABLE", ""),
        batch_queue_url=os.environ.get("BATCH_QUEUE_URL", ""),
        batch_requests_queue_url=os.environ.get("BATCH_REQUESTS_QUEUE_URL", ""),
    )


def reset_settings() -> None:
    """Forget the cached settings (tests and the local cloud change the environment)."""
    get_settings.cache_clear()
