"""Settlement's store: each terminal transition, written once.

**A reservation held on the tenant item** (interactive and flex requests): two conditional writes,
in this order: the job moves to its terminal status (with its answer and usage), then the tenant
item settles or releases the reservation (`DynamoAdmissionStore.settle_held`). Each is idempotent
on its own (the job's status, the held entry); the job is the record of how it ended, so a
reservation still held after its job ended (a crash, or a throttle, between the two writes) is
settled from the job by whoever comes next: the redelivered notification (`Settlement.reconcile`)
or the sweeper (`Settlement.release_orphans`).

**A `RESV#` reservation** (batch lines, and the previous layout's): one transaction over three
tables: the reservation settled or released with the counters it moved and the usage for billing
(`admission_store` builds those items, conditional on the reservation being `reserved`), the job
moved to its terminal status (`job_store`, conditional on the job not being terminal), and the
batch's request counts and token totals when the job belongs to a batch. Either every item is
written or none: a duplicate or late transition fails a condition and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.admission_store import DynamoAdmissionStore
from stratus_core.adapters.dynamo.codec import to_attr
from stratus_core.adapters.dynamo.job_store import DynamoJobStore, job_item, result_attribute
from stratus_core.adapters.dynamo.transactions import Cancelled, conditionally, transact
from stratus_core.admission import Reservation
from stratus_core.batches.chunks import lines_of
from stratus_core.contract import Usage
from stratus_core.jobs import Job
from stratus_core.settlement import Release, Settle, TerminalChange

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

logger = logging.getLogger(__name__)


def transact_correcting_month(items: Callable[[bool], dict[str, TransactWriteItemTypeDef]]) -> Cancelled | None:
    """`transact(items(True))`; when only the tenant item's condition failed (it counts a later month
    now: nothing to correct; tenants are never deleted), once more without the month's correction."""
    cancelled = transact(items(True))
    if cancelled is not None and cancelled.failed_names == {"tenant"}:
        cancelled = transact(items(False))
    return cancelled


class DynamoLedger:
    def __init__(self, jobs: DynamoJobStore, reservations: DynamoAdmissionStore, batches_table: str) -> None:
        self._jobs = jobs
        self._reservations = reservations
        self._batches = batches_table

    def finish(self, change: TerminalChange) -> bool:
        job, reservation = change.job, change.reservation
        sets: dict[str, Any] = {}
        usage: Usage | None = None
        if isinstance(change.billing, Settle) and reservation is not None:
            usage = change.billing.usage
            sets = {"usage": to_attr(usage.model_dump())}
            if change.result is not None:  # a chunk's answers stay in its pack's output file
                sets["result_z"] = result_attribute(change.result)
        if change.error is not None:
            sets["error"] = to_attr(change.error.model_dump())
        if change.output_location is not None:
            sets["output_location"] = {"S": change.output_location}
        job_update = self._jobs.terminal_item(job, change.status, change.at, sets)
        if reservation is not None and reservation.layout == "held" and job.batch_id is None:
            update: Any = job_update["Update"]
            if conditionally(lambda: aws.dynamodb().update_item(**update)) is None:
                return False  # ended before: `Settlement.reconcile` settles a reservation left held
            if change.billing is not None:
                self._reservations.settle_held(reservation, change.billing, change.at)
            return True

        def items(correct_month: bool) -> dict[str, TransactWriteItemTypeDef]:
            built = self._reservation_items(reservation, change.billing, change.at, correct_month)
            built["job"] = job_update
            if job.batch_id is not None:
                built["batch"] = self._batch_counter(job, change.lines, usage)
            return built

        cancelled = transact_correcting_month(items)
        if cancelled is None:
            return True
        if reservation is not None and cancelled.failed("job") != cancelled.failed("reservation"):
            logger.error("job and reservation disagree", extra={"job_id": job.job_id, "reasons": cancelled.reasons})
        return False

    def _reservation_items(
        self, reservation: Reservation | None, billing: Settle | Release | None, at: datetime, correct_month: bool
    ) -> dict[str, TransactWriteItemTypeDef]:
        """The items that settle or release a `RESV#` reservation (none without one)."""
        if reservation is None or billing is None:
            return {}
        if isinstance(billing, Settle):
            return self._reservations.settle_items(
                reservation, billing.usage, billing.cost, at, correct_month=correct_month, requests=billing.requests
            )
        return self._reservations.release_items(reservation, billing.reason, at, correct_month=correct_month)

    def settle_reservation(self, reservation: Reservation, billing: Settle | Release, at: datetime) -> bool:
        """Settle or release a reservation on its own (its job ended already, or never existed)."""
        if reservation.layout == "held":
            return self._reservations.settle_held(reservation, billing, at)

        def items(correct_month: bool) -> dict[str, TransactWriteItemTypeDef]:
            return self._reservation_items(reservation, billing, at, correct_month)

        return transact_correcting_month(items) is None

    def record_rejected(self, job: Job) -> bool:
        put: TransactWriteItemTypeDef = {
            "Put": {
                "TableName": self._jobs.table,
                "Item": job_item(job, self._jobs.retention, self._jobs.result_check),
                "ConditionExpression": "attribute_not_exists(job_id)",
            }
        }
        items = {"job": put}
        if job.batch_id is not None:
            items["batch"] = self._batch_counter(job, (0, lines_of(job.job_id)), None)
        return transact(items) is None

    def release(self, reservation: Reservation, reason: str, at: datetime) -> bool:
        return self.settle_reservation(reservation, Release(reason), at)

    def _batch_counter(self, job: Job, lines: tuple[int, int], usage: Usage | None) -> TransactWriteItemTypeDef:
        """The batch's request counts, (completed, failed), and token totals, moved in the same
        transaction as the job: once per job, a line's or a whole chunk's."""
        counts = {outcome: n for outcome, n in zip(("completed", "failed"), lines, strict=True) if n}
        values: dict[str, Any] = {f":{outcome}": {"N": str(n)} for outcome, n in counts.items()}
        expression = "ADD " + ", ".join(f"request_counts.{outcome} :{outcome}" for outcome in counts)
        names: dict[str, str] = {}
        if usage is not None:
            expression += ", #usage.input_tokens :in, #usage.output_tokens :out, #usage.total_tokens :total"
            values.update(
                {
                    ":in": {"N": str(usage.prompt_tokens)},
                    ":out": {"N": str(usage.completion_tokens)},
                    ":total": {"N": str(usage.total_tokens)},
                }
            )
            names["#usage"] = "usage"
        update: Any = {
            "TableName": self._batches,
            "Key": {"tenant_id": {"S": job.tenant_id}, "batch_id": {"S": job.batch_id or ""}},
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(batch_id)",
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        return {"Update": update}
