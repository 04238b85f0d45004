"""Lazy boto3 clients: one per service and process, created on first use.

Not at import time (moto must be active before a client exists) and not per invocation (a warm
Lambda reuses its connections). `AWS_ENDPOINT_URL` is honoured by boto3 itself.

Every client runs botocore's **standard** retry mode (boto3 defaults to *legacy* unless told):
throttling codes, transient codes and 5xx answers are retried with exponential backoff and jitter,
3 attempts in all, inside the call. What still fails after that reaches our code, which decides
whether the work is worth trying again later (`retried_by_botocore`). Timeouts are bounded so that
a stalled connection fails inside the function's own timeout instead of at it.
"""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient
    from mypy_boto3_sqs import SQSClient

CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 15
MAX_ATTEMPTS = 3

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def client_config() -> Any:
    """The botocore `Config` every client is made with."""
    from botocore.config import Config

    return Config(
        # total_max_attempts counts the first attempt; botocore's `max_attempts` key counts only the
        # retries (it sent "amz-sdk-request: attempt=1; max=4" for max_attempts=3)
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
    )


def _client(service: str, endpoint_url: str | None = None) -> Any:
    client = _clients.get(service)
    if client is None:
        with _lock:
            client = _clients.get(service)
            if client is None:
                import boto3

                session = boto3.session.Session()
                client = session.client(service, endpoint_url=endpoint_url, config=client_config())  # type: ignore[call-overload]
                _clients[service] = client
    return client


def dynamodb() -> DynamoDBClient:
    return _client("dynamodb")  # type: ignore[no-any-return]


def s3() -> S3Client:
    return _client("s3")  # type: ignore[no-any-return]


def sqs() -> SQSClient:
    return _client("sqs")  # type: ignore[no-any-return]


def sagemaker_runtime() -> SageMakerRuntimeClient:
    """`SAGEMAKER_RUNTIME_ENDPOINT_URL` points it elsewhere (the local cloud's async endpoint)."""
    url = os.environ.get("SAGEMAKER_RUNTIME_ENDPOINT_URL") or None
    return _client("sagemaker-runtime", url)  # type: ignore[no-any-return]


def sagemaker() -> SageMakerClient:
    """The control plane (DescribeEndpoint). `SAGEMAKER_ENDPOINT_URL` points it at the local cloud."""
    url = os.environ.get("SAGEMAKER_ENDPOINT_URL") or None
    return _client("sagemaker", url)  # type: ignore[no-any-return]


def application_autoscaling() -> Any:
    """The scheduler's capacity control. `APPLICATION_AUTOSCALING_ENDPOINT_URL` points it at the
    local cloud's endpoint, which obeys the scalable target's range as SageMaker does."""
    url = os.environ.get("APPLICATION_AUTOSCALING_ENDPOINT_URL") or None
    return _client("application-autoscaling", url)


def reset_clients() -> None:
    """Drop every cached client (tests start a fresh moto per test)."""
    with _lock:
        _clients.clear()


def error_code(error: Exception) -> str:
    """The service's error code of a `ClientError` (`""` for anything else)."""
    response = getattr(error, "response", {})
    return str(response.get("Error", {}).get("Code", ""))


def retried_by_botocore(error: ClientError) -> bool:
    """Whether botocore's standard mode treats this error as retryable (throttling, transient codes,
    5xx). Reaching our code, it has already been retried `MAX_ATTEMPTS` times: the condition is not
    momentary, but the same call may well succeed minutes later."""
    from botocore.retries.standard import RetryContext, ThrottledRetryableChecker, TransientRetryableChecker

    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    context = RetryContext(
        attempt_number=1,
        parsed_response=error.response,
        http_response=SimpleNamespace(status_code=status) if status else None,
    )
    return bool(ThrottledRetryableChecker().is_retryable(context) or TransientRetryableChecker().is_retryable(context))
