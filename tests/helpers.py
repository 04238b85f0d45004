"""Plain helpers the tests import (fixtures live in the conftest files)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import boto3

from stratus_core.adapters.dynamo.job_store import job_key
from stratus_core.adapters.dynamo.sparse_index import shard_of
from stratus_core.contract import PackedRequest, SamplingParams, Usage
from stratus_core.jobs import Job, new_job_id
from stratus_core.keys import IssuedKey, Principal, Scope
from stratus_core.services import Services

logger = logging.getLogger(__name__)
T = TypeVar("T")
SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event"}


class FakeContext:
    function_name = "stratus-test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stratus-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"


@dataclass
class ScheduledDrain:
    """A function that drains queues on its schedule (the dead-letter queues' `request_failures`):
    `drain()` is one scheduled invocation; it returns how many messages that run handled."""

    handler: Callable[[dict[str, Any], Any], Any]

    def drain(self) -> int:
        answer = invoke_scheduled(self.handler)
        return int(answer["handled"]) if answer is not None else 0


def invoke_scheduled(handler: Callable[[dict[str, Any], Any], T]) -> T | None:
    """One invocation of a function on a schedule (EventBridge → Lambda), as Lambda makes it: a
    handler that raises has failed this invocation (logged; on AWS it counts in the function's
    `Errors`, which the error alarm watches), and the schedule invokes it again next time; None then.
    Every scheduled function is driven through this, as every SQS-triggered one is through
    `SqsEventSource` (a handler that raises returns its batch to the queue)."""
    try:
        return handler(dict(SCHEDULED_EVENT), FakeContext())
    except Exception:  # any error fails the invocation, as on AWS; the schedule runs it again
        logger.exception("scheduled invocation failed; its schedule invokes it again")
        return None


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes = b""


ADMIN = Principal(tenant_id="operators", key_id="key_00000000000000aa", scopes=frozenset({Scope.ADMIN, Scope.USAGE}))


def principal_of(key: IssuedKey) -> Principal:
    return Principal(tenant_id=key.tenant_id, key_id=key.key_id, scopes=frozenset(key.scopes))


BOUNDARY = "----stratus-test-boundary"


def multipart_file(filename: str, content: bytes) -> tuple[bytes, dict[str, str]]:
    """A `POST /v1/files` body (purpose batch) and its content-type header."""
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def upload(
    call_api: Callable[..., ApiResponse],
    caller: Principal,
    content: bytes,
    filename: str = "input.jsonl",
    headers: dict[str, str] | None = None,
) -> ApiResponse:
    """Upload a batch input file through the API function (base64, as API Gateway passes binary);
    each call builds its multipart body anew, with a new boundary, as a client's retry does."""
    body, content_type = multipart_file(filename, content)
    return call_api(
        "POST",
        "/v1/files",
        principal=caller,
        raw_body=base64.b64encode(body).decode(),
        base64_encoded=True,
        headers={**content_type, **(headers or {})},
    )


def completion_request(tenant_id: str, model: str = "smollm2-135m-instruct") -> PackedRequest:
    """A small text completion for `tenant_id`, under a new job id."""
    return PackedRequest(
        job_id=new_job_id(),
        tenant_id=tenant_id,
        kind="completion",
        model=model,
        prompt="hello",
        params=SamplingParams(max_tokens=16),
    )


def bill(
    tenant_id: str,
    prompt_tokens: int,
    completion_tokens: int,
    *,
    at: datetime | None = None,
    model: str = "smollm2-135m-instruct",
) -> Job:
    """A request admitted through the job intake (at `at`, or now) and completed through settlement
    with the model server's counts: what a real request leaves in the usage table."""
    services = Services(clock=lambda: at) if at is not None else Services()
    job = services.intake.accept(completion_request(tenant_id, model))
    assert services.settlement.complete(job, Usage.of(prompt_tokens, completion_tokens), {"object": "text_completion"})
    return job


def as_previous_layout(
    jobs_table: str, tenant_id: str, job_id: str, *, shard: str | None = None, recheck_at: datetime | None = None
) -> None:
    """Rewrite a job's item as the version before `SweepJobsIndex` wrote it: `active` (its shard,
    or the one given) instead of `sweep` and `sweep_at`, and `recheck_at` once dispatched."""
    sets = "SET active = :shard" + (", recheck_at = :recheck" if recheck_at else "")
    values = {":shard": {"S": shard or shard_of(job_id)}}
    if recheck_at:
        values[":recheck"] = {"S": recheck_at.isoformat()}
    boto3.client("dynamodb").update_item(
        TableName=jobs_table,
        Key=job_key(tenant_id, job_id),
        UpdateExpression=sets + " REMOVE sweep, sweep_at",
        ExpressionAttributeValues=values,
    )
