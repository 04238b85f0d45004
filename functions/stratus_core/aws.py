"""Lazy boto3 clients: one per service and process, created on first use.

Not at import time (moto must be active before a client exists) and not per invocation (a warm
Lambda reuses its connections). `AWS_ENDPOINT_URL` is honoured by boto3 itself.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient
    from mypy_boto3_sqs import SQSClient

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def _client(service: str, endpoint_url: str | None = None) -> Any:
    client = _clients.get(service)
    if client is None:
        with _lock:
            client = _clients.get(service)
            if client is None:
                import boto3

                session = boto3.session.Session()
                client = session.client(service, endpoint_url=endpoint_url)  # type: ignore[call-overload]
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


def reset_clients() -> None:
    """Drop every cached client (tests start a fresh moto per test)."""
    with _lock:
        _clients.clear()
