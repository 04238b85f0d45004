"""The API side of batches: create one from an uploaded file, read, list and cancel them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from stratus_core.batches.models import (
    COMPLETION_WINDOW,
    Batch,
    BatchCreate,
    BatchList,
    BatchMessage,
    BatchPage,
    BatchStatus,
    StoredBatch,
    new_batch_id,
)
from stratus_core.clock import utcnow
from stratus_core.errors import Conflict, InvalidRequest, NotFound
from stratus_core.files import FileService


class BatchStore(Protocol):
    def create(self, batch: StoredBatch) -> None: ...  # raises Conflict when it exists

    def get(self, tenant_id: str, batch_id: str) -> StoredBatch | None: ...

    def list(self, tenant_id: str, limit: int, after: str | None) -> list[StoredBatch]: ...

    def page_all(self, limit: int, after: tuple[str, str] | None) -> BatchPage:
        """Up to `limit` batches of every tenant after (tenant id, batch id) `after`, in the store's
        order, reading no more than that."""
        ...

    def transition(
        self, batch: StoredBatch, to: BatchStatus, allowed_from: set[BatchStatus], sets: dict[str, Any]
    ) -> bool: ...


class BatchQueue(Protocol):
    def send(self, message: BatchMessage) -> None: ...


class BatchService:
    def __init__(
        self,
        batches: BatchStore,
        files: FileService,
        queue: BatchQueue,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._batches = batches
        self._files = files
        self._queue = queue
        self._clock = clock

    def create(self, tenant_id: str, request: BatchCreate, batch_id: str | None = None) -> Batch:
        """Create the batch and queue its start. With `batch_id` given, a repeat returns the first."""
        stored_file = self._files.get(tenant_id, request.input_file_id)
        if stored_file.purpose != "batch":
            raise InvalidRequest("the input file's purpose must be 'batch'", param="input_file_id")
        if stored_file.status != "processed":
            raise InvalidRequest("the input file has not been uploaded yet", param="input_file_id")
        now = self._clock()
        batch = StoredBatch(
            id=batch_id or new_batch_id(),
            tenant_id=tenant_id,
            endpoint=request.endpoint,
            input_file_id=request.input_file_id,
            status=BatchStatus.VALIDATING,
            created_at=int(now.timestamp()),
            expires_at=int((now + COMPLETION_WINDOW).timestamp()),
            metadata=request.metadata,
        )
        try:
            self._batches.create(batch)
        except Conflict:
            if batch_id is None:
                raise
            existing = self.get(tenant_id, batch_id)
            if existing.status is BatchStatus.VALIDATING:  # the first attempt may have stopped before queueing
                self._queue.send(BatchMessage(action="start", tenant_id=tenant_id, batch_id=batch_id))
            return existing.view()
        self._queue.send(BatchMessage(action="start", tenant_id=tenant_id, batch_id=batch.id))
        return batch.view()

    def get(self, tenant_id: str, batch_id: str) -> StoredBatch:
        batch = self._batches.get(tenant_id, batch_id)
        if batch is None:
            raise NotFound("batch", batch_id)
        return batch

    def list(self, tenant_id: str, limit: int, after: str | None) -> BatchList:
        batches = self._batches.list(tenant_id, limit + 1, after)
        page = [batch.view() for batch in batches[:limit]]
        return BatchList(
            data=page,
            first_id=page[0].id if page else None,
            last_id=page[-1].id if page else None,
            has_more=len(batches) > limit,
        )

    def cancel(self, tenant_id: str, batch_id: str) -> Batch:
        batch = self.get(tenant_id, batch_id)
        now = int(self._clock().timestamp())
        allowed = {BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS}
        if not self._batches.transition(batch, BatchStatus.CANCELLING, allowed, {"cancelling_at": now}):
            current = self.get(tenant_id, batch_id)
            if current.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
                return current.view()
            raise Conflict(f"batch {batch_id} is {current.status.value} and cannot be cancelled")
        self._queue.send(BatchMessage(action="cancel", tenant_id=tenant_id, batch_id=batch_id))
        return self.get(tenant_id, batch_id).view()
