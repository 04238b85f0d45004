"""The SageMaker asynchronous endpoint, as the dispatcher sees it."""

from __future__ import annotations

from botocore.exceptions import ClientError

from stratus_core.adapters import aws
from stratus_core.dispatch import EndpointBusy, Invocation

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
