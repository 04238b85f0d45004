"""The SageMaker asynchronous endpoint, as the dispatcher sees it."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from stratus_core import aws
from stratus_core.dynamo.codec import error_code

# Errors after which the same call may succeed later: the message goes back to the queue.
TRANSIENT = {
    "ThrottlingException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalDependencyException",
    "ModelNotReadyException",
    "ValidationError",  # e.g. the endpoint is being created or updated
}


class EndpointBusy(Exception):
    """The endpoint refused for now (throttled, unavailable); retry later."""


@dataclass(frozen=True)
class Invocation:
    inference_id: str
    output_location: str | None
    failure_location: str | None


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
            if error_code(error) in TRANSIENT:
                raise EndpointBusy(error_code(error)) from error
            raise
        return Invocation(
            inference_id=response.get("InferenceId", inference_id),
            output_location=response.get("OutputLocation"),
            failure_location=response.get("FailureLocation"),
        )
