"""The batch objects the API returns and stores, and the batch queue's message."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

BatchEndpoint = Literal["/v1/chat/completions", "/v1/completions"]
MAX_LINES = 10_000
MAX_ERRORS_LISTED = 100
COMPLETION_WINDOW = timedelta(hours=24)


class BatchStatus(StrEnum):
    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED)


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class Batch(BaseModel):
    """The batch object as OpenAI's API returns it."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: BatchEndpoint
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: Literal["24h"] = "24h"
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    usage: BatchUsage = Field(default_factory=BatchUsage)
    metadata: dict[str, str] | None = None


class StoredBatch(Batch):
    tenant_id: str
    chunk_lines: int | None = None
    """Lines per chunk (`chunks.py`), fixed when the batch starts; None: a batch started before
    chunks, one job per line."""

    def view(self) -> Batch:
        return Batch(**self.model_dump(exclude={"tenant_id", "chunk_lines"}))


@dataclass(frozen=True)
class BatchPage:
    """Up to a page of batches of every tenant, in the store's own order (a `Scan`'s)."""

    batches: list[StoredBatch]
    last_read: tuple[str, str] | None
    """The (tenant id, batch id) of the page's last batch in the store's order: the next page is after it."""
    has_more: bool
    """Whether the store may hold batches after `last_read` (the page after a full last one is empty)."""


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: BatchEndpoint
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("metadata holds up to 16 pairs, keys up to 64 and values up to 512 characters")
        return value


class BatchMessage(BaseModel):
    """The batch queue's work items (version 1): start, finalize or cancel one batch."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    action: Literal["start", "finalize", "cancel"]
    tenant_id: str
    batch_id: str


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)
