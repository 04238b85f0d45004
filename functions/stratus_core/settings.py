"""The one place that turns the function's environment into settings: one pydantic model.

The SAM template sets these variables for every function (`Globals.Function.Environment`); the
tests and the local cloud set them from the same template, so a renamed resource breaks them
together. A missing or malformed variable fails the first invocation with pydantic's message
naming it, instead of a `KeyError` somewhere in a store; an empty variable counts as unset.

A plain pydantic model validated from `os.environ` rather than pydantic-settings: the latter
costs 18–22 ms more on every cold start here (`import pydantic_settings` after the function's own
imports, measured on this machine), for parsing we do not need (no dotenv, no secrets files).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    tenants_table: str = Field(alias="TENANTS_TABLE", min_length=1)
    api_keys_table: str = Field(alias="API_KEYS_TABLE", min_length=1)
    usage_table: str = Field(alias="USAGE_TABLE", min_length=1)
    jobs_table: str = Field(alias="JOBS_TABLE", min_length=1)
    files_table: str = Field(alias="FILES_TABLE", min_length=1)
    batches_table: str = Field(alias="BATCHES_TABLE", min_length=1)
    data_bucket: str = Field(alias="DATA_BUCKET", min_length=1)
    requests_queue_url: str = Field(alias="REQUESTS_QUEUE_URL", min_length=1)
    batch_queue_url: str = Field(alias="BATCH_QUEUE_URL", min_length=1)
    batch_requests_queue_url: str = Field(alias="BATCH_REQUESTS_QUEUE_URL", min_length=1)
    requests_dead_letter_queue_url: str = Field(alias="REQUESTS_DEAD_LETTER_QUEUE_URL", min_length=1)
    batch_requests_dead_letter_queue_url: str = Field(alias="BATCH_REQUESTS_DEAD_LETTER_QUEUE_URL", min_length=1)
    endpoint_name: str = Field(alias="ENDPOINT_NAME", min_length=1)
    price_catalog_json: str | None = Field(default=None, alias="PRICE_CATALOG")
    reservation_retention_days: int = Field(default=400, alias="RESERVATION_RETENTION_DAYS", ge=1)
    transaction_attempts: int = Field(default=8, alias="ADMISSION_TRANSACTION_ATTEMPTS", ge=1)
    request_ttl_seconds: int = Field(default=3600, alias="REQUEST_TTL_SECONDS", ge=60)
    invocation_timeout_seconds: int = Field(default=900, alias="INVOCATION_TIMEOUT_SECONDS", ge=1)
    result_check_seconds: int = Field(default=300, alias="RESULT_CHECK_SECONDS", ge=1)
    orphan_grace_seconds: int = Field(default=900, alias="ORPHAN_GRACE_SECONDS", ge=30)  # sweep.ORPHAN_GRACE
    max_pack_size: int = Field(default=32, alias="MAX_PACK_SIZE", ge=1)
    max_model_len: int | None = Field(default=None, alias="MAX_MODEL_LEN", ge=1)  # the artifact's context window
    inline_body_bytes: int = Field(default=2048, alias="INLINE_BODY_BYTES", ge=0)  # jobs.INLINE_BODY_BYTES
    job_retention_days: int = Field(default=30, alias="JOB_RETENTION_DAYS", ge=1)
    default_wait_seconds: int = Field(default=20, alias="DEFAULT_WAIT_SECONDS", ge=0, le=25)
    expected_cold_start_seconds: int = Field(default=360, alias="EXPECTED_COLD_START_SECONDS", ge=0)
    scheduler_table: str = Field(alias="SCHEDULER_TABLE", min_length=1)
    auto_scaling: str = Field(default="Enabled", alias="AUTO_SCALING", pattern="^(Enabled|Disabled)$")
    scaling: str = Field(default="Scheduler", alias="SCALING", pattern="^(Scheduler|TargetTracking)$")
    idle_scale_in_minutes: float = Field(default=6, alias="IDLE_SCALE_IN_MINUTES", gt=0)
    warm_window_minutes: float = Field(default=30, alias="WARM_WINDOW_MINUTES", ge=0)
    deadline_margin_minutes: float = Field(default=30, alias="DEADLINE_MARGIN_MINUTES", ge=0)
    flex_window_minutes: int = Field(default=60, alias="FLEX_WINDOW_MINUTES", ge=1)
    instance_requests_per_second: float = Field(default=3.0, alias="INSTANCE_REQUESTS_PER_SECOND", gt=0)
    max_instance_count: int = Field(default=2, alias="MAX_INSTANCE_COUNT", ge=1)
    max_concurrent_invocations_per_instance: int = Field(
        default=4, alias="MAX_CONCURRENT_INVOCATIONS_PER_INSTANCE", ge=1
    )

    @property
    def scheduler_sets_capacity(self) -> bool:
        """The scheduler owns the instance count (else target tracking does, or nobody)."""
        return self.auto_scaling == "Enabled" and self.scaling == "Scheduler"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls.model_validate({name: value for name, value in env.items() if value != ""})
