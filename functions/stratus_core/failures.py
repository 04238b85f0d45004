"""Why a request produced no completion, and how each reason is told to its client: one table.

A job's `error.code` is one of these. The API answers a client that waited with the status and
type listed here (`http/errors.job_failure`), and a batch's error file carries the same status and
type for the same code (`batches/output.py`), so a request fails the same way on both paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus


@dataclass(frozen=True)
class FailureKind:
    status: HTTPStatus
    type: str  # OpenAI's error `type`


BAD_INPUT = FailureKind(HTTPStatus.BAD_REQUEST, "invalid_request_error")
MODEL_FAILED = FailureKind(HTTPStatus.BAD_GATEWAY, "server_error")
INTERNAL = FailureKind(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error")

FAILURES: dict[str, FailureKind] = {
    # the request itself: the model server refused it
    "invalid_request": BAD_INPUT,
    "context_length_exceeded": BAD_INPUT,
    # a batch line refused at admission: the tenant's monthly quota (as the API answers it)
    "insufficient_quota": FailureKind(HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota"),
    "model_not_found": FailureKind(HTTPStatus.NOT_FOUND, "invalid_request_error"),
    # the model or the endpoint failed
    "inference_failed": MODEL_FAILED,
    "dispatch_failed": FailureKind(HTTPStatus.SERVICE_UNAVAILABLE, "server_error"),
    # the request's own end
    "expired": FailureKind(HTTPStatus.GATEWAY_TIMEOUT, "server_error"),
    "batch_cancelled": FailureKind(HTTPStatus.CONFLICT, "invalid_request_error"),
    "cancelled": FailureKind(HTTPStatus.CONFLICT, "invalid_request_error"),
    # Stratus lost the request (each one released, nothing billed)
    "request_missing": INTERNAL,
    "enqueue_failed": INTERNAL,
    "not_admitted": INTERNAL,
    # a batch chunk whose lines no month room admitted (each line's own reason is in its body)
    "no_line_admitted": FailureKind(HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota"),
    # a batch chunk's answers were billed, then its output left the bucket before the batch closed
    "result_missing": INTERNAL,
}


def failure_kind(code: str) -> FailureKind:
    """The status and type of a failure code; an unknown code is the model's failure."""
    if code.startswith("invalid"):
        return BAD_INPUT
    return FAILURES.get(code, MODEL_FAILED)
