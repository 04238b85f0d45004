"""Terminal job transitions, each in one transaction with the job's reservation.

`complete` = job → completed + settle the reservation with the server's counts;
`finish_unbilled` = job → failed / expired / cancelled + release the reservation.
The reservation item comes first and is conditional on `reserved`; the job item is conditional
on the job not being terminal. Whichever actor wins (results function, sweeper, cancel, DLQ
handler) does both; every other attempt, duplicate or late, changes nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from stratus_core import aws
from stratus_core.admission import ReservationState, TokenUsage
from stratus_core.contract import Choice, Usage
from stratus_core.dynamo.admission_store import DynamoAdmissionStore
from stratus_core.dynamo.codec import cancellation_codes, error_code, to_attr
from stratus_core.dynamo.job_store import DynamoJobStore, job_item
from stratus_core.jobs import Job, JobError, JobStatus
from stratus_core.pricing import PriceCatalog

logger = logging.getLogger(__name__)


class DynamoLedger:
    def __init__(
        self,
        jobs: DynamoJobStore,
        reservations: DynamoAdmissionStore,
        catalog: PriceCatalog,
        batches_table: str | None = None,
    ) -> None:
        self._jobs = jobs
        self._reservations = reservations
        self._catalog = catalog
        self._batches = batches_table

    def complete(self, job: Job, choices: list[Choice], usage: Usage, result: dict[str, Any], at: datetime) -> bool:
        reservation = self._reservations.get(job.tenant_id, job.job_id)
        if reservation is None or reservation.state is not ReservationState.RESERVED:
            # released already (the API failed after admitting it, as its client was told): nothing to bill
            error = JobError(code="not_admitted", message="the request was released before its result arrived")
            return self.finish_unbilled(job, JobStatus.FAILED, error, at)
        tokens = TokenUsage.of(usage.prompt_tokens, usage.completion_tokens)
        cost = self._catalog.cost(reservation.model, tokens.prompt_tokens, tokens.completion_tokens)
        items = self._reservations.settle_items(reservation, tokens, cost, at)
        job_sets = {"result_json": {"S": json.dumps(result)}, "usage": to_attr(tokens.model_dump())}
        items.append(self._jobs.terminal_item(job, JobStatus.COMPLETED, at, job_sets))
        items.extend(self._batch_counter(job, "completed", usage))
        return self._run(items, job)

    def finish_unbilled(self, job: Job, status: JobStatus, error: JobError, at: datetime) -> bool:
        if not status.is_terminal or status is JobStatus.COMPLETED:
            raise ValueError(f"{status} is not an unbilled terminal status")
        reservation = self._reservations.get(job.tenant_id, job.job_id)
        job_item = self._jobs.terminal_item(job, status, at, {"error": to_attr(error.model_dump())})
        if reservation is None or reservation.state is not ReservationState.RESERVED:
            items = [job_item]  # nothing left to release: only the job must still end
        else:
            items = [*self._reservations.release_items(reservation, f"{status.value}: {error.code}", at), job_item]
        items.extend(self._batch_counter(job, "failed", None))
        return self._run(items, job)

    def reject(self, job: Job, error: JobError) -> bool:
        """Record a batch request refused at admission: a job born failed, counted once in its batch."""
        item = job_item(job.model_copy(update={"status": JobStatus.FAILED, "error": error}), self._jobs.retention)
        put = {
            "Put": {"TableName": self._jobs.table, "Item": item, "ConditionExpression": "attribute_not_exists(job_id)"}
        }
        return self._run([put, *self._batch_counter(job, "failed", None)], job)

    def _batch_counter(self, job: Job, outcome: str, usage: Usage | None) -> list[dict[str, Any]]:
        """The batch's request count (and token totals), moved in the same transaction as the job."""
        if job.batch_id is None or self._batches is None:
            return []
        values: dict[str, Any] = {":one": {"N": "1"}}
        expression = f"ADD request_counts.{outcome} :one"
        if usage is not None:
            expression += ", #usage.input_tokens :in, #usage.output_tokens :out, #usage.total_tokens :total"
            values.update(
                {
                    ":in": {"N": str(usage.prompt_tokens)},
                    ":out": {"N": str(usage.completion_tokens)},
                    ":total": {"N": str(usage.total_tokens)},
                }
            )
        update: dict[str, Any] = {
            "TableName": self._batches,
            "Key": {"tenant_id": {"S": job.tenant_id}, "batch_id": {"S": job.batch_id}},
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(batch_id)",
            "ExpressionAttributeValues": values,
        }
        if usage is not None:
            update["ExpressionAttributeNames"] = {"#usage": "usage"}
        return [{"Update": update}]

    @staticmethod
    def _run(items: list[dict[str, Any]], job: Job) -> bool:
        try:
            aws.dynamodb().transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            codes = cancellation_codes(error)
            if "TransactionConflict" in codes:
                raise  # another writer on the same job right now: let the caller's retry decide
            if "ConditionalCheckFailed" in codes[1:] and codes[0] != "ConditionalCheckFailed":
                logger.error("job and reservation disagree", extra={"job_id": job.job_id, "codes": codes})
            return False
        return True
