"""Batches submitted through the batch queue by trusted producers inside the account.

The message names the tenant (checked against the tenants table: it must exist and be active)
and either an S3 JSONL object under the data bucket's `submissions/` prefix or up to 1,000
inline requests. It becomes the same file and batch objects as `POST /v1/files` +
`POST /v1/batches`, visible to the tenant through the API. `submission_id` makes a redelivered
message return the batch the first delivery made.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stratus_core.batches.models import Batch, BatchCreate, BatchEndpoint
from stratus_core.batches.service import BatchService
from stratus_core.errors import InvalidRequest, NotFound, TenantSuspended
from stratus_core.files import FileService
from stratus_core.tenants import TenantService

MAX_INLINE = 1000
SUBMISSIONS_PREFIX = "submissions/"


class InlineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom_id: str = Field(min_length=1, max_length=512)
    body: dict[str, Any]


class BatchSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    action: Literal["submit"] = "submit"
    submission_id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(min_length=1)
    endpoint: BatchEndpoint
    completion_window: Literal["24h"] = "24h"
    input_s3_uri: str | None = None
    requests: list[InlineRequest] | None = Field(default=None, min_length=1, max_length=MAX_INLINE)
    metadata: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> BatchSubmission:
        if (self.input_s3_uri is None) == (self.requests is None):
            raise ValueError("give input_s3_uri or requests, not both")
        return self


class SubmissionInputs(Protocol):
    """The data bucket, where a producer's JSONL input waits under `submissions/`."""

    bucket: str

    def get_bytes(self, key: str) -> bytes | None: ...


class SubmissionService:
    def __init__(
        self, tenants: TenantService, files: FileService, batches: BatchService, inputs: SubmissionInputs
    ) -> None:
        self._tenants = tenants
        self._files = files
        self._batches = batches
        self._inputs = inputs

    def submit(self, submission: BatchSubmission) -> Batch:
        tenant = self._tenants.get(submission.tenant_id)  # NotFound for an unknown tenant
        if not tenant.is_active:
            raise TenantSuspended(tenant.tenant_id)
        content = self._content(submission)
        file = self._files.create(tenant.tenant_id, f"{submission.submission_id}.jsonl", "batch", content)
        digest = hashlib.sha256(f"{tenant.tenant_id}/{submission.submission_id}".encode()).hexdigest()
        request = BatchCreate(
            input_file_id=file.id,
            endpoint=submission.endpoint,
            completion_window=submission.completion_window,
            metadata=submission.metadata,
        )
        return self._batches.create(tenant.tenant_id, request, batch_id="batch_" + digest[:24])

    def _content(self, submission: BatchSubmission) -> bytes:
        if submission.requests is not None:
            lines = [
                {"custom_id": r.custom_id, "method": "POST", "url": submission.endpoint, "body": r.body}
                for r in submission.requests
            ]
            return "".join(json.dumps(line) + "\n" for line in lines).encode()
        uri = urlparse(submission.input_s3_uri or "")
        bucket, key = uri.netloc, uri.path.lstrip("/")
        if uri.scheme != "s3" or bucket != self._inputs.bucket or not key.startswith(SUBMISSIONS_PREFIX) or ".." in key:
            raise InvalidRequest(
                f"inputs must be under s3://{self._inputs.bucket}/{SUBMISSIONS_PREFIX}", param="input_s3_uri"
            )
        data = self._inputs.get_bytes(key)
        if data is None:
            raise NotFound("submission input", submission.input_s3_uri or "")
        return data
