"""A fake SageMaker async endpoint for tests: the same S3-in / S3-out / SNS contract, no model.

It stands in for the `sagemaker-runtime` client (moto's `invoke_endpoint_async` is a stub that
writes nowhere and notifies no one). Production code does not know it exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stratus_core.adapters.s3_objects import split_uri
from stratus_core.contract import Choice, InferencePack, JobError, PackedRequest, PackResult, RequestResult, Usage


def echo(request: PackedRequest) -> RequestResult:
    """Deterministic 'generation': echoes the last message, counts whitespace-separated words."""
    text = request.messages[-1].content if request.messages else request.prompt or ""
    if "FAIL_ME" in text:
        return RequestResult(
            job_id=request.job_id,
            tenant_id=request.tenant_id,
            error=JobError(code="invalid_request", message="the model refused this input"),
        )
    words = ("echo: " + text).split()
    completion = words[: request.params.max_tokens]
    prompt_tokens = sum(len(m.content.split()) + 4 for m in request.messages) if request.messages else len(words) - 1
    return RequestResult(
        job_id=request.job_id,
        tenant_id=request.tenant_id,
        choices=[Choice(text=" ".join(completion), finish_reason="length" if len(completion) < len(words) else "stop")],
        usage=Usage(
            prompt_tokens=prompt_tokens, completion_tokens=len(completion), total_tokens=prompt_tokens + len(completion)
        ),
    )


@dataclass
class Invocation:
    input_location: str
    inference_id: str
    output_location: str
    failure_location: str
    params: dict[str, Any]


@dataclass
class FakeAsyncEndpoint:
    bucket: str
    success_topic: str
    error_topic: str
    load_event: Callable[[str], dict[str, Any]]
    throttle_next: int = 0
    fail_packs: bool = False
    notify: bool = True
    engine: Callable[[PackedRequest], RequestResult] = echo
    pending: list[Invocation] = field(default_factory=list)
    calls: list[Invocation] = field(default_factory=list)

    def invoke_endpoint_async(self, **params: Any) -> dict[str, Any]:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "InvokeEndpointAsync"
            )
        name = uuid.uuid4()
        invocation = Invocation(
            input_location=params["InputLocation"],
            inference_id=params["InferenceId"],
            output_location=f"s3://{self.bucket}/outputs/{name}.out",
            failure_location=f"s3://{self.bucket}/failures/{name}.out",
            params=params,
        )
        self.pending.append(invocation)
        self.calls.append(invocation)
        return {
            "InferenceId": invocation.inference_id,
            "OutputLocation": invocation.output_location,
            "FailureLocation": invocation.failure_location,
        }

    def run_pending(self) -> list[dict[str, Any]]:
        """Run every queued invocation; returns the notifications (published unless `notify` is off)."""
        s3 = boto3.client("s3")
        notifications = []
        while self.pending:
            invocation = self.pending.pop(0)
            bucket, key = split_uri(invocation.input_location)
            pack = InferencePack.model_validate_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if self.fail_packs:
                bucket, key = split_uri(invocation.failure_location)
                s3.put_object(Bucket=bucket, Key=key, Body=b"model crashed")
                notification = self.load_event("sagemaker_error")
                notification["responseParameters"]["failureLocation"] = invocation.failure_location
                topic = self.error_topic
            else:
                result = PackResult(
                    pack_id=pack.pack_id, model=pack.model, results=[self.engine(request) for request in pack.requests]
                )
                bucket, key = split_uri(invocation.output_location)
                s3.put_object(Bucket=bucket, Key=key, Body=result.model_dump_json().encode())
                notification = self.load_event("sagemaker_success")
                notification["responseParameters"]["outputLocation"] = invocation.output_location
                topic = self.success_topic
            notification["inferenceId"] = invocation.inference_id
            notification["requestParameters"]["inputLocation"] = invocation.input_location
            notification["requestParameters"]["endpointName"] = invocation.params["EndpointName"]
            notifications.append(notification)
            if self.notify:
                import json

                boto3.client("sns").publish(TopicArn=topic, Message=json.dumps(notification))
        return notifications
