"""Lazy boto3 clients: one per service and process, created on first use.

Not at import time (moto must be active before a client exists) and not per invocation (a warm
Lambda reuses its connections). `AWS_ENDPOINT_URL` is honoured by boto3 itself.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def _client(service: str) -> Any:
    client = _clients.get(service)
    if client is None:
        with _lock:
            client = _clients.get(service)
            if client is None:
                import boto3

                client = boto3.session.Session().client(service)  # type: ignore[call-overload]
                _clients[service] = client
    return client


def dynamodb() -> DynamoDBClient:
    return _client("dynamodb")  # type: ignore[no-any-return]


def s3() -> S3Client:
    return _client("s3")  # type: ignore[no-any-return]


def reset_clients() -> None:
    """Drop every cached client (tests start a fresh moto per test)."""
    with _lock:
        _clients.clear()
