""" "Was that the batch's last request?": asked by settlement after every batch job that ends."""

from __future__ import annotations

from stratus_core.batches.models import BatchMessage, BatchStatus
from stratus_core.batches.service import BatchQueue, BatchStore


class BatchProgress:
    def __init__(self, batches: BatchStore, queue: BatchQueue) -> None:
        self._batches = batches
        self._queue = queue

    def maybe_finalize(self, tenant_id: str, batch_id: str) -> bool:
        """Ask the batch function to finalize once every request has an outcome (the counts move
        in the same transaction as each job, so the last job to end sees them complete)."""
        batch = self._batches.get(tenant_id, batch_id)
        if batch is None or batch.status not in (BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING):
            return False
        counts = batch.request_counts
        if counts.total == 0 or counts.completed + counts.failed < counts.total:
            return False
        self._queue.send(BatchMessage(action="finalize", tenant_id=tenant_id, batch_id=batch_id))
        return True
