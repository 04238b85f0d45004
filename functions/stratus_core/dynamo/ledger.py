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
from stratus_core.dynamo.job_store import DynamoJobStore
from stratus_core.jobs import Job, JobError, JobStatus
from stratus_core.pricing import PriceCatalog

logger = logging.getLogger(__name__)


class DynamoLedger:
    def __init__(self, jobs: DynamoJobStore, reservations: DynamoAdmissionStore, catalog: PriceCatalog) -> None:
        self._jobs = jobs
        self._reservations = reservations
        self._catalog = catalog

    def complete(self, job: Job, choices: list[Choice], usage: Usage, result: dict[str, Any], at: datetime) -> bool:
        reservation = self._reservations.get(job.tenant_id, job.job_id)
        if reservation is None or reservation.state is not ReservationState.RESERVED:
            return False
        tokens = TokenUsage.of(usage.prompt_tokens, usage.completion_tokens)
        cost = self._catalog.cost(reservation.model, tokens.prompt_tokens, tokens.completion_tokens)
        items = self._reservations.settle_items(reservation, tokens, cost, at)
        job_sets = {"result_json": {"S": json.dumps(result)}, "usage": to_attr(tokens.model_dump())}
        items.append(self._jobs.terminal_item(job, JobStatus.COMPLETED, at, job_sets))
        return self._run(items, job)

    def finish_unbilled(self, job: Job, status: JobStatus, error: JobError, at: datetime) -> bool:
        if not status.is_terminal or status is JobStatus.COMPLETED:
            raise ValueError(f"{status} is not an unbilled terminal status")
        reservation = self._reservations.get(job.tenant_id, job.job_id)
        if reservation is None or reservation.state is not ReservationState.RESERVED:
            return False
        items = self._reservations.release_items(reservation, f"{status.value}: {error.code}", at)
        items.append(self._jobs.terminal_item(job, status, at, {"error": to_attr(error.model_dump())}))
        return self._run(items, job)

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
            if codes[-1] == "ConditionalCheckFailed" and codes[0] != "ConditionalCheckFailed":
                logger.error("job is terminal but its reservation is not", extra={"job_id": job.job_id})
            return False
        return True
