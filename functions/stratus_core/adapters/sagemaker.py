"""The SageMaker asynchronous endpoint: invoked by the dispatcher, described for the API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from stratus_core.adapters import aws
from stratus_core.dispatch import EndpointBusy, Invocation
from stratus_core.endpoint_state import Capacity

logger = logging.getLogger(__name__)

NOT_READY = {
    "ModelNotReadyException",
    "ValidationError",  # e.g. the endpoint is being created or updated
}
"""Errors botocore does not retry after which the same call may succeed later. Throttling and 5xx
answers are retried by botocore's standard mode already; when they persist through its attempts
they count as busy too (`aws.retried_by_botocore`)."""


class AsyncEndpoint:
    def __init__(self, name: str, request_ttl_seconds: int, invocation_timeout_seconds: int) -> None:
        self._name = name
        self._ttl = request_ttl_seconds
        self._timeout = invocation_timeout_seconds

    def invoke(self, input_location: str, inference_id: str) -> Invocation:
        """Queue one pack. An endpoint at zero instances accepts it and scales out."""
        try:
            response = aws.sagemaker_runtime().invoke_endpoint_async(
                EndpointName=self._name,
                InputLocation=input_location,
                InferenceId=inference_id,
                ContentType="application/json",
                Accept="application/json",
                RequestTTLSeconds=self._ttl,
                InvocationTimeoutSeconds=self._timeout,
            )
        except ClientError as error:
            code = aws.error_code(error)
            if code in NOT_READY or aws.retried_by_botocore(error):
                raise EndpointBusy(code) from error
            raise
        return Invocation(
            inference_id=response.get("InferenceId", inference_id),
            output_location=response.get("OutputLocation"),
            failure_location=response.get("FailureLocation"),
        )


class SageMakerEndpointState:
    """`DescribeEndpoint`'s instance counts, cached `ttl_seconds` per process: a burst of requests
    waiting out a cold start costs one control-plane call, not one each."""

    def __init__(self, name: str, ttl_seconds: float = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Capacity | None] | None = None

    def capacity(self) -> Capacity | None:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._ttl:
                return self._cached[1]
            capacity = self._describe()
            self._cached = (now, capacity)
            return capacity

    def _describe(self) -> Capacity | None:
        try:
            response = aws.sagemaker().describe_endpoint(EndpointName=self._name)
        except ClientError as error:
            logger.warning("endpoint state unknown", extra={"reason": aws.error_code(error)})
            return None
        variants = response.get("ProductionVariants", [])
        changed = response.get("LastModifiedTime")
        if isinstance(changed, datetime) and changed.tzinfo is None:
            changed = changed.replace(tzinfo=UTC)
        return Capacity(
            instances=sum(int(v.get("CurrentInstanceCount", 0)) for v in variants),
            desired=sum(int(v.get("DesiredInstanceCount", 0)) for v in variants),
            changed_at=changed if isinstance(changed, datetime) else None,
            status=str(response.get("EndpointStatus", "InService")),
        )
